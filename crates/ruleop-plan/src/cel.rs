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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Input, plan};

    fn rule(body: &str) -> CompiledRule {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {{apiVersion: shop.example.com/v1, kind: Box}}\n{body}"
        );
        ruleop_lang::load::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap()
    }

    fn failure(rule: &CompiledRule, spec: Json) -> Option<Failure> {
        let parent = json!({"apiVersion": "shop.example.com/v1", "kind": "Box",
            "metadata": {"name": "b", "namespace": "default", "uid": "u", "generation": 1}, "spec": spec});
        let now = "2024-01-01T00:00:00Z".parse().unwrap();
        let input = Input {
            parent: &parent,
            observed: &[],
            now,
            schemas: None,
        };
        plan(rule, input).failure
    }

    #[test]
    fn json_becomes_cel_values_of_the_same_types() {
        assert_eq!(to_value(&json!(3)), cel::Value::Int(3));
        assert_eq!(to_value(&json!(u64::MAX)), cel::Value::UInt(u64::MAX));
        assert_eq!(to_value(&json!(1.5)), cel::Value::Float(1.5));
        assert_eq!(to_value(&json!(null)), cel::Value::Null);
        // Numbers compare across int, uint and double, as in the API server's CEL.
        let r = rule(
            "  validate:\n    - {cel: 'self.spec.ratio > 0 && self.spec.n < 2.5', message: m}\n",
        );
        assert!(failure(&r, json!({"ratio": 0.5, "n": 2})).is_none());
        assert!(failure(&r, json!({"ratio": 0.0, "n": 2})).is_some());
    }

    #[test]
    fn a_failing_check_fails_the_plan_with_its_reason_and_message() {
        let r = rule(concat!(
            "  validate:\n",
            "    - cel: self.spec.size <= 10\n",
            "      message: too big\n",
            "      messageExpression: \"'size ' + string(self.spec.size) + ' is over 10'\"\n",
            "      reason: TooBig\n",
            "    - cel: self.spec.size == oldSelf.spec.size\n      message: immutable\n",
        ));
        assert!(
            failure(&r, json!({"size": 3})).is_none(),
            "transition rules are skipped"
        );
        let f = failure(&r, json!({"size": 11})).unwrap();
        assert_eq!(
            (f.reason.as_str(), f.message.as_str()),
            ("TooBig", "size 11 is over 10")
        );
        // Absent: the rule cannot evaluate, which is the rule's fault, located.
        let f = failure(&r, json!({})).unwrap();
        assert_eq!(f.reason, reason::RENDER_FAILED);
        assert!(f.message.starts_with("r.yaml:7:"), "{}", f.message);
    }

    #[test]
    fn field_rules_run_where_the_field_is_set_and_say_its_path() {
        let r = rule(concat!(
            "  crd:\n    spec:\n",
            "      tags:\n        type: array\n        items:\n          type: string\n",
            "          validations: [{rule: \"self.startsWith('t-')\", message: a tag starts with t-}]\n",
        ));
        assert!(failure(&r, json!({})).is_none());
        assert!(failure(&r, json!({"tags": ["t-a", "t-b"]})).is_none());
        let f = failure(&r, json!({"tags": ["t-a", "b"]})).unwrap();
        assert_eq!(f.reason, reason::VALIDATION_FAILED);
        assert_eq!(f.message, "spec.tags[1]: a tag starts with t-");
    }
}
