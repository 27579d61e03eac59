//! The deletion path of a parent: cleanup steps, ordered deletion, finalizer removal.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::{Value, context};
use serde_json::Value as Json;

use super::child::{check_namespace, is_namespace, render_child};
use super::duplicates::cleanup_free;
use super::parent_status::{previous_fields, set_status};
use super::view::View;
use super::{Deletion, EventType, FinalizerChange, Input, Plan, PlanEvent, normal, reason};
use crate::scale;
use crate::status::{Condition, READY};
use ruleop_lang::rule::{Child, CompiledRule, DeletionPolicy, ReplicaDeletion, UpdateStrategy};
use ruleop_lang::template::shared_json;
use ruleop_schema::meta::{self, ObjectKey};

/// The deletion path: cleanup steps in order, then ordered child deletion, then the
/// finalizer is removed.
pub(super) fn finalize(
    rule: &CompiledRule,
    input: &Input<'_>,
    view: &View<'_>,
    ctx: &Value,
    mut plan: Plan,
) -> Plan {
    plan.requeue_after = None;
    if !meta::has_finalizer(input.parent, meta::FINALIZER) {
        return plan;
    }
    // Decorations go first: the finalizer is what lets them be removed at all.
    if super::decorate::undecorate_all(rule, input, &mut plan) {
        let fields = previous_fields(rule, input.parent, &plan.status_shape);
        let message = "removing decorations".to_string();
        set_status(
            rule,
            input,
            &mut plan,
            fields,
            &[Condition::unmet(READY, reason::DELETING, message)],
        );
        plan.requeue_after = Some(Duration::from_secs(2));
        return plan;
    }
    let Some(fin) = &rule.spec.finalizer else {
        plan.finalizer = FinalizerChange::Remove;
        return plan;
    };
    let deleting = |plan: &mut Plan, message: String, after: Duration| {
        let fields = previous_fields(rule, input.parent, &plan.status_shape);
        set_status(
            rule,
            input,
            plan,
            fields,
            &[Condition::unmet(READY, reason::DELETING, message)],
        );
        plan.requeue_after = Some(after);
    };
    for (i, (step, compiled)) in fin.cleanup.iter().zip(&rule.compiled.cleanup).enumerate() {
        let template = compiled.template;
        match view.observed_children(&step.name).first() {
            None => {
                // A cleanup step is applied like a child owned by the parent.
                let as_child = Child {
                    name: step.name.clone(),
                    api_version: step.api_version.clone(),
                    kind: step.kind.clone(),
                    when: None,
                    template: String::new(),
                    replicas: None,
                    for_each: None,
                    ready: None,
                    deletion_policy: DeletionPolicy::Delete,
                    update_strategy: UpdateStrategy::Apply,
                    managed_elsewhere: Vec::new(),
                };
                let own: Vec<&str> = view
                    .children
                    .values()
                    .flatten()
                    .filter(|o| is_namespace(o))
                    .map(|o| meta::name(o))
                    .collect();
                let rendered = render_child(rule, input, template, &as_child, ctx, None)
                    .and_then(|d| check_namespace(rule, input.parent, &d, &own).map(|()| d))
                    .and_then(|d| cleanup_free(rule, view, template, &d).map(|()| d));
                match rendered {
                    Ok(desired) => {
                        let key = ObjectKey::of(&desired.object);
                        plan.events.push(PlanEvent {
                            related: Some(key.clone()),
                            ..normal(
                                "CleanupStarted",
                                format!("cleanup step {}: created {key}", step.name),
                            )
                        });
                        plan.apply.push(desired);
                        deleting(
                            &mut plan,
                            format!("cleanup step {} started", step.name),
                            Duration::from_secs(2),
                        );
                    }
                    Err(f) => {
                        // A broken cleanup step must not block deletion forever.
                        plan.events.push(PlanEvent {
                            type_: EventType::Warning,
                            reason: f.reason.clone(),
                            message: format!("cleanup step {} skipped: {}", step.name, f.message),
                            related: None,
                        });
                        continue;
                    }
                }
                return plan;
            }
            Some(obj) => {
                let until = compiled.until;
                let step_ctx =
                    context! { child => shared_json(Arc::new((*obj).clone())), ..ctx.clone() };
                let done = match rule.templates.eval(until, &step_ctx) {
                    Ok(v) => v.is_true(),
                    Err(e) => {
                        plan.events.push(PlanEvent {
                            type_: EventType::Warning,
                            reason: reason::RENDER_FAILED.into(),
                            message: format!(
                                "cleanup step {} skipped: {}: {e}",
                                step.name,
                                rule.locate_handle(until, Some(&e))
                            ),
                            related: Some(ObjectKey::of(obj)),
                        });
                        true
                    }
                };
                if done {
                    continue;
                }
                let timeout = rule.cleanup_timeouts.get(i).copied().flatten();
                let created: Option<Timestamp> = obj
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Json::as_str)
                    .and_then(|t| t.parse().ok());
                if let (Some(timeout), Some(created)) = (timeout, created) {
                    let elapsed = input.now.duration_since(created);
                    if elapsed.as_secs() >= i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX) {
                        plan.events.push(PlanEvent {
                            type_: EventType::Warning,
                            reason: "CleanupTimedOut".into(),
                            message: format!(
                                "cleanup step {} did not finish within {timeout:?}; going on",
                                step.name
                            ),
                            related: Some(ObjectKey::of(obj)),
                        });
                        continue;
                    }
                }
                deleting(
                    &mut plan,
                    format!("waiting for cleanup step {}", step.name),
                    Duration::from_secs(5),
                );
                return plan;
            }
        }
    }
    for name in &fin.delete_order {
        let objects = view.observed_children(name);
        if objects.is_empty() {
            continue;
        }
        let owned = objects
            .iter()
            .filter(|o| !meta::is_deleting(o) && meta::is_owned_by(o, meta::uid(input.parent)));
        let replicated = rule
            .spec
            .children
            .iter()
            .any(|c| &c.name == name && c.replicas.is_some());
        // One replica at a time, highest index first, each gone before the next.
        let one_at_a_time = replicated && fin.delete_replicas == ReplicaDeletion::OneAtATime;
        let batch: Vec<&&Json> = if !one_at_a_time {
            owned.collect()
        } else if objects.iter().any(|o| meta::is_deleting(o)) {
            Vec::new()
        } else {
            owned
                .max_by_key(|o| (scale::ordinal_of(o).unwrap_or(0), meta::name(o)))
                .into_iter()
                .collect()
        };
        for obj in batch {
            plan.delete.push(Deletion {
                child: name.clone(),
                key: ObjectKey::of(obj),
                uid: meta::uid(obj).to_string(),
                reason: "ordered deletion of the parent".into(),
            });
        }
        deleting(
            &mut plan,
            format!("deleting {name}"),
            Duration::from_secs(2),
        );
        return plan;
    }
    plan.finalizer = FinalizerChange::Remove;
    plan.events
        .push(normal("CleanupDone", "cleanup finished".into()));
    plan
}
