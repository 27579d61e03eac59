//! The planner: a pure function from (rule, parent, observed objects, time) to a [`Plan`]:
//! the children to apply, the objects to delete, the status to write and the events to emit.
//!
//! No I/O, no clock, no randomness. `ruleop render` and the controller both call [`plan`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::{Value, context};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use crate::meta::{self, ObjectKey};
use crate::rule::{Child, CompiledRule, DeletionPolicy, Scope, UpdateStrategy};
use crate::scale::{self, ObservedReplica};
use crate::status::{self, Condition, READY};
use crate::template::{TemplateError, from_json, is_ready, to_json};

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
}

/// What applying a desired child means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// The object does not exist yet.
    Create,
    /// It exists and differs from the rendering (template change or drift).
    Update,
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

/// Observed objects sorted by role.
struct View<'a> {
    parent: &'a Json,
    /// This parent's children (by ruleop's labels), by child name.
    children: BTreeMap<&'a str, Vec<&'a Json>>,
    /// Related objects by related name.
    related: BTreeMap<String, Vec<&'a Json>>,
}

impl<'a> View<'a> {
    fn new(rule: &CompiledRule, input: &Input<'a>) -> Result<Self, Failure> {
        let parent_uid = meta::uid(input.parent);
        let mut children: BTreeMap<&str, Vec<&Json>> = BTreeMap::new();
        for obj in input.observed {
            if meta::label(obj, meta::OWNER_LABEL) == Some(parent_uid)
                && meta::label(obj, meta::RULE_LABEL) == Some(rule.name.as_str())
            {
                let child = meta::label(obj, meta::CHILD_LABEL).unwrap_or_default();
                children.entry(child).or_default().push(obj);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|o| (scale::ordinal_of(o).unwrap_or(0), meta::name(o)));
        }
        let mut related = BTreeMap::new();
        let selectors = related_selectors(rule, input.parent, input.now)?;
        for (r, selector) in rule.spec.related.iter().zip(&selectors) {
            let (group, _) = crate::rule::split_api_version(&r.api_version);
            let mut matching: Vec<&Json> = input
                .observed
                .iter()
                .filter(|o| {
                    meta::kind(o) == r.kind
                        && meta::group(o) == group
                        && (rule.spec.parent.scope == Scope::Cluster
                            || meta::namespace(o) == meta::namespace(input.parent))
                        && selector
                            .iter()
                            .all(|(k, v)| meta::label(o, k) == Some(v.as_str()))
                })
                .collect();
            matching.sort_by_key(|o| meta::name(o));
            related.insert(r.name.clone(), matching);
        }
        Ok(Self {
            parent: input.parent,
            children,
            related,
        })
    }

    fn observed_children(&self, name: &str) -> &[&'a Json] {
        self.children
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// `{parent, children, related}`: the JSONPath document and template context.
    fn document(&self, rule: &CompiledRule) -> Json {
        let mut children = Map::new();
        for child in &rule.spec.children {
            let observed = self.observed_children(&child.name);
            let value = if child.replicas.is_some() {
                Json::Array(observed.iter().map(|o| (*o).clone()).collect())
            } else {
                observed.first().map(|o| (*o).clone()).unwrap_or(Json::Null)
            };
            if !value.is_null() {
                children.insert(child.name.clone(), value);
            }
        }
        if let Some(fin) = &rule.spec.finalizer {
            for step in &fin.cleanup {
                if let Some(o) = self.observed_children(&step.name).first() {
                    children.insert(step.name.clone(), (*o).clone());
                }
            }
        }
        let related: Map<String, Json> = self
            .related
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Json::Array(v.iter().map(|o| (*o).clone()).collect()),
                )
            })
            .collect();
        json!({"parent": self.parent, "children": children, "related": related})
    }
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
    for (i, child) in rule.spec.children.iter().enumerate() {
        match plan_child(rule, &input, &view, &ctx, i, child, &mut plan, &mut waiting) {
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
            if !desired
                && !deleting
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
            Action::Create => plan.events.push(normal("Created", format!("created {key}"))),
            Action::Update => plan.events.push(normal("Updated", format!("updated {key} to match the rule"))),
            Action::Conflict => plan.events.push(PlanEvent {
                type_: EventType::Warning,
                reason: reason::CONFLICT.into(),
                message: format!("{key} exists and is not owned by this {}; ruleop will not adopt or overwrite it", meta::kind(parent)),
            }),
            Action::UpToDate => {}
        }
    }
    for d in &plan.delete {
        plan.events.push(normal(
            "Deleted",
            format!("deleted {} ({})", d.key, d.reason),
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

/// Renders child `child` (all replicas of it) into `plan`.
#[allow(clippy::too_many_arguments)]
fn plan_child(
    rule: &CompiledRule,
    input: &Input<'_>,
    view: &View<'_>,
    ctx: &Value,
    index: usize,
    child: &Child,
    plan: &mut Plan,
    waiting: &mut Vec<String>,
) -> Result<(), Failure> {
    let base = format!("spec.children[{index}]");
    if let Some(_when) = &child.when {
        let name = format!("{base}.when");
        let on = rule
            .templates
            .eval(&name, ctx)
            .map_err(|e| render_failure(rule, &name, &e))?;
        if !on.is_true() {
            return Ok(());
        }
    }
    let template = format!("{base}.template");
    let Some(replicas) = &child.replicas else {
        let desired = render_child(rule, input, &template, child, ctx, None)?;
        plan.apply.push(desired);
        return Ok(());
    };

    let count_name = format!("{base}.replicas.count");
    let count = rule
        .templates
        .eval(&count_name, ctx)
        .map_err(|e| render_failure(rule, &count_name, &e))?;
    let count = to_json(&count).as_u64().ok_or_else(|| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!(
            "{}: replica count must be a non-negative integer, got {count}",
            rule.locate(&count_name, None)
        ),
        permanent: true,
    })?;
    let prefix = match &replicas.prefix {
        Some(_) => {
            let name = format!("{base}.replicas.prefix");
            let v = rule
                .templates
                .eval(&name, ctx)
                .map_err(|e| render_failure(rule, &name, &e))?;
            to_json(&v)
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        }
        None => format!("{}-{}", meta::name(input.parent), child.name),
    };
    let ready_name = format!("{base}.ready");
    let observed: Vec<ObservedReplica> = view
        .observed_children(&child.name)
        .iter()
        .map(|o| ObservedReplica {
            object: o,
            ordinal: scale::ordinal_of(o).unwrap_or(0),
            ready: child_ready(rule, child, &ready_name, ctx, o).unwrap_or(false),
        })
        .collect();
    let step = scale::step(
        replicas.naming,
        replicas.policy,
        &prefix,
        meta::uid(input.parent),
        usize::try_from(count).unwrap_or(usize::MAX),
        &observed,
    );
    if let Some(w) = &step.waiting {
        waiting.push(format!("{}: {w}", child.name));
    } else if !step.create.is_empty() || !step.delete.is_empty() {
        waiting.push(format!("{}: scaling to {count}", child.name));
    }
    for replica in step.keep.iter().chain(&step.create) {
        let replica_ctx =
            context! { name => replica.name.clone(), index => replica.ordinal, ..ctx.clone() };
        let desired = render_child(rule, input, &template, child, &replica_ctx, Some(replica))?;
        plan.apply.push(desired);
    }
    for replica in &step.delete {
        if let Some(obj) = observed
            .iter()
            .find(|o| meta::name(o.object) == replica.name)
        {
            plan.delete.push(Deletion {
                child: child.name.clone(),
                key: ObjectKey::of(obj.object),
                uid: meta::uid(obj.object).to_string(),
                reason: format!("scaling down to {count}"),
            });
        }
    }
    Ok(())
}

fn child_ready(
    rule: &CompiledRule,
    child: &Child,
    name: &str,
    ctx: &Value,
    obj: &Json,
) -> Result<bool, Failure> {
    if child.ready.is_none() {
        return Ok(is_ready(obj));
    }
    let ctx = context! { child => from_json(obj), ..ctx.clone() };
    rule.templates
        .eval(name, &ctx)
        .map(|v| v.is_true())
        .map_err(|e| render_failure(rule, name, &e))
}

/// Renders `child` (one replica of it, when `replica` is given) and completes it.
fn render_child(
    rule: &CompiledRule,
    input: &Input<'_>,
    template: &str,
    child: &Child,
    ctx: &Value,
    replica: Option<&scale::Replica>,
) -> Result<Desired, Failure> {
    let object = rule
        .templates
        .render_object(template, ctx)
        .map_err(|e| render_failure(rule, template, &e))?;
    finish(rule, input, template, child, object, replica)
}

/// Completes a rendered object: identity checks, namespace, labels, ownership, fields left
/// to other managers, content hash, and what applying it would do.
fn finish(
    rule: &CompiledRule,
    input: &Input<'_>,
    template: &str,
    child: &Child,
    mut object: Json,
    replica: Option<&scale::Replica>,
) -> Result<Desired, Failure> {
    let parent = input.parent;
    let (child_name, api_version, kind) = (
        child.name.as_str(),
        child.api_version.as_str(),
        child.kind.as_str(),
    );
    let fail = |message: String| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!("{}: {message}", rule.locate(template, None)),
        permanent: true,
    };
    let Json::Object(map) = &mut object else {
        return Err(fail("a child must render to a mapping".into()));
    };
    for (field, expected) in [("apiVersion", api_version), ("kind", kind)] {
        match map.get(field) {
            None | Some(Json::Null) => {
                map.insert(field.into(), json!(expected));
            }
            Some(Json::String(s)) if s == expected => {}
            Some(other) => {
                return Err(fail(format!(
                    "rendered {field} {other} but the rule declares {expected:?}"
                )));
            }
        }
    }
    map.remove("status");
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| fail("metadata must be a mapping".into()))?;
    if let Some(replica) = replica {
        match metadata.get("name").and_then(Json::as_str) {
            None => {
                metadata.insert("name".into(), json!(replica.name));
            }
            Some(n) if n == replica.name => {}
            Some(n) => {
                return Err(fail(format!(
                    "a replicated child must be named {{{{ name }}}}, got {n:?}"
                )));
            }
        }
        metadata
            .entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| fail("metadata.annotations must be a mapping".into()))?
            .insert(
                meta::REPLICA_ANNOTATION.into(),
                json!(replica.ordinal.to_string()),
            );
    }
    let name = metadata
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(fail("metadata.name is missing or empty".into()));
    }
    let parent_ns = meta::namespace(parent);
    let rendered_ns = metadata
        .get("namespace")
        .and_then(Json::as_str)
        .map(str::to_string);
    match (rule.spec.parent.scope, rendered_ns) {
        (Scope::Namespaced, None) => {
            metadata.insert("namespace".into(), json!(parent_ns));
        }
        (Scope::Namespaced, Some(ns)) if ns == parent_ns => {}
        (Scope::Namespaced, Some(ns)) => {
            return Err(fail(format!(
                "{kind} {name:?} names namespace {ns:?}; children of a namespaced parent stay in its namespace ({parent_ns:?})"
            )));
        }
        (Scope::Cluster, None) => {
            return Err(fail(format!(
                "{kind} {name:?} needs metadata.namespace: its parent is cluster-scoped"
            )));
        }
        (Scope::Cluster, Some(ns)) => {
            let permitted = rule
                .spec
                .allow
                .iter()
                .any(|a| a.api_version == api_version && a.kind == kind && a.cross_namespace);
            if !permitted {
                return Err(fail(format!(
                    "{kind} {name:?} in namespace {ns:?}: spec.allow must set crossNamespace for {api_version}/{kind}"
                )));
            }
        }
    }
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| fail("metadata.labels must be a mapping".into()))?;
    labels.insert(meta::MANAGED_BY_LABEL.into(), json!(meta::MANAGED_BY));
    labels.insert(meta::RULE_LABEL.into(), json!(rule.name));
    labels.insert(meta::OWNER_LABEL.into(), json!(meta::uid(parent)));
    labels.insert(meta::CHILD_LABEL.into(), json!(child_name));
    if child.deletion_policy == DeletionPolicy::Delete {
        metadata.insert(
            "ownerReferences".into(),
            json!([meta::owner_reference(parent)]),
        );
    } else {
        metadata.remove("ownerReferences");
    }
    for field in &child.managed_elsewhere {
        remove_path(&mut object, field);
    }
    let hash = content_hash(&object);
    if let Some(annotations) = object
        .pointer_mut("/metadata")
        .and_then(Json::as_object_mut)
        .map(|m| m.entry("annotations").or_insert_with(|| json!({})))
        && let Some(a) = annotations.as_object_mut()
    {
        a.insert(meta::HASH_ANNOTATION.into(), json!(hash));
    }

    let key = ObjectKey::of(&object);
    let existing = input
        .observed
        .iter()
        .find(|o| ObjectKey::of(o).same_object(&key));
    let parent_uid = meta::uid(parent);
    let action = match existing {
        None => Action::Create,
        Some(o) => {
            let ours = meta::label(o, meta::OWNER_LABEL) == Some(parent_uid)
                && (child.deletion_policy == DeletionPolicy::Retain
                    || meta::is_owned_by(o, parent_uid));
            if !ours {
                Action::Conflict
            } else if meta::annotation(o, meta::HASH_ANNOTATION) == Some(hash.as_str())
                && meta::contains(o, &without_owner_refs(&object))
            {
                Action::UpToDate
            } else {
                Action::Update
            }
        }
    };
    Ok(Desired {
        child: child_name.to_string(),
        object,
        action,
        strategy: child.update_strategy,
    })
}

fn without_owner_refs(object: &Json) -> Json {
    let mut o = object.clone();
    if let Some(m) = o.pointer_mut("/metadata").and_then(Json::as_object_mut) {
        m.remove("ownerReferences");
    }
    o
}

/// sha256 of the manifest (first 16 hex digits).
fn content_hash(object: &Json) -> String {
    let digest = Sha256::digest(object.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Removes a dotted field path from an object.
fn remove_path(object: &mut Json, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = object;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// `Ready` and the declared conditions.
fn conditions(
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
        Condition::unmet(
            READY,
            reason::CONFLICT,
            format!(
                "not owned by this object, left untouched: {}",
                conflicts.join(", ")
            ),
        )
    } else if let Some(r) = &rule.spec.status.ready {
        evaluate(
            rule,
            "spec.status.ready",
            READY,
            r.reason.as_deref(),
            r.false_reason.as_deref(),
            r.message.is_some(),
            ctx,
        )?
    } else {
        default_ready(rule, view, ctx, plan, waiting)?
    };
    out.push(ready);
    for (i, c) in rule.spec.status.conditions.iter().enumerate() {
        out.push(evaluate(
            rule,
            &format!("spec.status.conditions[{i}]"),
            &c.type_,
            c.reason.as_deref(),
            c.false_reason.as_deref(),
            c.message.is_some(),
            ctx,
        )?);
    }
    Ok(out)
}

/// Evaluates the condition whose compiled `when`/`message` live under `base`.
fn evaluate(
    rule: &CompiledRule,
    base: &str,
    type_: &str,
    reason: Option<&str>,
    false_reason: Option<&str>,
    has_message: bool,
    ctx: &Value,
) -> Result<Condition, Failure> {
    let when = format!("{base}.when");
    let met = rule
        .templates
        .eval(&when, ctx)
        .map_err(|e| render_failure(rule, &when, &e))?
        .is_true();
    let message = if has_message {
        let name = format!("{base}.message");
        let ctx = context! { met => met, ..ctx.clone() };
        rule.templates
            .render_text(&name, &ctx)
            .map_err(|e| render_failure(rule, &name, &e))?
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
        let observed = view
            .observed_children(&d.child)
            .iter()
            .find(|o| ObjectKey::of(o).same_object(&key));
        match observed {
            None => pending.push(format!("{key} not created yet")),
            Some(o) => {
                let Some((i, child)) = rule
                    .spec
                    .children
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.name == d.child)
                else {
                    continue;
                };
                if !child_ready(rule, child, &format!("spec.children[{i}].ready"), ctx, o)? {
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

/// The deletion path: cleanup steps in order, then ordered child deletion, then the
/// finalizer is removed.
fn finalize(
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
    let Some(fin) = &rule.spec.finalizer else {
        plan.finalizer = FinalizerChange::Remove;
        return plan;
    };
    let deleting = |plan: &mut Plan, message: String, after: Duration| {
        set_status(
            input,
            plan,
            previous_fields(input),
            &[Condition::unmet(READY, reason::DELETING, message)],
        );
        plan.requeue_after = Some(after);
    };
    for (i, step) in fin.cleanup.iter().enumerate() {
        let template = format!("spec.finalizer.cleanup[{i}].template");
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
                    ready: None,
                    deletion_policy: DeletionPolicy::Delete,
                    update_strategy: UpdateStrategy::Apply,
                    managed_elsewhere: Vec::new(),
                };
                let rendered = render_child(rule, input, &template, &as_child, ctx, None);
                match rendered {
                    Ok(desired) => {
                        let key = ObjectKey::of(&desired.object);
                        plan.events.push(normal(
                            "CleanupStarted",
                            format!("cleanup step {}: created {key}", step.name),
                        ));
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
                        });
                        continue;
                    }
                }
                return plan;
            }
            Some(obj) => {
                let until = format!("spec.finalizer.cleanup[{i}].until");
                let step_ctx = context! { child => from_json(obj), ..ctx.clone() };
                let done = match rule.templates.eval(&until, &step_ctx) {
                    Ok(v) => v.is_true(),
                    Err(e) => {
                        plan.events.push(PlanEvent {
                            type_: EventType::Warning,
                            reason: reason::RENDER_FAILED.into(),
                            message: format!(
                                "cleanup step {} skipped: {}: {e}",
                                step.name,
                                rule.locate(&until, Some(&e))
                            ),
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
        for obj in objects
            .iter()
            .filter(|o| !meta::is_deleting(o) && meta::is_owned_by(o, meta::uid(input.parent)))
        {
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
