//! Rendering children: `when`, replicas, identity, namespace, ownership labels, and
//! what applying each would do (create, update, up to date, conflict).

use std::sync::Arc;

use minijinja::{Value, context};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::ownership::is_ours;
use super::view::View;
use super::{Action, Deletion, Desired, Failure, Input, Plan, reason, render_failure, uptodate};
use crate::scale::{self, ObservedReplica};
use ruleop_lang::rule::{
    Child, ChildTemplates, CompiledRule, DeletionPolicy, Rollout, Scope, UpdateStrategy,
};
use ruleop_lang::template::{ExprId, TemplateId, is_ready, shared_json, to_json};
use ruleop_schema::meta::{self, ObjectKey};

/// Renders child `child` (all replicas of it) into `plan`.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_child(
    rule: &CompiledRule,
    input: &Input<'_>,
    view: &View<'_>,
    ctx: &Value,
    (child, compiled): (&Child, &ChildTemplates),
    plan: &mut Plan,
    waiting: &mut Vec<String>,
    held: &mut Vec<ObjectKey>,
) -> Result<(), Failure> {
    if let Some(each) = &compiled.for_each {
        return super::collection::plan_collection(rule, input, ctx, child, compiled, each, plan);
    }
    if let Some(when) = compiled.when {
        let on = rule
            .templates
            .eval(when, ctx)
            .map_err(|e| render_failure(rule, when, &e))?;
        if !on.is_true() {
            return Ok(());
        }
    }
    let template = compiled.template;
    let (Some(replicas), Some(handles)) = (&child.replicas, compiled.replicas) else {
        let desired = render_child(rule, input, template, child, ctx, None)?;
        plan.apply.push(desired);
        return Ok(());
    };

    let count_name = handles.count;
    let count = rule
        .templates
        .eval(count_name, ctx)
        .map_err(|e| render_failure(rule, count_name, &e))?;
    let count = to_json(&count).as_u64().ok_or_else(|| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!(
            "{}: replica count must be a non-negative integer, got {count}",
            rule.locate_handle(count_name, None)
        ),
        permanent: true,
    })?;
    let prefix = match handles.prefix {
        Some(name) => {
            let v = rule
                .templates
                .eval(name, ctx)
                .map_err(|e| render_failure(rule, name, &e))?;
            to_json(&v)
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        }
        None => format!("{}-{}", meta::name(input.parent), child.name),
    };
    let observed: Vec<ObservedReplica> = view
        .observed_children(&child.name)
        .iter()
        .map(|o| ObservedReplica {
            object: o,
            ordinal: scale::ordinal_of(o).unwrap_or(0),
            ready: child_ready(rule, compiled.ready, ctx, o).unwrap_or(false),
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
    // Replicas waiting for their turn to go are left alone: not re-rendered, not pruned.
    held.extend(
        observed
            .iter()
            .filter(|o| step.hold.iter().any(|h| h.name == meta::name(o.object)))
            .map(|o| ObjectKey::of(o.object)),
    );
    let first = plan.apply.len();
    for replica in step.keep.iter().chain(&step.create) {
        let replica_ctx =
            context! { name => replica.name.clone(), index => replica.ordinal, ..ctx.clone() };
        let mut desired = render_child(rule, input, template, child, &replica_ctx, Some(replica))?;
        desired.bindings = Some(json!({"name": replica.name, "index": replica.ordinal}));
        plan.apply.push(desired);
    }
    if replicas.rollout == Rollout::RollingRecreate {
        let steady = step.create.is_empty() && step.delete.is_empty() && step.waiting.is_none();
        super::rollout::roll(child, &observed, steady, first, plan, waiting, held);
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

/// Whether `obj` is ready: by the child's `ready` expression, else generically.
pub(super) fn child_ready(
    rule: &CompiledRule,
    ready: Option<ExprId>,
    ctx: &Value,
    obj: &Json,
) -> Result<bool, Failure> {
    let Some(name) = ready else {
        return Ok(is_ready(obj));
    };
    let ctx = context! { child => shared_json(Arc::new(obj.clone())), ..ctx.clone() };
    rule.templates
        .eval(name, &ctx)
        .map(|v| v.is_true())
        .map_err(|e| render_failure(rule, name, &e))
}

/// Renders `child` (one replica of it, when `replica` is given) and completes it.
pub(super) fn render_child(
    rule: &CompiledRule,
    input: &Input<'_>,
    template: TemplateId,
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
pub(super) fn finish(
    rule: &CompiledRule,
    input: &Input<'_>,
    template: TemplateId,
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
        message: format!("{}: {message}", rule.locate_handle(template, None)),
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
    let child_scope = rule.kind_scope(api_version, kind);
    let parent_ns = meta::namespace(parent);
    let rendered_ns = metadata
        .get("namespace")
        .and_then(Json::as_str)
        .map(str::to_string);
    match (rule.spec.parent.scope, child_scope, rendered_ns) {
        // The API server drops a cluster-scoped object's namespace: keeping it would make
        // the rendered and the stored object two different keys.
        (_, Scope::Cluster, Some(ns)) if !ns.is_empty() => {
            return Err(fail(format!(
                "{kind} {name:?} is cluster-scoped: remove metadata.namespace ({ns:?})"
            )));
        }
        (Scope::Namespaced, Scope::Cluster, _) => {
            return Err(fail(format!(
                "{kind} {name:?} is cluster-scoped: a namespaced parent cannot own it"
            )));
        }
        (Scope::Cluster, Scope::Cluster, _) => {
            metadata.remove("namespace");
        }
        (Scope::Namespaced, Scope::Namespaced, None) => {
            metadata.insert("namespace".into(), json!(parent_ns));
        }
        (Scope::Namespaced, Scope::Namespaced, Some(ns)) if ns == parent_ns => {}
        (Scope::Namespaced, Scope::Namespaced, Some(ns)) => {
            return Err(fail(format!(
                "{kind} {name:?} names namespace {ns:?}; children of a namespaced parent stay in its namespace ({parent_ns:?})"
            )));
        }
        (Scope::Cluster, Scope::Namespaced, None) => {
            return Err(fail(format!(
                "{kind} {name:?} needs metadata.namespace: its parent is cluster-scoped"
            )));
        }
        // Which namespaces it may use depends on the other children: see check_namespaces.
        (Scope::Cluster, Scope::Namespaced, Some(_)) => {}
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
    let existing = input.observed.iter().find(|o| key.is(o));
    let parent_uid = meta::uid(parent);
    let (action, repair) = match existing {
        None => (Action::Create, None),
        Some(o) if !is_ours(o, &rule.name, parent_uid) => (Action::Conflict, None),
        Some(o) => {
            // The comparison leaves ownerReferences out: a child of ours that lost its
            // controller reference needs the apply that puts it back.
            let unowned = child.deletion_policy == DeletionPolicy::Delete
                && meta::controller_uid(o) != Some(parent_uid);
            match update_action(input, child, o, &mut object, &hash) {
                (Action::UpToDate, _) if unowned => (Action::Update, None),
                decided => decided,
            }
        }
    };
    Ok(Desired {
        child: child_name.to_string(),
        object,
        action,
        strategy: child.update_strategy,
        repair,
        handover: child.managed_elsewhere.clone(),
        uid: existing
            .filter(|_| matches!(action, Action::Update | Action::UpToDate | Action::Recreate))
            .map(|o| meta::uid(o).to_string()),
        bindings: None,
    })
}

/// What an object of ours needs: nothing when it holds the rendering (the hash annotation is
/// part of it); a recreation only when the rendering changed; otherwise an apply, with the
/// patch that puts back hand-edited keyed lists should the API server refuse it.
fn update_action(
    input: &Input<'_>,
    child: &Child,
    observed: &Json,
    object: &mut Json,
    hash: &str,
) -> (Action, Option<Json>) {
    let schema = input
        .schemas
        .and_then(|s| s.get(&child.api_version, &child.kind));
    // The comparison leaves ownerReferences out (see `finish`): taken out and put back
    // rather than comparing a copy of the object.
    let refs = object
        .get_mut("metadata")
        .and_then(Json::as_object_mut)
        .and_then(|m| m.remove("ownerReferences"));
    let comparison = uptodate::compare(observed, object, schema);
    if let (Some(refs), Some(m)) = (
        refs,
        object.get_mut("metadata").and_then(Json::as_object_mut),
    ) {
        m.insert("ownerReferences".into(), refs);
    }
    if comparison.up_to_date {
        return (Action::UpToDate, None);
    }
    let rendering_changed = meta::annotation(observed, meta::HASH_ANNOTATION) != Some(hash);
    if rendering_changed && child.update_strategy == UpdateStrategy::Recreate {
        return (Action::Recreate, None);
    }
    (
        Action::Update,
        uptodate::repair_patch(&comparison.replacements),
    )
}

/// sha256 of the manifest (first 16 hex digits).
fn content_hash(object: &Json) -> String {
    // Serialized straight into the hasher: the same bytes as `object.to_string()`.
    let mut hasher = Sha256::new();
    if serde_json::to_writer(&mut hasher, object).is_err() {
        // Writing JSON into a hasher does not fail; hash the text should it ever.
        hasher = Sha256::new();
        hasher.update(object.to_string().as_bytes());
    }
    let digest = hasher.finalize();
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

/// Whether `object` is a core `Namespace`.
pub(super) fn is_namespace(object: &Json) -> bool {
    meta::kind(object) == "Namespace" && meta::api_version(object) == "v1"
}

/// A namespaced child of a cluster-scoped parent may live in a namespace the rule makes for
/// the parent (`own_namespaces`: its `v1/Namespace` children), in the parent itself when the
/// parent is a Namespace, or anywhere when `spec.allow` sets `crossNamespace` for its kind.
pub(super) fn check_namespace(
    rule: &CompiledRule,
    parent: &Json,
    desired: &Desired,
    own_namespaces: &[&str],
) -> Result<(), Failure> {
    let object = &desired.object;
    let (api_version, kind, ns) = (
        meta::api_version(object),
        meta::kind(object),
        meta::namespace(object),
    );
    if rule.spec.parent.scope != Scope::Cluster
        || rule.kind_scope(api_version, kind) == Scope::Cluster
    {
        return Ok(());
    }
    let crossing = rule
        .spec
        .allow
        .iter()
        .any(|a| a.api_version == api_version && a.kind == kind && a.cross_namespace);
    if crossing
        || own_namespaces.contains(&ns)
        || (is_namespace(parent) && meta::name(parent) == ns)
    {
        return Ok(());
    }
    let template = rule
        .spec
        .children
        .iter()
        .position(|c| c.name == desired.child)
        .and_then(|i| rule.compiled.children.get(i))
        .map(|c| c.template)
        .or_else(|| {
            let steps = &rule.spec.finalizer.as_ref()?.cleanup;
            let i = steps.iter().position(|s| s.name == desired.child)?;
            rule.compiled.cleanup.get(i).map(|s| s.template)
        });
    let location = match template {
        Some(template) => rule.locate_handle(template, None),
        None => rule.locate("", None),
    };
    Err(Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!(
            "{}: {kind} {:?} in namespace {ns:?}: a child of a cluster-scoped parent lives in a namespace the rule creates for it (a v1/Namespace child), or anywhere only when spec.allow sets crossNamespace for {api_version}/{kind}",
            location,
            meta::name(object),
        ),
        permanent: true,
    })
}
