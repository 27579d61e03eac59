//! Status projection: status fields from JSONPath or expressions, and conditions that keep
//! their transition time while their status holds.

use std::cmp::Ordering;

use jiff::Timestamp;
use jsonpath_rust::query::js_path_process;
use minijinja::Value;
use serde_json::{Map, Value as Json, json};

use ruleop_lang::rule::{CompiledRule, Projection};
use ruleop_lang::template::{ExprId, TemplateError, to_json};

/// The condition every rule writes.
pub const READY: &str = "Ready";

/// A status field that could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("{location}: status field {field}: {message}")]
pub struct ProjectionError {
    /// `file:line:col` of the field.
    pub location: String,
    /// The field.
    pub field: String,
    /// What failed.
    pub message: String,
}

/// Whether a JSONPath can select several values (then the field is a list).
pub fn is_list_path(path: &str) -> bool {
    path.contains('*') || path.contains("..") || path.contains("[?") || {
        // Slices and unions live inside brackets.
        path.split('[').skip(1).any(|b| {
            let inner = b.split(']').next().unwrap_or_default();
            !inner.starts_with('\'')
                && !inner.starts_with('"')
                && (inner.contains(':') || inner.contains(','))
        })
    }
}

/// Computes the rule's status fields over `doc` (`{parent, children, related}`) and `ctx`.
pub fn project(
    rule: &CompiledRule,
    doc: &Json,
    ctx: &Value,
) -> Result<Map<String, Json>, ProjectionError> {
    let mut out = Map::new();
    for (field, projection) in &rule.spec.status.fields {
        let at = ("spec.status.fields", field.as_str());
        let expr = rule.compiled.status_fields.get(field).copied();
        if let Some(value) = project_one(rule, at, (field, expr), projection, doc, ctx)? {
            out.insert(field.clone(), value);
        }
    }
    Ok(out)
}

/// One `status.onFailure` field (its path is compiled under `onFailure/<field>`).
pub fn project_failure_field(
    rule: &CompiledRule,
    field: &str,
    projection: &Projection,
    doc: &Json,
    ctx: &Value,
) -> Result<Option<Json>, ProjectionError> {
    let key = format!("{}{field}", ruleop_lang::rule::ON_FAILURE_PATH);
    let expr = rule.compiled.on_failure.get(field).copied();
    project_one(
        rule,
        ("spec.status.onFailure", field),
        (&key, expr),
        projection,
        doc,
        ctx,
    )
}

/// Projects one field; `(base, field)` locates it in the rule, `path_key` is its compiled
/// JSONPath's key in `rule.paths`, `expr` its compiled expression.
fn project_one(
    rule: &CompiledRule,
    (base, field): (&str, &str),
    (path_key, expr): (&str, Option<ExprId>),
    projection: &Projection,
    doc: &Json,
    ctx: &Value,
) -> Result<Option<Json>, ProjectionError> {
    let fail = |path: &str, err: Option<&TemplateError>, message: String| ProjectionError {
        location: rule.locate(path, err),
        field: field.to_string(),
        message,
    };
    let mut value = if let (Some(path), Some(query)) = (&projection.path, rule.paths.get(path_key))
    {
        let found = js_path_process(query, doc)
            .map_err(|e| fail(&format!("{base}.{field}.path"), None, e.to_string()))?;
        let mut values: Vec<Json> = found.into_iter().map(|r| r.val().clone()).collect();
        if is_list_path(path) {
            Some(Json::Array(std::mem::take(&mut values)))
        } else {
            values.into_iter().next()
        }
    } else if let Some(name) = expr {
        let v = rule
            .templates
            .eval(name, ctx)
            .map_err(|e| fail(rule.templates.name(name), Some(&e), e.to_string()))?;
        Some(to_json(&v)).filter(|j| !j.is_null())
    } else {
        // Compiling guarantees a path or an expression; this only keeps the error typed.
        let at = format!("{base}.{field}");
        return Err(fail(
            &at,
            None,
            "neither a path nor an expression is compiled".into(),
        ));
    };
    if projection.sort
        && let Some(Json::Array(items)) = &mut value
    {
        items.sort_by(compare);
    }
    Ok(value.or_else(|| projection.default.clone()))
}

fn compare(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Json::String(x), Json::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// A condition's new state.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The type.
    pub type_: String,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Condition {
    /// A condition that holds.
    pub fn met(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn unmet(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// ruleop's `status.conditions` entries for `new`: a condition whose status did not change
/// keeps its `lastTransitionTime` from `previous`. Conditions of other types are not
/// included: ruleop applies only its own, so those written by others stay as they are.
pub fn merge_conditions(
    previous: Option<&Json>,
    new: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Json> {
    let previous: &[Json] = previous
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let find = |t: &str| {
        previous
            .iter()
            .find(|c| c.get("type").and_then(Json::as_str) == Some(t))
    };
    let now = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    new.iter()
        .map(|c| {
            let status = status_word(c.status);
            let since = find(&c.type_)
                .filter(|p| p.get("status").and_then(Json::as_str) == Some(status))
                .and_then(|p| p.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| Json::String(now.clone()));
            let mut cond = json!({
                "type": c.type_,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
            });
            if let Some(g) = generation {
                cond["observedGeneration"] = json!(g);
            }
            cond
        })
        .collect()
}

/// `status` (ruleop's part of a status) with `condition` set in place of the condition of
/// its type; ruleop's other conditions are kept. The condition keeps its transition time
/// from `stored` (the parent's status as the API server has it), not from `status`: a plan
/// may have flipped it there, and a condition that never changed on the server must not
/// look as if it just did.
pub fn with_condition(
    status: Option<&Json>,
    stored: Option<&Json>,
    condition: &Condition,
    generation: Option<i64>,
    now: Timestamp,
) -> Json {
    let mut out = status
        .cloned()
        .filter(Json::is_object)
        .unwrap_or_else(|| json!({}));
    let previous = status.and_then(|s| s.get("conditions"));
    let merged = merge_conditions(
        stored.and_then(|s| s.get("conditions")),
        std::slice::from_ref(condition),
        generation,
        now,
    )
    .into_iter()
    .next()
    .unwrap_or_default();
    let mut conditions: Vec<Json> = previous
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(condition.type_.as_str()))
    {
        Some(slot) => *slot = merged,
        None => conditions.push(merged),
    }
    out["conditions"] = Json::Array(conditions);
    if let Some(g) = generation {
        out["observedGeneration"] = json!(g);
    }
    out
}

/// Equal as stored: numbers by value (`1` and `1.0` are one number), a `null` field of a
/// mapping the same as an absent one (the API server drops it).
fn same(a: &Json, b: &Json) -> bool {
    fn field<'a>(m: &'a Map<String, Json>, k: &str) -> Option<&'a Json> {
        m.get(k).filter(|v| !v.is_null())
    }
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .all(|k| match (field(x, k), field(y, k)) {
                    (Some(v), Some(w)) => same(v, w),
                    (None, None) => true,
                    _ => false,
                })
        }
        _ => a == b,
    }
}

/// Whether writing `new` (ruleop's part of a status) would change `previous` (the whole
/// status): a field of `new` has another value, or one of its conditions differs from the
/// stored condition of that type. Fields and conditions others write are not compared.
pub fn differs(previous: Option<&Json>, new: &Json) -> bool {
    let Some(new) = new.as_object() else {
        return false;
    };
    new.iter().any(|(key, value)| {
        let old = previous.and_then(|p| p.get(key));
        if key != "conditions" {
            return !old.is_some_and(|o| same(o, value));
        }
        let old: &[Json] = old
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        value.as_array().into_iter().flatten().any(|c| {
            !old.iter()
                .any(|o| o.get("type") == c.get("type") && same_condition(o, c))
        })
    })
}

/// Whether the stored condition `old` already says what `new` does: compared on the keys
/// ruleop writes (a built-in kind's condition has keys of its own, such as a Deployment's
/// `lastUpdateTime`), an empty string the same as an absent key (a built-in kind drops
/// empty strings).
fn same_condition(old: &Json, new: &Json) -> bool {
    let blank = |v: Option<&Json>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    new.as_object().into_iter().flatten().all(|(k, v)| {
        let o = old.get(k);
        (blank(o) && blank(Some(v))) || o.is_some_and(|o| same(o, v))
    })
}

/// Whether the `Ready` condition of a status already reports a conflict over `key` (the
/// object key, as in its message).
pub fn conflict_shown(status: Option<&Json>, key: &str) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(READY))
        .is_some_and(|c| {
            c.get("reason").and_then(Json::as_str) == Some(crate::reason::CONFLICT)
                && c.get("message")
                    .and_then(Json::as_str)
                    .is_some_and(|m| m.contains(key))
        })
}

/// Whether a status already shows `condition` (same type, status, reason and message): what
/// it says was announced when it was first written, and is not announced again.
pub fn condition_shown(status: Option<&Json>, condition: &Condition) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(condition.type_.as_str()))
        .is_some_and(|c| {
            c.get("status").and_then(Json::as_str) == Some(status_word(condition.status))
                && c.get("reason").and_then(Json::as_str) == Some(condition.reason.as_str())
                && c.get("message").and_then(Json::as_str) == Some(condition.message.as_str())
        })
}

/// The status of condition `type_` in a status object, if present.
pub fn condition_status(status: Option<&Json>, type_: &str) -> Option<bool> {
    status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))
        .and_then(|c| c.get("status").and_then(Json::as_str))
        .map(|s| s == "True")
}

/// The reason of the condition `type_` in `status`, if it has one.
pub fn condition_reason<'a>(status: Option<&'a Json>, type_: &str) -> Option<&'a str> {
    status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))?
        .get("reason")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths() {
        assert!(is_list_path("$.related.pods[*].metadata.name"));
        assert!(is_list_path("$..name"));
        assert!(is_list_path("$.a[0:2]"));
        assert!(is_list_path("$.a[?@.x == 1]"));
        assert!(!is_list_path("$.children.deployment.status.readyReplicas"));
        assert!(!is_list_path("$.children.pods[0]"));
        assert!(!is_list_path("$.a['x:y']"));
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let first = merge_conditions(
            None,
            &[Condition::unmet(READY, "Progressing", "x")],
            Some(1),
            t0,
        );
        let first = Json::Array(first);
        let same = merge_conditions(
            Some(&first),
            &[Condition::unmet(READY, "Progressing", "y")],
            Some(2),
            t1,
        );
        assert_eq!(same[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(same[0]["observedGeneration"], 2);
        let same = Json::Array(same);
        let flipped = merge_conditions(
            Some(&same),
            &[Condition::met(READY, "Ready", "")],
            Some(2),
            t1,
        );
        assert_eq!(flipped[0]["lastTransitionTime"], "2026-01-01T00:05:00Z");
        assert_eq!(flipped[0]["status"], "True");
    }

    #[test]
    fn only_ruleops_conditions_are_written_and_compared() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let prev = json!([{"type": "Custom", "status": "True"}]);
        let out = merge_conditions(Some(&prev), &[Condition::met(READY, "Ready", "")], None, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["type"], READY);
        // A status with others' fields and conditions is unchanged by ruleop's same part.
        let ours = json!({"nodes": ["a"], "conditions": out});
        let mut stored = ours.clone();
        stored["phase"] = json!("Active");
        stored["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Custom", "status": "True"}));
        assert!(!differs(Some(&stored), &ours));
        let mut changed = ours.clone();
        changed["nodes"] = json!(["a", "b"]);
        assert!(differs(Some(&stored), &changed));
        let flipped = json!({"conditions": merge_conditions(
            None, &[Condition::unmet(READY, "Progressing", "")], None, t0)});
        assert!(differs(Some(&stored), &flipped));
        assert!(differs(None, &ours));
        // Setting a condition keeps ruleop's others.
        let two = json!({"conditions": [{"type": READY, "status": "True"}, {"type": "Available", "status": "True"}]});
        let set = with_condition(
            Some(&two),
            None,
            &Condition::unmet(READY, "Conflict", "x"),
            None,
            t0,
        );
        assert_eq!(set["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(set["conditions"][0]["reason"], "Conflict");
        assert_eq!(set["conditions"][1]["type"], "Available");
    }
}
