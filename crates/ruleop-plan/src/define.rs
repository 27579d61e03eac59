//! Shared values (`spec.definitions.values`) and the status fields written on failure
//! (`spec.status.onFailure`).

use minijinja::{Value, context};
use serde_json::{Map, Value as Json, json};

use super::{Failure, render_failure};
use crate::status;
use ruleop_lang::rule::CompiledRule;
use ruleop_lang::template::{from_json, to_json};

/// Evaluates the shared values in order, each seeing the ones before it. On an error the
/// failure is returned with the values computed so far.
pub(super) fn values(
    rule: &CompiledRule,
    ctx: &Value,
) -> Result<Map<String, Json>, (Failure, Map<String, Json>)> {
    let mut out = Map::new();
    let values = rule.spec.definitions.values.iter();
    for (v, &name) in values.zip(&rule.compiled.values) {
        let scope = context! { values => from_json(&Json::Object(out.clone())), ..ctx.clone() };
        match rule.templates.eval(name, &scope) {
            Ok(value) => {
                out.insert(v.name.clone(), to_json(&value));
            }
            Err(e) => return Err((render_failure(rule, name, &e), out)),
        }
    }
    Ok(out)
}

/// The `status.onFailure` fields for `failure`, over `doc` and `ctx` plus `failure`. A field
/// that cannot be computed is left out: the failure itself is what gets reported.
pub(super) fn failure_fields(
    rule: &CompiledRule,
    doc: &Json,
    ctx: &Value,
    failure: &Failure,
) -> Map<String, Json> {
    if rule.spec.status.on_failure.is_empty() {
        return Map::new();
    }
    let failure = json!({"reason": failure.reason, "message": failure.message});
    let mut doc = doc.clone();
    doc["failure"] = failure.clone();
    let ctx = context! { failure => from_json(&failure), ..ctx.clone() };
    let mut out = Map::new();
    for (field, projection) in &rule.spec.status.on_failure {
        match status::project_failure_field(rule, field, projection, &doc, &ctx) {
            Ok(Some(value)) => {
                out.insert(field.clone(), value);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "status.onFailure field not computed"),
        }
    }
    out
}
