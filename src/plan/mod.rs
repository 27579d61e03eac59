//! The planner: a pure function from (rule, parent, observed objects, time) to a [`Plan`]:
//! the children to apply, the objects to delete, the status to write and the events to emit.
//!
//! No I/O, no clock, no randomness. `ruleop render` and the controller both call [`plan`].
//! [`view`] sorts the observed objects, [`child`] renders children, [`ready`] computes
//! conditions, [`finalize`] plans deletion, [`uptodate`] tells whether a child needs a write.

mod child;
mod finalize;
mod ready;
mod uptodate;
mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::context;
use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::meta::{self, ObjectKey};
use crate::openapi::Schemas;
use crate::rule::{CompiledRule, UpdateStrategy};
use crate::status::{self, Condition, READY};
use crate::template::{TemplateError, from_json};
use child::plan_child;
use finalize::finalize;
use ready::conditions;
use view::View;

/// What the planner was given.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The parent object.
    pub parent: &'a Json,
    /// Objects that may be children (by ruleop's labels), related objects (by selector) or
    /// name conflicts. Anything else is ignored.
    pub observed: &'a [Json],
    /// The current time (for condition transitions and cleanup timeouts).
    pub now: Timestamp,
    /// The API server's schemas of the child kinds (list semantics, quantities), when known;
    /// without them children are compared by a documented fallback.
    pub schemas: Option<&'a Schemas>,
}

/// What applying a desired child means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// The object does not exist yet.
    Create,
    /// It exists and differs from the rendering (template change or drift): apply it.
    Update,
    /// It exists, its rendering changed and its `updateStrategy` is `Recreate`: delete it
    /// (the next reconcile creates it). Drift alone is an [`Action::Update`].
    Recreate,
    /// It exists and matches: no write needed.
    UpToDate,
    /// An object of that name exists and this parent does not own it: never touched.
    Conflict,
}

/// A rendered child.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    /// The child (or cleanup step) name in the rule.
    pub child: String,
    /// The full manifest to apply.
    pub object: Json,
    /// What applying it does.
    pub action: Action,
    /// How to update it.
    pub strategy: UpdateStrategy,
    /// For an update: a JSON patch that puts back keyed lists whose entries were edited by
    /// hand, for when the API server rejects the apply (the edited entry and the rendered
    /// one clash, e.g. a duplicate port name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Json>,
    /// Fields left to other managers (`managedElsewhere`): those ruleop still owns are
    /// handed over, keeping their value, before an update stops sending them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handover: Vec<String>,
}

/// An object to delete.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    /// The child name in the rule (as labelled on the object).
    pub child: String,
    /// The object.
    pub key: ObjectKey,
    /// Its uid, as a precondition: never delete a newer object of the same name.
    pub uid: String,
    /// Why.
    pub reason: String,
}

/// Event severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Progress.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An event to record on the parent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEvent {
    /// Severity.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// The child the event is about. Events recorded on one parent form one series per
    /// reason and related object, so each child gets its own entry in `kubectl describe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectKey>,
}

/// A change to the parent's finalizers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum FinalizerChange {
    /// Leave as is.
    #[default]
    None,
    /// Add ruleop's finalizer before anything else.
    Add,
    /// Cleanup finished: remove it.
    Remove,
}

/// Why a plan does nothing to children.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// CamelCase reason (condition reason, event reason, metric label).
    pub reason: String,
    /// The message, located in the rule file where the fault is the rule's.
    pub message: String,
    /// Whether retrying cannot help until the parent or rule changes.
    pub permanent: bool,
}

/// The result of planning one parent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Children to apply, in rule order.
    pub apply: Vec<Desired>,
    /// Objects to delete (only after every apply succeeded).
    pub delete: Vec<Deletion>,
    /// The full status to write, when it differs from the parent's.
    pub status: Option<Json>,
    /// Events to record.
    pub events: Vec<PlanEvent>,
    /// Finalizer change.
    pub finalizer: FinalizerChange,
    /// Reconcile again after this long even without changes.
    pub requeue_after: Option<Duration>,
    /// Set when the plan is empty because of bad input.
    pub failure: Option<Failure>,
}

/// Reasons ruleop uses.
pub mod reason {
    /// Validation failed (default).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// A template, expression or projection failed.
    pub const RENDER_FAILED: &str = "RenderFailed";
    /// A child's name is taken by an object this parent does not own.
    pub const CONFLICT: &str = "Conflict";
    /// Children are being created or scaled.
    pub const PROGRESSING: &str = "Progressing";
    /// Everything is in place.
    pub const READY: &str = "Ready";
    /// Cleanup is running.
    pub const DELETING: &str = "Deleting";
}

fn render_failure(rule: &CompiledRule, name: &str, err: &TemplateError) -> Failure {
    Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!("{}: {err}", rule.locate(name, Some(err))),
        permanent: true,
    }
}

fn now_string(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A rendered related selector (`matchLabels`).
pub type Selector = BTreeMap<String, String>;

/// A parent's related selectors (`spec.related[i].selector`, in order), rendered: the
/// planner filters related objects with them, the controller looks them up by them.
pub fn related_selectors(
    rule: &CompiledRule,
    parent: &Json,
    now: Timestamp,
) -> Result<Vec<Selector>, Failure> {
    if rule.spec.related.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = from_json(
        &json!({"parent": parent, "children": {}, "related": {}, "now": now_string(now)}),
    );
    rule.spec
        .related
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.selector
                .keys()
                .map(|key| {
                    let name = format!("spec.related[{i}].selector.{key}");
                    let value = rule
                        .templates
                        .render_text(&name, &ctx)
                        .map_err(|e| render_failure(rule, &name, &e))?;
                    Ok((key.clone(), value))
                })
                .collect()
        })
        .collect()
}

/// Plans one parent.
pub fn plan(rule: &CompiledRule, input: Input<'_>) -> Plan {
    let parent = input.parent;
    let mut plan = Plan {
        requeue_after: rule.resync,
        ..Plan::default()
    };
    let view = match View::new(rule, &input) {
        Ok(v) => v,
        Err(f) => return failed(&input, plan, f),
    };
    let doc = view.document(rule);
    let ctx = context! { now => now_string(input.now), ..from_json(&doc) };

    if meta::is_deleting(parent) {
        return finalize(rule, &input, &view, &ctx, plan);
    }
    if rule.needs_finalizer() && !meta::has_finalizer(parent, meta::FINALIZER) {
        plan.finalizer = FinalizerChange::Add;
    }

    for (i, v) in rule.spec.validate.iter().enumerate() {
        let name = format!("spec.validate[{i}].rule");
        match rule.templates.eval(&name, &ctx) {
            Ok(ok) if ok.is_true() => {}
            Ok(_) => {
                let message_name = format!("spec.validate[{i}].message");
                let message = rule
                    .templates
                    .render_text(&message_name, &ctx)
                    .unwrap_or_else(|e| format!("{}: {e}", rule.locate(&message_name, Some(&e))));
                let f = Failure {
                    reason: v
                        .reason
                        .clone()
                        .unwrap_or_else(|| reason::VALIDATION_FAILED.into()),
                    message,
                    permanent: true,
                };
                return failed(&input, plan, f);
            }
            Err(e) => return failed(&input, plan, render_failure(rule, &name, &e)),
        }
    }

    let mut waiting: Vec<String> = Vec::new();
    let mut held: Vec<ObjectKey> = Vec::new();
    for (i, child) in rule.spec.children.iter().enumerate() {
        match plan_child(
            rule,
            &input,
            &view,
            &ctx,
            i,
            child,
            &mut plan,
            &mut waiting,
            &mut held,
        ) {
            Ok(()) => {}
            Err(f) => {
                plan.apply.clear();
                plan.delete.clear();
                return failed(&input, plan, f);
            }
        }
    }

    // Prune: this parent's children that the rule no longer renders.
    let cleanup_names: Vec<&str> = rule
        .spec
        .finalizer
        .iter()
        .flat_map(|f| f.cleanup.iter().map(|s| s.name.as_str()))
        .collect();
    for (child, objects) in &view.children {
        if cleanup_names.contains(child) {
            continue;
        }
        for obj in objects {
            let key = ObjectKey::of(obj);
            let desired = plan
                .apply
                .iter()
                .any(|d| ObjectKey::of(&d.object).same_object(&key));
            let deleting = plan.delete.iter().any(|d| d.key.same_object(&key));
            let waits = held.iter().any(|h| h.same_object(&key));
            if !desired
                && !deleting
                && !waits
                && !meta::is_deleting(obj)
                && meta::is_owned_by(obj, meta::uid(parent))
            {
                plan.delete.push(Deletion {
                    child: child.to_string(),
                    key,
                    uid: meta::uid(obj).to_string(),
                    reason: "no longer rendered by the rule".into(),
                });
            }
        }
    }

    for d in &plan.apply {
        let key = ObjectKey::of(&d.object);
        match d.action {
            Action::Create => plan.events.push(about(normal("Created", format!("created {key}")), &key)),
            Action::Update => plan.events.push(about(normal("Updated", format!("updated {key} to match the rule")), &key)),
            Action::Recreate => plan.events.push(about(normal("Updated", format!("recreating {key}: its rendering changed (updateStrategy Recreate)")), &key)),
            Action::Conflict => plan.events.push(PlanEvent {
                type_: EventType::Warning,
                reason: reason::CONFLICT.into(),
                message: format!("{key} exists and is not owned by this {}; ruleop will not adopt or overwrite it", meta::kind(parent)),
                related: Some(key.clone()),
            }),
            Action::UpToDate => {}
        }
    }
    for d in &plan.delete {
        plan.events.push(about(
            normal("Deleted", format!("deleted {} ({})", d.key, d.reason)),
            &d.key,
        ));
    }

    let conditions = match conditions(rule, &view, &ctx, &plan, &waiting) {
        Ok(c) => c,
        Err(f) => {
            plan.apply.clear();
            plan.delete.clear();
            plan.events.clear();
            return failed(&input, plan, f);
        }
    };
    let fields = match status::project(rule, &doc, &ctx) {
        Ok(fields) => fields,
        Err(e) => {
            let f = Failure {
                reason: reason::RENDER_FAILED.into(),
                message: e.to_string(),
                permanent: true,
            };
            plan.apply.clear();
            plan.delete.clear();
            plan.events.clear();
            return failed(&input, plan, f);
        }
    };
    set_status(&input, &mut plan, fields, &conditions);
    plan
}

fn normal(reason: &str, message: String) -> PlanEvent {
    PlanEvent {
        type_: EventType::Normal,
        reason: reason.into(),
        message,
        related: None,
    }
}

/// `event`, about the child `key`.
fn about(event: PlanEvent, key: &ObjectKey) -> PlanEvent {
    PlanEvent {
        related: Some(key.clone()),
        ..event
    }
}

/// An empty plan reporting `failure`: nothing applied or deleted, `Ready=False`, a Warning.
fn failed(input: &Input<'_>, mut plan: Plan, failure: Failure) -> Plan {
    plan.apply.clear();
    plan.delete.clear();
    plan.events.push(PlanEvent {
        type_: EventType::Warning,
        reason: failure.reason.clone(),
        message: failure.message.clone(),
        related: None,
    });
    set_status(
        input,
        &mut plan,
        previous_fields(input),
        &[Condition::unmet(
            READY,
            &failure.reason,
            failure.message.clone(),
        )],
    );
    plan.failure = Some(failure);
    plan
}

/// The parent's current status fields, without the ones ruleop recomputes (kept as they are
/// when a plan cannot project new ones).
fn previous_fields(input: &Input<'_>) -> Map<String, Json> {
    let mut fields = input
        .parent
        .get("status")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    fields.remove("conditions");
    fields.remove("observedGeneration");
    fields
}

/// Builds the full status and keeps it only if it differs from the parent's.
fn set_status(
    input: &Input<'_>,
    plan: &mut Plan,
    mut fields: Map<String, Json>,
    conditions: &[Condition],
) {
    let previous = input.parent.get("status");
    let generation = input
        .parent
        .pointer("/metadata/generation")
        .and_then(Json::as_i64);
    fields.insert(
        "conditions".into(),
        status::merge_conditions(
            previous.and_then(|s| s.get("conditions")),
            conditions,
            generation,
            input.now,
        ),
    );
    if let Some(g) = generation {
        fields.insert("observedGeneration".into(), json!(g));
    }
    let was_ready = status::condition_status(previous, READY);
    if let Some(ready) = conditions.iter().find(|c| c.type_ == READY)
        && was_ready != Some(ready.status)
        && ready.status
    {
        plan.events.push(normal(
            "Ready",
            format!("{} is ready", meta::kind(input.parent)),
        ));
    }
    let new = Json::Object(fields);
    if previous != Some(&new) {
        plan.status = Some(new);
    }
}
