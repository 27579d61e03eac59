//! Observe and plan one parent from the watch caches: the part of a reconcile before any
//! API call, callable without a cluster (the planner benchmark measures it end to end).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value as Json;

use super::memo::PlanMemo;
use super::routes::Interest;
use crate::cache::{Cached, GroupKind, KindCache};
use ruleop_lang::rule::{CompiledRule, Scope};
use ruleop_plan::{self as plan, Action, DecorationSelect, Input, Plan, Selector};
use ruleop_schema::meta::{self, ObjectKey, split_api_version};
use ruleop_schema::openapi::Schemas;

/// The kinds one rule reads, as the controller resolved them.
#[derive(Debug, Clone, Copy)]
pub struct RuleKinds<'a> {
    /// Child and cleanup-step kinds.
    pub children: &'a [GroupKind],
    /// Related kinds, by related index.
    pub related: &'a [GroupKind],
    /// Looked-up kinds, by lookup index, and whether each is namespaced.
    pub lookups: &'a [(GroupKind, bool)],
    /// Decorated kinds, by decoration index, and whether each is namespaced.
    pub decorated: &'a [(GroupKind, bool)],
}

/// What a reconcile read from the caches for one parent.
pub struct Observation {
    /// The parent.
    pub parent: Json,
    /// Its possible children, related and looked-up objects, each once.
    pub observed: Vec<Json>,
    /// The caches of the kinds its children may have.
    pub kinds: HashMap<GroupKind, Arc<KindCache>>,
    /// The rendered related selectors, when the rule has related objects.
    pub selectors: Option<Vec<Selector>>,
    /// The looked-up objects' (kind, namespace, name), when the rule has lookups.
    pub routed: Option<Vec<(GroupKind, String, String)>>,
    /// The rendered decoration targets, when the rule has decorations: a selector per
    /// decoration (empty for the other targets), and the objects decorated by name.
    pub decorated: Option<(Vec<Selector>, Vec<Named>)>,
}

/// An object read by name: its kind, namespace (empty: cluster-scoped) and name.
pub type Named = (GroupKind, String, String);

impl Observation {
    /// The routing interests of the looked-up objects (every name of a list lookup), taken
    /// out; `None` when the rule has no lookups.
    pub fn take_lookup_interests(&mut self) -> Option<Vec<Interest>> {
        let routed = self.routed.take()?;
        Some(
            routed
                .into_iter()
                .map(|(kind, namespace, name)| Interest::Object(kind, namespace, name))
                .collect(),
        )
    }
}

/// Reads `parent`'s possible children (owned objects of every child kind of any rule: a
/// changed rule may have dropped a kind whose old children must still be pruned), related
/// and looked-up objects from `caches`.
pub fn observe(
    rule: &CompiledRule,
    rule_kinds: RuleKinds<'_>,
    caches: &HashMap<GroupKind, Arc<KindCache>>,
    is_child_kind: impl Fn(&GroupKind) -> bool,
    parent: &Cached,
    now: Timestamp,
) -> Observation {
    let parent_json = parent.json();
    let uid = meta::uid(&parent_json);
    let mut kinds = HashMap::new();
    let mut observed: Vec<Json> = Vec::new();
    // An object is observed once, even when it is both a child and related (a rule
    // whose replicas are also selected as related objects).
    let mut seen: HashSet<String> = HashSet::new();
    for (gk, cache) in caches {
        if cache.managed_only || rule_kinds.children.contains(gk) || is_child_kind(gk) {
            extend_unique(&mut observed, &mut seen, cache.owned_by(uid));
            kinds.insert(gk.clone(), cache.clone());
        }
    }
    let namespace = (rule.spec.parent.scope == Scope::Namespaced).then_some(parent.namespace());
    let mut selectors = None;
    if !rule_kinds.related.is_empty() {
        let rendered = plan::related_selectors(rule, &parent_json, now).unwrap_or_default();
        for (gk, selector) in rule_kinds.related.iter().zip(&rendered) {
            if let Some(c) = caches.get(gk) {
                let namespace = namespace.filter(|_| c.namespaced);
                extend_unique(&mut observed, &mut seen, c.select(namespace, selector));
            }
        }
        selectors = Some(rendered);
    }
    let mut routed = None;
    if !rule_kinds.lookups.is_empty() {
        let targets = plan::lookup_targets(rule, &parent_json, now).unwrap_or_default();
        let mut found_at = Vec::with_capacity(targets.len());
        for target in &targets {
            // Every name of a list lookup is read and routed like a single lookup's.
            let Some((gk, namespaced)) = rule_kinds.lookups.get(target.lookup) else {
                continue;
            };
            let ns = if *namespaced {
                target.namespace.as_str()
            } else {
                ""
            };
            if let Some(found) = caches.get(gk).and_then(|c| c.get(ns, &target.name)) {
                extend_unique(&mut observed, &mut seen, vec![found]);
            }
            found_at.push((gk.clone(), ns.to_string(), target.name.clone()));
        }
        routed = Some(found_at);
    }
    let decorated = (!rule_kinds.decorated.is_empty()).then(|| {
        let targets = plan::decoration_targets(rule, &parent_json, now).unwrap_or_default();
        let mut selectors = vec![Selector::new(); rule_kinds.decorated.len()];
        let mut names = Vec::new();
        for (i, ((gk, namespaced), target)) in rule_kinds.decorated.iter().zip(&targets).enumerate()
        {
            let Some(c) = caches.get(gk) else { continue };
            match target {
                DecorationSelect::Selector(selector) => {
                    let namespace = namespace.filter(|_| *namespaced);
                    extend_unique(&mut observed, &mut seen, c.select(namespace, selector));
                    selectors[i] = selector.clone();
                }
                DecorationSelect::Name(name) => {
                    let ns = if *namespaced { parent.namespace() } else { "" };
                    extend_unique(
                        &mut observed,
                        &mut seen,
                        c.get(ns, name).into_iter().collect(),
                    );
                    names.push((gk.clone(), ns.to_string(), name.clone()));
                }
                // Observed as the related entry's objects.
                DecorationSelect::Related(_) => {}
            }
        }
        // What the parent decorated, selected or not any more: it may have to lose it.
        for (gk, _) in rule_kinds.decorated {
            if let Some(c) = caches.get(gk) {
                extend_unique(&mut observed, &mut seen, c.decorated_by(uid));
                // The actor writes decorations through the kind's cache (its resource).
                kinds.insert(gk.clone(), c.clone());
            }
        }
        (selectors, names)
    });
    Observation {
        parent: parent_json,
        observed,
        kinds,
        selectors,
        routed,
        decorated,
    }
}

/// Plans the observed parent. An object that already holds a name the plan creates
/// (another rule's child, or anything else a cache holds) is shown to the planner, which
/// leaves it alone: it joins `observation.observed` and the parent is planned again.
pub fn plan_observed(
    rule: &CompiledRule,
    memo: &PlanMemo,
    observation: &mut Observation,
    schemas: Option<&Schemas>,
    now: Timestamp,
) -> Plan {
    let input = Input {
        parent: &observation.parent,
        observed: &observation.observed,
        now,
        schemas,
    };
    let plan = memo.plan(rule, input);
    let holders = name_holders(&plan, &observation.kinds);
    if holders.is_empty() {
        return plan;
    }
    observation.observed.extend(holders);
    let input = Input {
        parent: &observation.parent,
        observed: &observation.observed,
        now,
        schemas,
    };
    memo.plan(rule, input)
}

/// Adds the objects not seen yet (by uid).
fn extend_unique(observed: &mut Vec<Json>, seen: &mut HashSet<String>, objects: Vec<Arc<Cached>>) {
    for o in objects {
        if seen.insert(o.uid().to_string()) {
            observed.push(o.json());
        }
    }
}

/// Cached objects at the keys of the plan's creations.
pub fn name_holders(plan: &Plan, kinds: &HashMap<GroupKind, Arc<KindCache>>) -> Vec<Json> {
    plan.apply
        .iter()
        .filter(|d| d.action == Action::Create)
        .filter_map(|d| {
            let key = ObjectKey::of(&d.object);
            let gk = GroupKind {
                group: split_api_version(&key.api_version).0.to_string(),
                kind: key.kind.clone(),
            };
            kinds.get(&gk)?.get(&key.namespace, &key.name)
        })
        .map(|o| o.json())
        .collect()
}

/// The objects a plan leaves alone because another object holds their name: when they
/// change or go away the parent is reconciled at once, not at its next periodic retry.
pub fn conflicts_of(plan: &Plan) -> Vec<Interest> {
    plan.apply
        .iter()
        .filter(|d| d.action == Action::Conflict)
        .map(|d| {
            let key = ObjectKey::of(&d.object);
            let gk = GroupKind {
                group: split_api_version(&key.api_version).0.to_string(),
                kind: key.kind,
            };
            Interest::Object(gk, key.namespace, key.name)
        })
        .collect()
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
