//! Checks on the parent: `spec.validate` entries (a Jinja `rule` or a `cel` expression) and the
//! CEL `validations` of `spec.crd` fields, compiled once when the rule loads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RuleSpec;
use super::compile::Checker;
use super::compiled::ValidateTemplates;
use super::crd_spec::Field;
use crate::cel::{CelCheck, CelError, CelExpr, FieldCheck, FieldStep};

/// A check on the parent: a Jinja `rule` (checked by ruleop after the object is stored) or a
/// `cel` expression (also enforced by the API server at `kubectl apply`, see `ruleop crd` and
/// `ruleop policy`). Exactly one of the two.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Validation {
    /// A minijinja expression that must be true, e.g. `parent.spec.size <= 10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A CEL expression over `self` (the parent object) that must be true, e.g.
    /// `self.spec.replicas <= 10`; one reading `oldSelf` (the stored version) is a transition
    /// rule, checked on updates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
    /// The message when the check fails: a template for a `rule`, plain text for a `cel`
    /// check (the API server shows it as is).
    pub message: String,
    /// For a `cel` check: a CEL expression computing the message (a string), e.g.
    /// `'size ' + string(self.spec.size) + ' is over 10'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expression: Option<String>,
    /// The condition reason when it fails (default `ValidationFailed`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A CEL rule on a field of `spec.crd.spec` (an `x-kubernetes-validations` entry of the
/// generated CRD).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CelValidation {
    /// A CEL expression over `self` (this field's value) that must be true, e.g.
    /// `self.startsWith('db-')`; one reading `oldSelf` (the stored value) is a transition rule,
    /// checked on updates only: `self == oldSelf` makes the field immutable.
    pub rule: String,
    /// The message when it is false.
    pub message: String,
    /// A CEL expression computing the message (a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expression: Option<String>,
}

/// Compiles `spec.validate` and the `validations` of `spec.crd` fields.
pub(super) fn compile(c: &mut Checker<'_>, spec: &RuleSpec) {
    for (i, v) in spec.validate.iter().enumerate() {
        let base = format!("spec.validate[{i}]");
        let compiled = match (&v.rule, &v.cel) {
            (Some(rule), None) => {
                if v.message_expression.is_some() {
                    c.error(
                        &format!("{base}.messageExpression"),
                        "messageExpression is CEL: it goes with a cel check (a Jinja rule's message is a template)",
                    );
                }
                let rule = c.expression(&format!("{base}.rule"), rule);
                let message = c.template(&format!("{base}.message"), &v.message);
                rule.zip(message)
                    .map(|(rule, message)| ValidateTemplates::Jinja { rule, message })
            }
            (None, Some(cel)) => {
                if v.message.contains("{{") || v.message.contains("{%") {
                    c.error(
                        &format!("{base}.message"),
                        "a cel check's message is plain text (the API server shows it as is): compute it with messageExpression",
                    );
                }
                let check = cel_check(
                    c,
                    &format!("{base}.cel"),
                    cel,
                    &v.message,
                    v.message_expression.as_deref(),
                    &base,
                );
                check.map(|mut check| {
                    check.reason = v.reason.clone();
                    c.draft.cel.validate.push(check);
                    ValidateTemplates::Cel(c.draft.cel.validate.len() - 1)
                })
            }
            _ => {
                c.error(
                    &base,
                    "a check needs exactly one of rule (a Jinja expression) or cel (a CEL expression)",
                );
                None
            }
        };
        c.draft.validate.push(compiled);
    }
    let Some(crd) = &spec.crd else {
        return;
    };
    for (name, field) in &crd.spec {
        let steps = vec![FieldStep::Key("spec".into()), FieldStep::Key(name.clone())];
        fields(c, &format!("spec.crd.spec.{name}"), steps, field, false);
    }
    for (name, field) in &crd.status {
        if !field.validations.is_empty() {
            c.error(
                &format!("spec.crd.status.{name}.validations"),
                "validations belong to spec fields: ruleop writes the status, the API server would refuse its writes",
            );
        }
    }
}

/// Compiles the `validations` of `field` (at `base`) and of the fields inside it.
fn fields(c: &mut Checker<'_>, base: &str, steps: Vec<FieldStep>, field: &Field, in_list: bool) {
    for (j, v) in field.validations.iter().enumerate() {
        let at = format!("{base}.validations[{j}]");
        let rule_at = format!("{at}.rule");
        let Some(check) = cel_check(
            c,
            &rule_at,
            &v.rule,
            &v.message,
            v.message_expression.as_deref(),
            &at,
        ) else {
            continue;
        };
        if in_list && check.transition() {
            // The API server cannot pair an item of a plain list with its old version.
            c.error(
                &rule_at,
                "a transition rule (oldSelf) cannot be inside a list's items: put it on the list itself",
            );
            continue;
        }
        c.draft.cel.fields.push(FieldCheck {
            field: steps.clone(),
            check,
        });
    }
    for (name, inner) in field.fields.iter().flatten() {
        let mut inner_steps = steps.clone();
        inner_steps.push(FieldStep::Key(name.clone()));
        fields(
            c,
            &format!("{base}.fields.{name}"),
            inner_steps,
            inner,
            in_list,
        );
    }
    if let Some(items) = &field.items {
        let mut inner_steps = steps;
        inner_steps.push(FieldStep::Items);
        fields(c, &format!("{base}.items"), inner_steps, items, true);
    }
}

/// One CEL check: its rule at `rule_at`, its message expression under `base`.
fn cel_check(
    c: &mut Checker<'_>,
    rule_at: &str,
    rule: &str,
    message: &str,
    message_expression: Option<&str>,
    base: &str,
) -> Option<CelCheck> {
    let rule = cel_expr(c, rule_at, rule);
    let message_expression = match message_expression {
        None => Some(None),
        Some(m) => cel_expr(c, &format!("{base}.messageExpression"), m).map(Some),
    };
    Some(CelCheck {
        at: rule_at.to_string(),
        rule: rule?,
        message: message.to_string(),
        message_expression: message_expression?,
        reason: None,
    })
}

/// Compiles one CEL expression, its error located in the file.
fn cel_expr(c: &mut Checker<'_>, path: &str, source: &str) -> Option<CelExpr> {
    CelExpr::compile(source)
        .map_err(|e: CelError| {
            let location = c.spans().line_in(path, e.line());
            c.error_at(location, e.to_string());
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::cel::FieldStep;
    use crate::load::parse_rule;
    use crate::rule::{CompiledRule, ValidateTemplates};

    const HEAD: &str = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n  parent: {apiVersion: shop.example.com/v1, kind: Box}\n";

    fn load(body: &str) -> Result<CompiledRule, Vec<String>> {
        let source = format!("{HEAD}{body}");
        parse_rule(std::path::Path::new("r.yaml"), &source)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn one_error(body: &str, line: usize, needle: &str) {
        let errors = load(body).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(&format!("r.yaml:{line}:")) && errors[0].contains(needle),
            "wanted r.yaml:{line}: and {needle:?} in {}",
            errors[0]
        );
    }

    #[test]
    fn cel_and_jinja_checks_compile_side_by_side() {
        let rule = load(concat!(
            "  validate:\n",
            "    - rule: parent.spec.size > 0\n      message: \"{{ parent.spec.size }}\"\n",
            "    - cel: self.spec.size <= 10\n      message: at most 10\n      reason: TooBig\n",
            "  crd:\n    spec:\n",
            "      size: {type: integer}\n",
            "      name:\n        type: string\n        validations:\n",
            "          - {rule: self == oldSelf, message: name is immutable}\n",
            "      tags:\n        type: array\n        items:\n          type: string\n",
            "          validations: [{rule: \"size(self) > 0\", message: no empty tag}]\n",
        ))
        .unwrap();
        assert!(matches!(
            rule.compiled.validate[..],
            [ValidateTemplates::Jinja { .. }, ValidateTemplates::Cel(0)]
        ));
        let cel = &rule.compiled.cel;
        assert_eq!(cel.validate[0].reason.as_deref(), Some("TooBig"));
        assert_eq!(cel.fields.len(), 2);
        assert!(cel.fields[0].check.transition());
        assert_eq!(
            cel.fields[1].field,
            [
                FieldStep::Key("spec".into()),
                FieldStep::Key("tags".into()),
                FieldStep::Items
            ]
        );
    }

    #[test]
    fn cel_errors_say_file_and_line() {
        one_error(
            "  validate:\n    - cel: self.spec.size <=\n      message: m\n",
            7,
            "CEL does not compile",
        );
        // Inside a block scalar: the line of the error within the expression.
        one_error(
            "  validate:\n    - cel: |\n        self.spec.a &&\n          (self.spec.b ==\n      message: m\n",
            9,
            "CEL does not compile",
        );
        one_error(
            "  validate:\n    - cel: parent.spec.size > 1\n      message: m\n",
            7,
            "the parent is `self`",
        );
        one_error(
            "  crd:\n    spec:\n      size:\n        type: integer\n        validations:\n          - {rule: 'self >', message: m}\n",
            11,
            "CEL does not compile",
        );
        one_error(
            "  validate:\n    - cel: 'true'\n      message: m\n      messageExpression: \"'a' +\"\n",
            9,
            "CEL does not compile",
        );
    }

    #[test]
    fn a_check_is_jinja_or_cel() {
        one_error(
            "  validate:\n    - {rule: 'true', cel: 'true', message: m}\n",
            7,
            "exactly one of rule (a Jinja expression) or cel",
        );
        one_error("  validate:\n    - {message: m}\n", 7, "exactly one of");
        one_error(
            "  validate:\n    - rule: 'true'\n      message: m\n      messageExpression: \"'x'\"\n",
            9,
            "messageExpression is CEL",
        );
        one_error(
            "  validate:\n    - cel: 'true'\n      message: \"{{ parent.spec.a }}\"\n",
            8,
            "plain text",
        );
        one_error(
            "  crd:\n    spec:\n      tags:\n        type: array\n        items:\n          type: string\n          validations: [{rule: self == oldSelf, message: m}]\n",
            12,
            "cannot be inside a list's items",
        );
    }
}
