//! The planner: a pure function from (rule, parent, observed objects, time) to a [`Plan`]:
//! the children to apply, the objects to delete, the status to write and the events to emit.
//!
//! No I/O, no clock, no randomness. `ruleop render` and the controller both call [`plan`].
//! [`view`] sorts the observed objects, [`child`] renders children, [`ready`] computes
//! conditions, [`finalize`] plans deletion, [`uptodate`] tells whether a child needs a write.

mod cel;
mod child;
mod collection;
mod decorate;
mod define;
mod duplicates;
mod finalize;
mod lookup;
mod ownership;
mod parent_status;
pub mod print;
mod ready;
mod related;
mod rollout;
pub mod sample;
pub mod scale;
pub mod status;
pub mod testkit;
mod uptodate;
mod validate;
mod view;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::context;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use child::{check_namespace, is_namespace, plan_child};
use finalize::finalize;
use ready::conditions;
use ruleop_lang::rule::{CompiledRule, Scope, UpdateStrategy};
use ruleop_lang::template::{Handle, TemplateError, shared_json};
use ruleop_schema::meta::{self, ObjectKey};
use ruleop_schema::openapi::Schemas;
use ruleop_schema::status_shape::StatusShape;
use status::{Condition, READY};
use view::View;

pub use decorate::{
    Decorate, DecorationSelect, MANAGER_PREFIX as DECORATION_MANAGER_PREFIX, decoration_targets,
    manager as decoration_manager, manager_parent as decoration_parent, owned_keys,
};
pub use lookup::{LookupTarget, lookup_targets, matches as lookup_matches};
pub use ownership::is_ours;
pub use parent_status::shows_rule_status;
pub use ready::{conflict_condition, not_owned_message};
pub use related::{Selector, related_selectors};

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
    /// The uid of the observed object this updates: the update is applied only to that
    /// object, never to another one that took its name meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The variables of a collection member (`item`, `key`) or a replica (`name`, `index`),
    /// for its `ready` expression.
    #[serde(skip)]
    pub bindings: Option<Json>,
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
    /// Children to apply, in rule order (Namespaces first).
    pub apply: Vec<Desired>,
    /// Objects to delete (only after every apply succeeded).
    pub delete: Vec<Deletion>,
    /// Objects not owned whose labels or annotations differ from the rule's decorations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decorate: Vec<Decorate>,
    /// Objects the parent decorated that no decoration targets any more: their keys go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undecorate: Vec<Decorate>,
    /// ruleop's part of the status (its status fields, conditions and
    /// `observedGeneration`), when it differs from the parent's. It is written whole with
    /// server-side apply, so fields other writers own are never touched.
    pub status: Option<Json>,
    /// ruleop's part of the status after this plan, changed or not: the base on which the
    /// actor sets a condition of its own (an API error, a conflict found while writing).
    #[serde(skip)]
    pub owned_status: Json,
    /// What of ruleop's status the parent's schema allows: the actor's own status writes
    /// (an API error shown on the parent) keep to it too.
    #[serde(skip)]
    pub status_shape: Arc<StatusShape>,
    /// Events to record.
    pub events: Vec<PlanEvent>,
    /// Finalizer change.
    pub finalizer: FinalizerChange,
    /// Reconcile again after this long even without changes.
    pub requeue_after: Option<Duration>,
    /// Set when the plan is empty because of bad input.
    pub failure: Option<Failure>,
    /// Why the parent is outside the rule's selection (`spec.parent.selector`,
    /// `annotationSelector`): the plan is empty, ruleop leaves the parent alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_selected: Option<String>,
}

pub use ruleop_lang::reason;

fn render_failure(rule: &CompiledRule, id: impl Handle, err: &TemplateError) -> Failure {
    Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!("{}: {err}", rule.locate_handle(id, Some(err))),
        permanent: true,
    }
}

fn now_string(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Plans one parent, within the plan's total fuel ([`ruleop_lang::template::PlanScope`]): a plan
/// whose renders spent it fails as a whole, whatever render noticed, so no partial
/// rendering is ever written.
pub fn plan(rule: &CompiledRule, input: Input<'_>) -> Plan {
    if let Some(why) = rule.spec.parent.unselected(input.parent) {
        return Plan {
            not_selected: Some(why),
            ..Plan::default()
        };
    }
    let scope = rule.templates.plan_scope();
    let plan = plan_renders(rule, input);
    let Some((name, limit)) = scope.refused() else {
        return plan;
    };
    let status_shape = parent_status::shape(&input);
    let base = Plan {
        requeue_after: rule.resync,
        owned_status: parent_status::current_status(rule, input.parent, &status_shape),
        status_shape,
        ..Plan::default()
    };
    let err = TemplateError::PlanOutOfFuel { limit };
    let f = Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!("rule {}: {}: {err}", rule.name, rule.locate(&name, None)),
        permanent: true,
    };
    failed(rule, &input, base, f)
}

fn plan_renders(rule: &CompiledRule, input: Input<'_>) -> Plan {
    let parent = input.parent;
    let status_shape = parent_status::shape(&input);
    let mut plan = Plan {
        requeue_after: rule.resync,
        owned_status: parent_status::current_status(rule, parent, &status_shape),
        status_shape,
        ..Plan::default()
    };
    let view = match View::new(rule, &input) {
        Ok(v) => v,
        Err(f) => return failed(rule, &input, plan, f),
    };
    let mut doc = view.document(rule);
    let now_text = now_string(input.now);
    let deleting = meta::is_deleting(parent);
    let values = if rule.spec.definitions.values.is_empty() {
        Ok(Map::new())
    } else {
        // Templates read the document in place (`shared_json`), so it is shared, not copied.
        let shared = Arc::new(std::mem::take(&mut doc));
        let ctx = context! { now => now_text.clone(), ..shared_json(Arc::clone(&shared)) };
        let values = define::values(rule, &ctx);
        drop(ctx);
        doc = Arc::try_unwrap(shared).unwrap_or_else(|d| (*d).clone());
        values
    };
    let values = match values {
        Ok(values) => Ok(values),
        // Deletion goes on with the values that could be computed: a broken value must not
        // block cleanup.
        Err((_, partial)) if deleting => Ok(partial),
        Err((f, partial)) => Err((f, partial)),
    };
    let values_failure = match values {
        Ok(values) => {
            doc["values"] = Json::Object(values);
            None
        }
        Err((f, partial)) => {
            doc["values"] = Json::Object(partial);
            Some(f)
        }
    };
    let doc = Arc::new(doc);
    let ctx = context! { now => now_text, ..shared_json(Arc::clone(&doc)) };
    // Failures from here on may also set the rule's `status.onFailure` fields.
    let fail = |plan: Plan, f: Failure| {
        let extra = define::failure_fields(rule, &doc, &ctx, &f);
        failed_with(rule, &input, plan, f, extra)
    };

    if deleting {
        return finalize(rule, &input, &view, &ctx, plan);
    }
    if rule.needs_finalizer() && !meta::has_finalizer(parent, meta::FINALIZER) {
        plan.finalizer = FinalizerChange::Add;
    }
    // A missing required lookup comes first: values that read it fail only because of it.
    if !view.missing.is_empty() {
        let f = Failure {
            reason: reason::LOOKUP_MISSING.into(),
            message: format!("not found: {}", view.missing.join(", ")),
            // Creating the object is a watch event that reconciles the parent again.
            permanent: true,
        };
        return fail(plan, f);
    }
    if let Some(f) = values_failure {
        return fail(plan, f);
    }

    if let Err(f) = validate::validate(rule, parent, &ctx) {
        return fail(plan, f);
    }

    let mut waiting: Vec<String> = Vec::new();
    let mut held: Vec<ObjectKey> = Vec::new();
    for child in rule.spec.children.iter().zip(&rule.compiled.children) {
        match plan_child(
            rule,
            &input,
            &view,
            &ctx,
            child,
            &mut plan,
            &mut waiting,
            &mut held,
        ) {
            Ok(()) => {}
            Err(f) => {
                plan.apply.clear();
                plan.delete.clear();
                return fail(plan, f);
            }
        }
    }
    if let Some(f) = duplicates::find(rule, &plan.apply) {
        return fail(plan, f);
    }
    if let Err(f) = decorate::plan_decorations(rule, &input, &view, &ctx, &mut plan) {
        return fail(plan, f);
    }

    if rule.spec.parent.scope == Scope::Cluster {
        // A namespace is made before the objects that go into it.
        plan.apply.sort_by_key(|d| !is_namespace(&d.object));
        // Nothing goes into a namespace someone else holds.
        let foreign: Vec<String> = plan
            .apply
            .iter()
            .filter(|d| is_namespace(&d.object) && d.action == Action::Conflict)
            .map(|d| meta::name(&d.object).to_string())
            .collect();
        for d in &mut plan.apply {
            if foreign.iter().any(|ns| ns == meta::namespace(&d.object)) {
                d.action = Action::Conflict;
            }
        }
        let own: Vec<&str> = plan
            .apply
            .iter()
            .filter(|d| is_namespace(&d.object))
            .map(|d| meta::name(&d.object))
            .collect();
        if let Some(f) = plan
            .apply
            .iter()
            .find_map(|d| check_namespace(rule, parent, d, &own).err())
        {
            return failed(rule, &input, plan, f);
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
        if cleanup_names.contains(&child.as_str()) {
            continue;
        }
        for obj in objects {
            let key = ObjectKey::of(obj);
            let desired = plan.apply.iter().any(|d| key.is(&d.object));
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
            Action::Create => plan
                .events
                .push(about(normal("Created", format!("created {key}")), &key)),
            Action::Update => plan.events.push(about(
                normal("Updated", format!("updated {key} to match the rule")),
                &key,
            )),
            Action::Recreate => plan.events.push(about(
                normal(
                    "Updated",
                    format!("recreating {key}: its rendering changed (updateStrategy Recreate)"),
                ),
                &key,
            )),
            // Said once, when it appears, not on every reconcile while it lasts.
            Action::Conflict if status::conflict_shown(parent.get("status"), &key.to_string()) => {}
            Action::Conflict => plan.events.push(PlanEvent {
                type_: EventType::Warning,
                reason: reason::CONFLICT.into(),
                message: not_owned_message(&key, meta::kind(parent)),
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
            return fail(plan, f);
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
            return fail(plan, f);
        }
    };
    parent_status::set_status(rule, &input, &mut plan, fields, &conditions);
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
fn failed(rule: &CompiledRule, input: &Input<'_>, plan: Plan, failure: Failure) -> Plan {
    failed_with(rule, input, plan, failure, Map::new())
}

/// [`failed`], with `extra` status fields (`status.onFailure`) over the current ones.
fn failed_with(
    rule: &CompiledRule,
    input: &Input<'_>,
    mut plan: Plan,
    failure: Failure,
    extra: Map<String, Json>,
) -> Plan {
    plan.apply.clear();
    plan.delete.clear();
    plan.decorate.clear();
    plan.undecorate.clear();
    let condition = Condition::unmet(READY, &failure.reason, failure.message.clone());
    // Announced once, when the parent first shows it: the status write this plan makes
    // reconciles the parent again, and a restart plans it again, both with nothing new.
    if !status::condition_shown(input.parent.get("status"), &condition) {
        plan.events.push(PlanEvent {
            type_: EventType::Warning,
            reason: failure.reason.clone(),
            message: failure.message.clone(),
            related: None,
        });
    }
    let mut fields = parent_status::previous_fields(rule, input.parent, &plan.status_shape);
    fields.extend(extra);
    parent_status::set_status(rule, input, &mut plan, fields, &[condition]);
    plan.failure = Some(failure);
    plan
}

#[cfg(test)]
mod tests;
