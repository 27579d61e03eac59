//! Lookups by name: which objects each `spec.lookups` entry reads for a parent (one, or each
//! name of a list), and finding them among the observed objects.

use std::sync::Arc;

use jiff::Timestamp;
use minijinja::context;
use minijinja::value::{Value, ValueKind};
use serde::Serialize;
use serde_json::Value as Json;

use super::{Failure, now_string, reason, render_failure};
use ruleop_lang::rule::{CompiledRule, Lookup, LookupNames, Scope, split_api_version};
use ruleop_lang::template::{ExprId, shared_json};
use ruleop_schema::meta;

/// The most distinct names one `objectNames` lookup may list: each is a watched object and a
/// routing entry per parent, so a runaway annotation must not grow them without bound.
pub const MAX_LOOKUP_NAMES: usize = 100;

/// An object one lookup entry reads for a parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LookupTarget {
    /// The `spec.lookups` entry that names it (an `objectNames` entry names several).
    pub lookup: usize,
    /// The namespace asked for (empty: none, e.g. a cluster-scoped parent without a
    /// `namespace` template). A cluster-scoped kind ignores it.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

/// A parent's lookup targets, rendered from `parent` and `now`: per `spec.lookups[i]` in
/// order, its one object or each name of its list. The planner finds the objects with them,
/// the controller reads and routes by them.
pub fn lookup_targets(
    rule: &CompiledRule,
    parent: &Json,
    now: Timestamp,
) -> Result<Vec<LookupTarget>, Failure> {
    if rule.spec.lookups.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = context! {
        parent => shared_json(Arc::new(parent.clone())),
        now => now_string(now),
    };
    let render = |name| {
        rule.templates
            .render_text(name, &ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| render_failure(rule, name, &e))
    };
    let parent_ns = meta::namespace(parent);
    let mut out = Vec::with_capacity(rule.spec.lookups.len());
    let lookups = rule.spec.lookups.iter().zip(&rule.compiled.lookups);
    for (i, (l, compiled)) in lookups.enumerate() {
        // The entry as a whole, for what is wrong with what it rendered; located only on an
        // error, as this runs on every plan.
        let fail = |message: String| Failure {
            reason: reason::RENDER_FAILED.into(),
            message: format!(
                "{}: {message}",
                rule.locate(&format!("spec.lookups[{i}]"), None)
            ),
            permanent: true,
        };
        let names = match compiled.names {
            LookupNames::One(id) => {
                let name = render(id)?;
                if name.is_empty() {
                    return Err(fail(format!("lookup {} renders an empty name", l.name)));
                }
                Names::One(name)
            }
            LookupNames::Many(id) => Names::Many(list_names(rule, l, id, &ctx)?),
        };
        let namespace = match compiled.namespace {
            Some(namespace) => render(namespace)?,
            None => parent_ns.to_string(),
        };
        // A namespaced parent reads only its own namespace: a parent must not be able to
        // copy another tenant's Secret into its children.
        if rule.spec.parent.scope == Scope::Namespaced && namespace != parent_ns {
            return Err(fail(format!(
                "lookup {} names namespace {namespace:?}; a namespaced parent reads only its own ({parent_ns:?})",
                l.name
            )));
        }
        match names {
            Names::One(name) => out.push(LookupTarget {
                lookup: i,
                namespace,
                name,
            }),
            Names::Many(names) => out.extend(names.into_iter().map(|name| LookupTarget {
                lookup: i,
                namespace: namespace.clone(),
                name,
            })),
        }
    }
    Ok(out)
}

/// What one entry named, before its namespace is known.
enum Names {
    One(String),
    Many(Vec<String>),
}

/// The names `objectNames` (`id`) gives: trimmed, in order, without empty ones and repeats.
/// Undefined or none is no name; anything but a list of strings is the rule's error.
fn list_names(
    rule: &CompiledRule,
    l: &Lookup,
    id: ExprId,
    ctx: &Value,
) -> Result<Vec<String>, Failure> {
    let value = rule
        .templates
        .eval(id, ctx)
        .map_err(|e| render_failure(rule, id, &e))?;
    let fail = |message: String| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!(
            "{}: lookup {}: {message}",
            rule.locate_handle(id, None),
            l.name
        ),
        permanent: true,
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => return Ok(Vec::new()),
        ValueKind::Seq | ValueKind::Iterable => {}
        ValueKind::String => {
            return Err(fail(format!(
                "objectNames must give a list of names, got the string {value}; split it, e.g. `| split(',')`"
            )));
        }
        _ => {
            return Err(fail(format!(
                "objectNames must give a list of names, got {value}"
            )));
        }
    }
    let items = value
        .try_iter()
        .map_err(|e| fail(format!("objectNames: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for (position, item) in items.enumerate() {
        let Some(name) = item.as_str() else {
            return Err(fail(format!(
                "objectNames item {position} is not a name (a string): {item}"
            )));
        };
        let name = name.trim();
        // A list is compared by scanning: it holds at most MAX_LOOKUP_NAMES names.
        if name.is_empty() || names.iter().any(|n| n == name) {
            continue;
        }
        if names.len() == MAX_LOOKUP_NAMES {
            return Err(fail(format!(
                "objectNames gives more than {MAX_LOOKUP_NAMES} names"
            )));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Whether `obj` is the object `target` of the lookup of `api_version`/`kind` names. An
/// object without a namespace is of a cluster-scoped kind, found by name alone.
pub fn matches(obj: &Json, api_version: &str, kind: &str, target: &LookupTarget) -> bool {
    let (group, _) = split_api_version(api_version);
    meta::kind(obj) == kind
        && meta::group(obj) == group
        && meta::name(obj) == target.name
        && (meta::namespace(obj).is_empty() || meta::namespace(obj) == target.namespace)
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
