//! Evaluates a rule's CEL checks offline, as the API server would at admission: the same
//! expressions, compiled once when the rule loaded (`ruleop_lang::cel`), over the parent.
//!
//! Transition rules (those reading `oldSelf`) need the stored version of the object, which a
//! plan does not have: the API server checks them on updates, the planner skips them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use ruleop_lang::cel::{CelCheck, CelExpr, FieldCheck, FieldStep, SELF, env};
use ruleop_lang::reason;
use ruleop_lang::rule::CompiledRule;

use crate::Failure;

/// `value` as a CEL value: integers stay integers (`int`, or `uint` above `i64`), objects
/// become maps with string keys.
pub(crate) fn to_value(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_value).collect())),
        Json::Object(map) => {
            let entries: HashMap<cel::objects::Key, cel::Value> = map
                .iter()
                .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_value(v)))
                .collect();
            cel::Value::Map(cel::objects::Map {
                map: Arc::new(entries),
            })
        }
    }
}

/// Evaluates `expr` with `self` bound to `value`.
fn eval(expr: &CelExpr, value: &cel::Value) -> Result<cel::Value, String> {
    let mut ctx = cel::Context::with_env(env());
    ctx.add_variable_from_value(SELF, value.clone());
    expr.program.execute(&ctx).map_err(|e| e.to_string())
}

/// The failure of `check` on `value`, if it fails. `field` prefixes the message with the
/// field's path, as the API server does.
fn run(
    rule: &CompiledRule,
    check: &CelCheck,
    value: &cel::Value,
    field: Option<&str>,
) -> Option<Failure> {
    if check.transition() {
        return None;
    }
    let located = |what: String| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!(
            "{}:{}: {what}",
            rule.path.display(),
            rule.spans.find(&check.at)
        ),
        permanent: true,
    };
    match eval(&check.rule, value) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => {
            let message = check
                .message_expression
                .as_ref()
                .and_then(|m| match eval(m, value) {
                    Ok(cel::Value::String(s)) if !s.is_empty() => Some(s.to_string()),
                    // The API server falls back to `message` too.
                    _ => None,
                })
                .unwrap_or_else(|| check.message.clone());
            let message = match field {
                Some(path) => format!("{path}: {message}"),
                None => message,
            };
            Some(Failure {
                reason: check
                    .reason
                    .clone()
                    .unwrap_or_else(|| reason::VALIDATION_FAILED.into()),
                message,
                permanent: true,
            })
        }
        Ok(other) => Some(located(format!(
            "CEL rule must yield a bool, got {other:?}"
        ))),
        Err(e) => Some(located(format!("CEL evaluation failed: {e}"))),
    }
}

/// Every value at `steps` inside `value`, with its path; absent fields have none (the API
/// server checks a field's rules only when it is set).
fn values_at<'a>(
    value: &'a Json,
    steps: &[FieldStep],
    path: String,
    out: &mut Vec<(String, &'a Json)>,
) {
    let Some((step, rest)) = steps.split_first() else {
        out.push((path, value));
        return;
    };
    match step {
        FieldStep::Key(k) => {
            if let Some(inner) = value.get(k) {
                let path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                values_at(inner, rest, path, out);
            }
        }
        FieldStep::Items => {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                values_at(item, rest, format!("{path}[{i}]"), out);
            }
        }
    }
}

/// The first failing CEL rule of a `spec.crd` field.
pub(crate) fn fields(rule: &CompiledRule, parent: &Json) -> Option<Failure> {
    rule.compiled
        .cel
        .fields
        .iter()
        .find_map(|FieldCheck { field, check }| {
            let mut found = Vec::new();
            values_at(parent, field, String::new(), &mut found);
            found
                .into_iter()
                .find_map(|(path, value)| run(rule, check, &to_value(value), Some(&path)))
        })
}

/// The failure of `spec.validate` CEL check `index` on `parent` (converted once by the
/// caller), if it fails.
pub(crate) fn validate(rule: &CompiledRule, index: usize, parent: &cel::Value) -> Option<Failure> {
    let check = rule.compiled.cel.validate.get(index)?;
    run(rule, check, parent, None)
}
