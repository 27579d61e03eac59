//! The observed objects of one parent, sorted by role: its children and its related objects.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use super::lookup::{lookup_targets, matches};
use super::ownership::{child_name, is_ours};
use super::{Failure, Input, related_selectors};
use crate::scale;
use ruleop_lang::rule::{CompiledRule, LookupNames, Scope};
use ruleop_schema::meta;

/// Observed objects sorted by role.
pub(super) struct View<'a> {
    pub(super) parent: &'a Json,
    /// This parent's children (see [`is_ours`]), by child name.
    pub(super) children: BTreeMap<String, Vec<&'a Json>>,
    /// Related objects by related name.
    pub(super) related: BTreeMap<String, Vec<&'a Json>>,
    /// Looked-up objects found, by lookup name.
    pub(super) lookups: BTreeMap<String, Found<'a>>,
    /// Required lookups not found: `Kind namespace/name (lookup <name>)`.
    pub(super) missing: Vec<String>,
}

impl<'a> View<'a> {
    pub(super) fn new(rule: &CompiledRule, input: &Input<'a>) -> Result<Self, Failure> {
        let parent_uid = meta::uid(input.parent);
        let mut children: BTreeMap<String, Vec<&Json>> = BTreeMap::new();
        for obj in input.observed {
            if is_ours(obj, &rule.name, parent_uid)
                && let Some(child) = child_name(rule, obj)
            {
                children.entry(child.to_string()).or_default().push(obj);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|o| (scale::ordinal_of(o).unwrap_or(0), meta::name(o)));
        }
        let mut related = BTreeMap::new();
        let selectors = related_selectors(rule, input.parent, input.now)?;
        for (r, selector) in rule.spec.related.iter().zip(&selectors) {
            let (group, _) = ruleop_lang::rule::split_api_version(&r.api_version);
            let mut matching: Vec<&Json> = input
                .observed
                .iter()
                .filter(|o| {
                    meta::kind(o) == r.kind
                        && meta::group(o) == group
                        && (rule.spec.parent.scope == Scope::Cluster
                            // A cluster-scoped kind has no namespace to compare.
                            || meta::namespace(o).is_empty()
                            || meta::namespace(o) == meta::namespace(input.parent))
                        && selector
                            .iter()
                            .all(|(k, v)| meta::label(o, k) == Some(v.as_str()))
                })
                .collect();
            matching.sort_by_key(|o| meta::name(o));
            related.insert(r.name.clone(), matching);
        }
        let mut lookups = BTreeMap::new();
        let mut missing = Vec::new();
        let targets = lookup_targets(rule, input.parent, input.now)?;
        // A list lookup is a list even when it names nothing.
        for (l, compiled) in rule.spec.lookups.iter().zip(&rule.compiled.lookups) {
            if matches!(compiled.names, LookupNames::Many(_)) {
                lookups.insert(l.name.clone(), Found::Many(Vec::new()));
            }
        }
        for target in &targets {
            let Some(l) = rule.spec.lookups.get(target.lookup) else {
                continue;
            };
            match input
                .observed
                .iter()
                .find(|o| matches(o, &l.api_version, &l.kind, target))
            {
                Some(found) => match lookups.get_mut(&l.name) {
                    Some(Found::Many(list)) => list.push(found),
                    _ => {
                        lookups.insert(l.name.clone(), Found::One(found));
                    }
                },
                None if l.optional => {}
                None => {
                    let at = if target.namespace.is_empty() {
                        target.name.clone()
                    } else {
                        format!("{}/{}", target.namespace, target.name)
                    };
                    missing.push(format!("{} {at} (lookup {})", l.kind, l.name));
                }
            }
        }
        Ok(Self {
            parent: input.parent,
            children,
            related,
            lookups,
            missing,
        })
    }

    pub(super) fn observed_children(&self, name: &str) -> &[&'a Json] {
        self.children
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// `{parent, children, related}`: the JSONPath document and template context.
    pub(super) fn document(&self, rule: &CompiledRule) -> Json {
        let mut children = Map::new();
        for child in &rule.spec.children {
            let observed = self.observed_children(&child.name);
            let value = if child.replicas.is_some() || child.for_each.is_some() {
                Json::Array(observed.iter().map(|o| (*o).clone()).collect())
            } else {
                observed.first().map(|o| (*o).clone()).unwrap_or(Json::Null)
            };
            if !value.is_null() {
                children.insert(child.name.clone(), value);
            }
        }
        if let Some(fin) = &rule.spec.finalizer {
            for step in &fin.cleanup {
                if let Some(o) = self.observed_children(&step.name).first() {
                    children.insert(step.name.clone(), (*o).clone());
                }
            }
        }
        let related: Map<String, Json> = self
            .related
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Json::Array(v.iter().map(|o| (*o).clone()).collect()),
                )
            })
            .collect();
        let lookups: Map<String, Json> = self
            .lookups
            .iter()
            .map(|(k, found)| (k.clone(), found.to_json()))
            .collect();
        // Built from clones: `json!` would serialize the borrowed parent into a new tree.
        let mut doc = Map::new();
        doc.insert("parent".into(), self.parent.clone());
        doc.insert("children".into(), Json::Object(children));
        doc.insert("related".into(), Json::Object(related));
        doc.insert("lookups".into(), Json::Object(lookups));
        Json::Object(doc)
    }
}

/// What one lookup found: its object, or (`objectNames`) the objects found, in the order of
/// the names.
pub(super) enum Found<'a> {
    One(&'a Json),
    Many(Vec<&'a Json>),
}

impl Found<'_> {
    fn to_json(&self) -> Json {
        match self {
            Found::One(o) => (*o).clone(),
            Found::Many(list) => Json::Array(list.iter().map(|o| (*o).clone()).collect()),
        }
    }
}
