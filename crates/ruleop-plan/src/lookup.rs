//! Lookups by name: which object each `spec.lookups` entry reads for a parent, and finding it
//! among the observed objects.

use std::sync::Arc;

use jiff::Timestamp;
use minijinja::context;
use serde::Serialize;
use serde_json::Value as Json;

use super::{Failure, now_string, reason, render_failure};
use ruleop_lang::rule::{CompiledRule, Scope, split_api_version};
use ruleop_lang::template::{TemplateId, shared_json};
use ruleop_schema::meta;

/// The object one lookup entry reads for a parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LookupTarget {
    /// The namespace asked for (empty: none, e.g. a cluster-scoped parent without a
    /// `namespace` template). A cluster-scoped kind ignores it.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

/// A parent's lookup targets (`spec.lookups[i]`, in order), rendered from `parent` and `now`:
/// the planner finds the objects with them, the controller reads and routes by them.
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
    let render = |name: TemplateId| {
        rule.templates
            .render_text(name, &ctx)
            .map(|s| s.trim().to_string())
            .map_err(|e| render_failure(rule, name, &e))
    };
    let parent_ns = meta::namespace(parent);
    let mut out = Vec::new();
    let lookups = rule.spec.lookups.iter().zip(&rule.compiled.lookups);
    for (i, (l, compiled)) in lookups.enumerate() {
        // The entry as a whole, for what is wrong with what it rendered.
        let base = format!("spec.lookups[{i}]");
        let name = render(compiled.object_name)?;
        let namespace = match compiled.namespace {
            Some(namespace) => render(namespace)?,
            None => parent_ns.to_string(),
        };
        let fail = |message: String| Failure {
            reason: reason::RENDER_FAILED.into(),
            message: format!("{}: {message}", rule.locate(&base, None)),
            permanent: true,
        };
        if name.is_empty() {
            return Err(fail(format!("lookup {} renders an empty name", l.name)));
        }
        // A namespaced parent reads only its own namespace: a parent must not be able to
        // copy another tenant's Secret into its children.
        if rule.spec.parent.scope == Scope::Namespaced && namespace != parent_ns {
            return Err(fail(format!(
                "lookup {} names namespace {namespace:?}; a namespaced parent reads only its own ({parent_ns:?})",
                l.name
            )));
        }
        out.push(LookupTarget { namespace, name });
    }
    Ok(out)
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
