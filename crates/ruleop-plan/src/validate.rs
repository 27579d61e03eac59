//! `spec.validate` and the CEL rules of `spec.crd` fields: a failing check fails the plan
//! (`Ready=False` with its reason and message, nothing applied).

use minijinja::Value;
use serde_json::Value as Json;

use ruleop_lang::reason;
use ruleop_lang::rule::{CompiledRule, ValidateTemplates};

use crate::{Failure, cel, render_failure};

/// The first failing check: the fields' CEL rules first (the API server checks the schema
/// before the object's own rules), then `spec.validate` in order.
pub(crate) fn validate(rule: &CompiledRule, parent: &Json, ctx: &Value) -> Result<(), Failure> {
    if let Some(f) = cel::fields(rule, parent) {
        return Err(f);
    }
    // Converted once, for every CEL check of the list.
    let mut parent_value = None;
    for (v, compiled) in rule.spec.validate.iter().zip(&rule.compiled.validate) {
        let (name, message_name) = match *compiled {
            ValidateTemplates::Cel(index) => {
                let value = parent_value.get_or_insert_with(|| cel::to_value(parent));
                if let Some(f) = cel::validate(rule, index, value) {
                    return Err(f);
                }
                continue;
            }
            ValidateTemplates::Jinja { rule, message } => (rule, message),
        };
        match rule.templates.eval(name, ctx) {
            Ok(ok) if ok.is_true() => {}
            Ok(_) => {
                let message = rule
                    .templates
                    .render_text(message_name, ctx)
                    .unwrap_or_else(|e| {
                        format!("{}: {e}", rule.locate_handle(message_name, Some(&e)))
                    });
                return Err(Failure {
                    reason: v
                        .reason
                        .clone()
                        .unwrap_or_else(|| reason::VALIDATION_FAILED.into()),
                    message,
                    permanent: true,
                });
            }
            Err(e) => return Err(render_failure(rule, name, &e)),
        }
    }
    Ok(())
}
