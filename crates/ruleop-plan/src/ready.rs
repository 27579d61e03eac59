//! `Ready` and the rule's declared conditions.

use minijinja::{Value, context};

use super::child::child_ready;
use super::view::View;
use super::{Action, Failure, Plan, reason, render_failure};
use crate::status::{Condition, READY};
use ruleop_lang::rule::{CompiledRule, ConditionTemplates};
use ruleop_lang::template::from_json;
use ruleop_schema::meta::ObjectKey;

/// `Ready` and the declared conditions.
pub(super) fn conditions(
    rule: &CompiledRule,
    view: &View<'_>,
    ctx: &Value,
    plan: &Plan,
    waiting: &[String],
) -> Result<Vec<Condition>, Failure> {
    let mut out = Vec::new();
    let conflicts: Vec<String> = plan
        .apply
        .iter()
        .filter(|d| d.action == Action::Conflict)
        .map(|d| ObjectKey::of(&d.object).to_string())
        .collect();
    let ready = if !conflicts.is_empty() {
        conflict_condition(&conflicts)
    } else if let (Some(r), Some(compiled)) = (&rule.spec.status.ready, &rule.compiled.ready) {
        evaluate(
            rule,
            compiled,
            READY,
            r.reason.as_deref(),
            r.false_reason.as_deref(),
            ctx,
        )?
    } else {
        default_ready(rule, view, ctx, plan, waiting)?
    };
    out.push(ready);
    let declared = rule.spec.status.conditions.iter();
    for (c, compiled) in declared.zip(&rule.compiled.conditions) {
        out.push(evaluate(
            rule,
            compiled,
            &c.type_,
            c.reason.as_deref(),
            c.false_reason.as_deref(),
            ctx,
        )?);
    }
    Ok(out)
}

/// The reason of `Ready=False` while a parent is on its way (children being created, scaled
/// or becoming ready), as opposed to a problem: the rule's `status.ready.falseReason`
/// (default `NotReady`) when it declares `Ready`, else `Progressing`.
pub fn waiting_reason(rule: &CompiledRule) -> &str {
    match &rule.spec.status.ready {
        Some(r) => r.false_reason.as_deref().unwrap_or("NotReady"),
        None => reason::PROGRESSING,
    }
}

/// `Ready=False` for children whose names objects this parent does not own hold (`keys`,
/// in plan order). The controller says the same of conflicts it finds only when writing, so
/// `ruleop diff`, which sees them all beforehand, plans the very condition it writes.
pub fn conflict_condition(keys: &[String]) -> Condition {
    Condition::unmet(
        READY,
        reason::CONFLICT,
        format!(
            "not owned by this object, left untouched: {}",
            keys.join(", ")
        ),
    )
}

/// What a conflict over `key` is announced with, on a parent of kind `parent_kind`.
pub fn not_owned_message(key: &ObjectKey, parent_kind: &str) -> String {
    format!(
        "{key} exists and is not owned by this {parent_kind}; ruleop will not adopt or overwrite it"
    )
}

/// Evaluates the condition whose compiled `when`/`message` are `compiled`.
fn evaluate(
    rule: &CompiledRule,
    compiled: &ConditionTemplates,
    type_: &str,
    reason: Option<&str>,
    false_reason: Option<&str>,
    ctx: &Value,
) -> Result<Condition, Failure> {
    let when = compiled.when;
    let met = rule
        .templates
        .eval(when, ctx)
        .map_err(|e| render_failure(rule, when, &e))?
        .is_true();
    let message = if let Some(name) = compiled.message {
        let ctx = context! { met => met, ..ctx.clone() };
        rule.templates
            .render_text(name, &ctx)
            .map_err(|e| render_failure(rule, name, &e))?
    } else {
        String::new()
    };
    Ok(if met {
        Condition::met(type_, reason.unwrap_or(type_), message)
    } else {
        let default = format!("Not{type_}");
        Condition::unmet(type_, false_reason.unwrap_or(&default), message)
    })
}

/// Ready when every rendered child exists and is ready and no scaling step is pending.
fn default_ready(
    rule: &CompiledRule,
    view: &View<'_>,
    ctx: &Value,
    plan: &Plan,
    waiting: &[String],
) -> Result<Condition, Failure> {
    let mut pending: Vec<String> = waiting.to_vec();
    for d in &plan.apply {
        let key = ObjectKey::of(&d.object);
        let observed = view.observed_children(&d.child).iter().find(|o| key.is(o));
        match observed {
            None => pending.push(format!("{key} not created yet")),
            Some(o) => {
                let Some((_, compiled)) = rule
                    .spec
                    .children
                    .iter()
                    .zip(&rule.compiled.children)
                    .find(|(c, _)| c.name == d.child)
                else {
                    continue;
                };
                // A collection member's `ready` sees its `item` and `key`.
                let member_ctx = match &d.bindings {
                    Some(b) => context! { ..from_json(b), ..ctx.clone() },
                    None => ctx.clone(),
                };
                if !child_ready(rule, compiled.ready, &member_ctx, o)? {
                    pending.push(format!("{key} not ready"));
                }
            }
        }
    }
    if !plan.delete.is_empty() {
        pending.push(format!("{} object(s) being deleted", plan.delete.len()));
    }
    Ok(if pending.is_empty() {
        Condition::met(READY, reason::READY, "all children are ready")
    } else {
        Condition::unmet(READY, reason::PROGRESSING, pending.join("; "))
    })
}
