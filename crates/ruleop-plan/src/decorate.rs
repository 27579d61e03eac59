//! Decorations (`spec.decorations`): which objects get which labels and annotations, which
//! lose them, and which are already as rendered.
//!
//! What a parent decorated is found without state, from the objects themselves: every
//! decoration write is a server-side apply under the parent's own field manager
//! ([`manager`]), so the object's `managedFields` entry of that manager lists exactly the
//! keys the parent set. An object carrying such an entry that no decoration targets any more
//! (it left the selection, the rule dropped the decoration, the parent is being deleted)
//! gets an empty apply under that manager, which removes exactly those keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use minijinja::{Value, context};
use serde::Serialize;
use serde_json::Value as Json;

use super::view::View;
use super::{Failure, Input, Plan, Selector, now_string, reason, render_failure};
use ruleop_lang::rule::{CompiledRule, Scope, split_api_version};
use ruleop_lang::template::{TemplateId, shared_json};
use ruleop_schema::meta::{self, ObjectKey};

/// The prefix of decoration field managers: `ruleop-decorate/<rule>/<parent uid>`.
pub const MANAGER_PREFIX: &str = "ruleop-decorate/";

/// The field manager of `rule`'s decorations for the parent with `parent_uid`. The parent's
/// uid is part of it so two parents of one rule decorating one object never take each
/// other's keys away, and so the object itself says whose decoration it carries.
pub fn manager(rule: &str, parent_uid: &str) -> String {
    format!("{MANAGER_PREFIX}{rule}/{parent_uid}")
}

/// The parent uid a decoration field manager name carries.
pub fn manager_parent(manager: &str) -> Option<&str> {
    manager
        .strip_prefix(MANAGER_PREFIX)?
        .rsplit_once('/')
        .map(|(_, uid)| uid)
}

/// Labels and annotations to apply to one object (both empty: remove the parent's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decorate {
    /// The object.
    pub key: ObjectKey,
    /// Its uid: the apply carries it, so it never creates the object nor touches another
    /// one that took its name.
    pub uid: String,
    /// The field manager ([`manager`]).
    pub manager: String,
    /// The labels the parent sets.
    pub labels: BTreeMap<String, String>,
    /// The annotations the parent sets.
    pub annotations: BTreeMap<String, String>,
}

/// How one decoration selects its objects, rendered for a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecorationSelect {
    /// By labels.
    Selector(Selector),
    /// By name.
    Name(String),
    /// The objects of related entry `i`.
    Related(usize),
}

/// A parent's decoration targets (`spec.decorations[i].target`, in order), rendered from
/// `parent` and `now`: the planner selects with them, the controller reads and routes by them.
pub fn decoration_targets(
    rule: &CompiledRule,
    parent: &Json,
    now: Timestamp,
) -> Result<Vec<DecorationSelect>, Failure> {
    if rule.spec.decorations.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = context! {
        parent => shared_json(Arc::new(parent.clone())),
        now => now_string(now),
    };
    let render = |id: TemplateId| {
        rule.templates
            .render_text(id, &ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| render_failure(rule, id, &e))
    };
    let mut out = Vec::new();
    for (i, compiled) in rule.compiled.decorations.iter().enumerate() {
        let select = if let Some(j) = compiled.related {
            DecorationSelect::Related(j)
        } else if let Some(id) = compiled.object_name {
            let name = render(id)?;
            if name.is_empty() {
                return Err(Failure {
                    reason: reason::RENDER_FAILED.into(),
                    message: format!(
                        "{}: decoration {} renders an empty object name",
                        rule.locate_handle(id, None),
                        rule.spec.decorations[i].name
                    ),
                    permanent: true,
                });
            }
            DecorationSelect::Name(name)
        } else {
            let mut selector = Selector::new();
            for &(ref key, id) in &compiled.selector {
                selector.insert(key.clone(), render(id)?);
            }
            DecorationSelect::Selector(selector)
        };
        out.push(select);
    }
    Ok(out)
}

/// The label and annotation keys `manager` owns on `obj`, from its `managedFields`.
pub fn owned_keys(obj: &Json, manager: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut labels = BTreeSet::new();
    let mut annotations = BTreeSet::new();
    let entries = obj
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("manager").and_then(Json::as_str) == Some(manager));
    for entry in entries {
        let Some(fields) = entry.pointer("/fieldsV1/f:metadata") else {
            continue;
        };
        for (part, into) in [
            ("f:labels", &mut labels),
            ("f:annotations", &mut annotations),
        ] {
            let keys = fields
                .get(part)
                .and_then(Json::as_object)
                .into_iter()
                .flatten();
            into.extend(keys.filter_map(|(k, _)| k.strip_prefix("f:").map(str::to_string)));
        }
    }
    (labels, annotations)
}

fn is_decorated_by(obj: &Json, manager: &str) -> bool {
    let (labels, annotations) = owned_keys(obj, manager);
    !labels.is_empty() || !annotations.is_empty()
}

fn removal(obj: &Json, manager: &str) -> Decorate {
    Decorate {
        key: ObjectKey::of(obj),
        uid: meta::uid(obj).to_string(),
        manager: manager.to_string(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

/// Whether `obj` already carries exactly `manager`'s rendering: every key at its value, and
/// no other key owned by the manager.
fn up_to_date(obj: &Json, manager: &str, d: &Decorate) -> bool {
    let (labels, annotations) = owned_keys(obj, manager);
    let same = |part: &str, want: &BTreeMap<String, String>, owned: &BTreeSet<String>| {
        want.keys().eq(owned.iter())
            && want.iter().all(|(k, v)| {
                obj.pointer(&format!("/metadata/{part}"))
                    .and_then(|m| m.get(k))
                    .and_then(Json::as_str)
                    == Some(v.as_str())
            })
    };
    same("labels", &d.labels, &labels) && same("annotations", &d.annotations, &annotations)
}

/// Plans the parent's decorations into `plan.decorate` (objects whose labels or annotations
/// differ from the rendering) and `plan.undecorate` (objects the parent decorated that no
/// decoration targets any more).
pub(super) fn plan_decorations(
    rule: &CompiledRule,
    input: &Input<'_>,
    view: &View<'_>,
    ctx: &Value,
    plan: &mut Plan,
) -> Result<(), Failure> {
    let manager = manager(&rule.name, meta::uid(input.parent));
    let targets = decoration_targets(rule, input.parent, input.now)?;
    let parent_ns = meta::namespace(input.parent);
    // Rendered decorations by object uid: several decorations of one object are one apply.
    let mut desired: BTreeMap<String, (&Json, Decorate)> = BTreeMap::new();
    let decorations = rule.spec.decorations.iter().zip(&rule.compiled.decorations);
    for ((d, compiled), select) in decorations.zip(&targets) {
        let (group, _) = split_api_version(&d.api_version);
        let of_kind = |o: &&Json| {
            meta::kind(o) == d.kind
                && meta::group(o) == group
                && (rule.spec.parent.scope == Scope::Cluster || meta::namespace(o) == parent_ns)
        };
        let objects: Vec<&Json> = match select {
            DecorationSelect::Selector(sel) => input
                .observed
                .iter()
                .filter(of_kind)
                .filter(|o| {
                    sel.iter()
                        .all(|(k, v)| meta::label(o, k) == Some(v.as_str()))
                })
                .collect(),
            DecorationSelect::Name(name) => input
                .observed
                .iter()
                .filter(of_kind)
                .filter(|o| meta::name(o) == name)
                .collect(),
            DecorationSelect::Related(j) => view
                .related
                .get(&rule.spec.related[*j].name)
                .into_iter()
                .flatten()
                .copied()
                .filter(of_kind)
                .collect(),
        };
        for obj in objects {
            // An object on its way out keeps what it has: no write can matter any more.
            if meta::is_deleting(obj) {
                continue;
            }
            let object_ctx =
                context! { object => shared_json(Arc::new(obj.clone())), ..ctx.clone() };
            let entry = desired
                .entry(meta::uid(obj).to_string())
                .or_insert_with(|| (obj, removal(obj, &manager)));
            for (part, into) in [
                (&compiled.labels, &mut entry.1.labels),
                (&compiled.annotations, &mut entry.1.annotations),
            ] {
                for &(ref key, id) in part {
                    let value = rule
                        .templates
                        .render_text(id, &object_ctx)
                        .map_err(|e| render_failure(rule, id, &e))?;
                    into.insert(key.clone(), value.trim().to_string());
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for obj in input.observed {
        let uid = meta::uid(obj);
        if desired.contains_key(uid)
            || meta::is_deleting(obj)
            || !seen.insert(uid)
            || !is_decorated_by(obj, &manager)
        {
            continue;
        }
        plan.undecorate.push(removal(obj, &manager));
    }
    for (obj, d) in desired.into_values() {
        if !up_to_date(obj, &manager, &d) {
            plan.decorate.push(d);
        }
    }
    // By object, as `render` prints them (the map above is by uid).
    plan.decorate.sort_by_key(|d| d.key.to_string());
    Ok(())
}

/// The deletion path: every object the parent decorated loses its decoration. Whether any
/// remain (the finalizer waits until none do).
pub(super) fn undecorate_all(rule: &CompiledRule, input: &Input<'_>, plan: &mut Plan) -> bool {
    let manager = manager(&rule.name, meta::uid(input.parent));
    let mut seen = BTreeSet::new();
    for obj in input.observed {
        // An object on its way out is no reason to hold the parent's deletion.
        if !meta::is_deleting(obj) && seen.insert(meta::uid(obj)) && is_decorated_by(obj, &manager)
        {
            plan.undecorate.push(removal(obj, &manager));
        }
    }
    !plan.undecorate.is_empty()
}

#[cfg(test)]
#[path = "decorate_tests.rs"]
mod tests;
