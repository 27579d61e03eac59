//! Acting on a plan against the API server: server-side apply with one field manager,
//! deletions with uid preconditions (prune only after every apply succeeded), status through
//! the status subresource only when it changed, finalizer patches and Events. [`error`]
//! classifies failed API calls.

mod error;
mod memo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};
use serde_json::{Value as Json, json};

use crate::cache::{GroupKind, KindCache};
use crate::controller::queue::Outcome;
use crate::meta::{self, ObjectKey};
use crate::plan::{Action, Deletion, Desired, EventType, FinalizerChange, Plan, reason};
use crate::repair;
use crate::rule::split_api_version;
use crate::ssa;
use crate::status::{self, Condition, READY};
use crate::telemetry::Metrics;
pub use error::{ActError, THROTTLED};
use error::{is_conflict, is_not_found};
use memo::AppliedMemo;

/// How long a parent waits before a retry when retrying cannot help until something changes
/// (bad input, forbidden, a name conflict); its watch events still trigger reconciles.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// How a reconcile went, for metrics and the queue.
#[derive(Debug)]
pub struct Report {
    /// What the queue does next.
    pub outcome: Outcome,
    /// `ok`, `invalid` or `error`.
    pub result: &'static str,
    /// The error reason, if any.
    pub reason: Option<String>,
}

/// Everything needed to act for one parent.
pub struct Target<'a> {
    /// The parent.
    pub parent: &'a Json,
    /// The parent's kind.
    pub parent_kind: &'a KindCache,
    /// Caches of the rule's child kinds.
    pub kinds: &'a HashMap<GroupKind, Arc<KindCache>>,
    /// Consecutive failed attempts before this one.
    pub failures: u32,
}

/// After this many consecutive failures a race (404/409) is shown on the parent too; other
/// failures are shown at once, so a parent never looks ready while its writes fail.
pub const REPORT_AFTER_FAILURES: u32 = 3;

/// Executes plans.
pub struct Actor {
    client: Client,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    applied: AppliedMemo,
}

fn api_for(client: &Client, cache: &KindCache, namespace: &str) -> Api<DynamicObject> {
    if cache.namespaced {
        Api::namespaced_with(client.clone(), namespace, &cache.resource)
    } else {
        Api::all_with(client.clone(), &cache.resource)
    }
}

fn group_kind(api_version: &str, kind: &str) -> GroupKind {
    GroupKind {
        group: split_api_version(api_version).0.to_string(),
        kind: kind.to_string(),
    }
}

impl Actor {
    /// An actor writing with `client`, recording Events as `reporter`.
    pub fn new(client: Client, metrics: Arc<Metrics>, reporter: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "ruleop".into(),
                instance: Some(reporter.to_string()),
            },
        );
        Self {
            client,
            metrics,
            recorder,
            applied: AppliedMemo::default(),
        }
    }

    /// Carries out `plan` for `target`.
    pub async fn execute(&self, target: &Target<'_>, plan: Plan) -> Report {
        let parent = target.parent;
        let parent_api = api_for(&self.client, target.parent_kind, meta::namespace(parent));
        let mut events = plan.events.clone();

        if plan.finalizer == FinalizerChange::Add
            && let Err(e) = self.set_finalizer(&parent_api, parent, true).await
        {
            return self
                .fail(target, &parent_api, &plan.owned_status, e, events)
                .await;
        }

        let mut applied_all = true;
        let mut conflict = false;
        // Conflicts the API server revealed (the plan could not see the object): added to
        // the plan's `Ready` message.
        let mut found: Vec<String> = Vec::new();
        // Namespaces found to be someone else's: nothing is applied inside them.
        let mut foreign: Vec<String> = Vec::new();
        for desired in &plan.apply {
            let result = if foreign
                .iter()
                .any(|ns| ns == meta::namespace(&desired.object))
            {
                Ok(ApplyResult::Skipped)
            } else {
                self.apply_one(target, desired).await
            };
            if matches!(result, Ok(ApplyResult::Conflict(_)))
                && meta::kind(&desired.object) == "Namespace"
            {
                foreign.push(meta::name(&desired.object).to_string());
            }
            match result {
                Ok(ApplyResult::Done) => {}
                Ok(ApplyResult::Unchanged) => {
                    let key = ObjectKey::of(&desired.object);
                    events.retain(|e| !(e.reason == "Updated" && e.related.as_ref() == Some(&key)));
                }
                Ok(ApplyResult::Skipped) => {
                    applied_all = false;
                    conflict = true;
                }
                Ok(ApplyResult::Conflict(message)) => {
                    applied_all = false;
                    conflict = true;
                    let key = ObjectKey::of(&desired.object);
                    events.retain(|e| !(e.reason == "Created" && e.related.as_ref() == Some(&key)));
                    // Said once, when it appears, not on every retry while it lasts.
                    if !status::conflict_shown(parent.get("status"), &key.to_string()) {
                        events.push(crate::plan::PlanEvent {
                            type_: EventType::Warning,
                            reason: reason::CONFLICT.into(),
                            message: message.clone(),
                            related: Some(key),
                        });
                    }
                    found.push(message);
                }
                Err(e) => {
                    events.retain(|ev| ev.type_ == EventType::Warning);
                    return self
                        .fail(target, &parent_api, &plan.owned_status, e, events)
                        .await;
                }
            }
        }

        // Prune only after every apply succeeded.
        if applied_all {
            for deletion in &plan.delete {
                if let Err(e) = self.delete_one(target, deletion).await {
                    return self
                        .fail(target, &parent_api, &plan.owned_status, e, events)
                        .await;
                }
            }
        } else {
            events.retain(|e| e.reason != "Deleted");
        }

        let found_conflict = (!found.is_empty()).then(|| {
            let planned =
                status::condition_message(Some(&plan.owned_status), READY, reason::CONFLICT);
            let message = planned
                .into_iter()
                .chain(found)
                .collect::<Vec<_>>()
                .join("; ");
            Condition::unmet(READY, reason::CONFLICT, message)
        });
        let generation = parent
            .pointer("/metadata/generation")
            .and_then(Json::as_i64);
        let previous = parent.get("status");
        let new_status = match &found_conflict {
            Some(condition) => Some(status::with_condition(
                Some(&plan.owned_status),
                condition,
                generation,
                Timestamp::now(),
            ))
            // Written when it changes the status, or when the plan's status differs only by
            // leaving out a field (a removal `differs` cannot see).
            .filter(|s| {
                status::differs(previous, s)
                    || plan
                        .status
                        .as_ref()
                        .is_some_and(|p| !status::differs(previous, p))
            }),
            None => plan.status.clone(),
        };
        if let Some(new_status) = new_status
            && let Err(e) = self.write_status(&parent_api, parent, &new_status).await
        {
            return self
                .fail(target, &parent_api, &plan.owned_status, e, events)
                .await;
        }
        self.publish(parent, &events).await;

        if plan.finalizer == FinalizerChange::Remove
            && let Err(e) = self.set_finalizer(&parent_api, parent, false).await
        {
            return self
                .fail(target, &parent_api, &plan.owned_status, e, Vec::new())
                .await;
        }
        if conflict {
            return Report {
                outcome: Outcome::Ok(Some(Duration::from_secs(60))),
                result: "invalid",
                reason: Some(reason::CONFLICT.into()),
            };
        }
        if let Some(f) = &plan.failure {
            return Report {
                outcome: Outcome::Ok(plan.requeue_after.or(Some(PERMANENT_RETRY))),
                result: "invalid",
                reason: Some(f.reason.clone()),
            };
        }
        Report {
            outcome: Outcome::Ok(plan.requeue_after),
            result: "ok",
            reason: None,
        }
    }

    /// Reports an API failure on the parent: `Ready=False` with the server's message (set
    /// in `owned`, ruleop's part of the status), the current `observedGeneration` and a
    /// Warning; transient failures retry with backoff (no sooner than a `Retry-After`),
    /// permanent ones wait.
    async fn fail(
        &self,
        target: &Target<'_>,
        parent_api: &Api<DynamicObject>,
        owned: &Json,
        error: ActError,
        mut events: Vec<crate::plan::PlanEvent>,
    ) -> Report {
        let parent = target.parent;
        let transient = error.is_transient();
        let message = error.message();
        if error.is_race() && target.failures < REPORT_AFTER_FAILURES {
            // Expected races (a cache a moment behind): worth a warning, not an error yet.
            tracing::warn!(kind = meta::kind(parent), namespace = meta::namespace(parent), name = meta::name(parent), error = %message, "reconcile failed: transient error; retrying with backoff");
        } else if !error.is_answer() {
            // No answer (timeout, reset): a status write would most likely wait just as long.
            tracing::warn!(kind = meta::kind(parent), namespace = meta::namespace(parent), name = meta::name(parent), error = %message, "reconcile failed: no answer from the API server; retrying with backoff");
        } else {
            if transient {
                tracing::warn!(kind = meta::kind(parent), namespace = meta::namespace(parent), name = meta::name(parent), reason = error.reason(), error = %message, "reconcile failed; retrying with backoff");
            } else {
                tracing::error!(kind = meta::kind(parent), namespace = meta::namespace(parent), name = meta::name(parent), reason = error.reason(), error = %message, "reconcile failed");
            }
            let generation = parent
                .pointer("/metadata/generation")
                .and_then(Json::as_i64);
            let condition = Condition::unmet(READY, error.reason(), message.clone());
            let new_status =
                status::with_condition(Some(owned), &condition, generation, Timestamp::now());
            if status::differs(parent.get("status"), &new_status)
                && let Err(e) = self.write_status(parent_api, parent, &new_status).await
            {
                tracing::warn!(error = %e, "cannot write status");
            }
            events.push(crate::plan::PlanEvent {
                type_: EventType::Warning,
                reason: error.reason().into(),
                message,
                related: None,
            });
            self.publish(parent, &events).await;
        }
        Report {
            outcome: if transient {
                error
                    .retry_after()
                    .map_or(Outcome::Retry, Outcome::RetryAfter)
            } else {
                Outcome::Ok(Some(PERMANENT_RETRY))
            },
            result: "error",
            reason: Some(error.reason().into()),
        }
    }

    async fn apply_one(
        &self,
        target: &Target<'_>,
        desired: &Desired,
    ) -> Result<ApplyResult, ActError> {
        let key = ObjectKey::of(&desired.object);
        let gk = group_kind(&key.api_version, &key.kind);
        let Some(cache) = target.kinds.get(&gk) else {
            return Ok(ApplyResult::Conflict(format!(
                "{key}: kind {gk} is not served by the cluster"
            )));
        };
        let api = api_for(&self.client, cache, &key.namespace);
        let err = |verb: &'static str, source: kube::Error| ActError {
            verb,
            object: key.to_string(),
            source,
        };
        let parent_uid = meta::uid(target.parent);
        let rule = meta::label(&desired.object, meta::RULE_LABEL).unwrap_or_default();
        let not_ours = || {
            format!(
                "{key} exists and is not owned by this {}; ruleop will not adopt or overwrite it",
                meta::kind(target.parent)
            )
        };
        let mut uid = desired.uid.clone();
        match desired.action {
            Action::UpToDate => return Ok(ApplyResult::Done),
            Action::Conflict => return Ok(ApplyResult::Skipped),
            Action::Create => {
                let mut body = desired.object.clone();
                body["metadata"]["resourceVersion"] = json!(ssa::CREATE_ONLY);
                self.metrics.write("apply");
                let created = api
                    .patch(&key.name, &ssa::params(), &Patch::Apply(&body))
                    .await;
                match created {
                    Ok(result) => {
                        // Recorded as the body an update of this object would send.
                        let result = serde_json::to_value(&result).unwrap_or(Json::Null);
                        let mut update = desired.object.clone();
                        update["metadata"]["uid"] = json!(meta::uid(&result));
                        self.applied.record(key.clone(), &result, &update);
                        return Ok(ApplyResult::Done);
                    }
                    Err(e) if is_conflict(&e) => {
                        // The name is taken: by this parent's own child (a cache that has not
                        // seen it, or cannot, having lost its labels), or by someone else's.
                        let existing = api.get_opt(&key.name).await.map_err(|e| err("get", e))?;
                        let Some(existing) = existing else {
                            return Err(err("create", e));
                        };
                        let json = serde_json::to_value(&existing).unwrap_or(Json::Null);
                        if !crate::plan::is_ours(&json, rule, parent_uid) {
                            return Ok(ApplyResult::Conflict(not_ours()));
                        }
                        uid = Some(meta::uid(&json).to_string());
                    }
                    Err(e) => return Err(err("create", e)),
                }
            }
            Action::Recreate => {
                let old = uid
                    .clone()
                    .or_else(|| cache.get(&key.namespace, &key.name).map(|o| o.uid().into()));
                if let Some(old) = old {
                    self.metrics.write("delete");
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(old),
                            resource_version: None,
                        }),
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..DeleteParams::default()
                    };
                    match api.delete(&key.name, &dp).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(err("delete", e)),
                    }
                    // The deletion's watch event brings the next reconcile, which creates it anew.
                    return Ok(ApplyResult::Done);
                }
            }
            Action::Update => {
                let mut body = desired.object.clone();
                if let Some(uid) = &uid {
                    body["metadata"]["uid"] = json!(uid);
                }
                if let Some(observed) = cache.get(&key.namespace, &key.name)
                    && self.applied.unchanged_since(&key, &observed.json(), &body)
                {
                    return Ok(ApplyResult::Unchanged);
                }
                self.hand_over(&api, &key, &desired.handover).await?
            }
        }
        // The uid makes the API server refuse the apply if another object took the name since
        // it was observed (the object is only ever this one).
        let mut body = desired.object.clone();
        if let Some(uid) = &uid {
            body["metadata"]["uid"] = json!(uid);
        }
        self.metrics.write("apply");
        match api
            .patch(&key.name, &ssa::params(), &Patch::Apply(&body))
            .await
        {
            Ok(result) => {
                let result = serde_json::to_value(&result).unwrap_or(Json::Null);
                self.applied.record(key.clone(), &result, &body);
                Ok(ApplyResult::Done)
            }
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("metadata.uid") => {
                Ok(ApplyResult::Conflict(not_ours()))
            }
            // Refused: maybe a hand-edited keyed list clashes with ours. Put it back, else
            // report the server's own reason.
            Err(e) if repair::is_invalid(&e) && desired.action == Action::Update => {
                let Some(patch) = &desired.repair else {
                    return Err(err("apply", e));
                };
                match repair::put_back(&api, &key.name, &body, patch, &self.metrics).await {
                    Ok(()) => {
                        tracing::info!(object = %key, "put back lists edited by hand");
                        Ok(ApplyResult::Done)
                    }
                    Err(why) => {
                        tracing::info!(object = %key, error = %why, "cannot put back edited lists");
                        Err(err("apply", e))
                    }
                }
            }
            Err(e) => Err(err("apply", e)),
        }
    }

    async fn delete_one(&self, target: &Target<'_>, deletion: &Deletion) -> Result<(), ActError> {
        let gk = group_kind(&deletion.key.api_version, &deletion.key.kind);
        match target.kinds.get(&gk) {
            Some(cache) => self.delete_in(cache, deletion).await,
            None => Ok(()),
        }
    }

    async fn delete_in(&self, cache: &KindCache, deletion: &Deletion) -> Result<(), ActError> {
        let api = api_for(&self.client, cache, &deletion.key.namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(deletion.uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        self.metrics.write("delete");
        self.applied.forget(&deletion.key);
        match api.delete(&deletion.key.name, &dp).await {
            Ok(_) => Ok(()),
            // Gone already, or a newer object of that name: nothing of ours to delete.
            Err(e) if is_not_found(&e) || matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                Ok(())
            }
            Err(e) => Err(ActError {
                verb: "delete",
                object: deletion.key.to_string(),
                source: e,
            }),
        }
    }

    /// Applies ruleop's part of the parent's status (`new`) with server-side apply: fields
    /// ruleop applied before and left out now are removed, fields of other writers (a
    /// Namespace's `phase`) are never touched.
    async fn write_status(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
        new: &Json,
    ) -> Result<(), ActError> {
        let body = ssa::status_of(parent, new);
        self.metrics.write("status");
        let written = api
            .patch_status(meta::name(parent), &ssa::params(), &Patch::Apply(&body))
            .await
            .map_err(|e| ActError {
                verb: "update status of",
                object: ObjectKey::of(parent).to_string(),
                source: e,
            })?;
        // Status written by earlier versions with merge patches is still owned by ruleop's
        // Update entry: fold it in once, so fields no longer projected can be removed.
        let written = serde_json::to_value(&written).unwrap_or(Json::Null);
        if let Some(patch) = ssa::fold_update_entries(&written, "status") {
            self.metrics.write("managed-fields");
            let params = PatchParams {
                field_manager: Some(meta::FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            if let Err(e) = api
                .patch(meta::name(parent), &params, &Patch::Merge(patch))
                .await
            {
                tracing::debug!(parent = %ObjectKey::of(parent), error = %e, "cannot fold status ownership; next write retries");
            }
        }
        Ok(())
    }

    /// Adds or removes ruleop's finalizer on `parent`.
    pub async fn set_finalizer(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
        present: bool,
    ) -> Result<(), ActError> {
        let mut finalizers: Vec<String> = parent
            .pointer("/metadata/finalizers")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        finalizers.retain(|f| f != meta::FINALIZER);
        if present {
            finalizers.push(meta::FINALIZER.into());
        }
        // resourceVersion makes the patch fail (409, retried) if the list changed meanwhile.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": parent.pointer("/metadata/resourceVersion")}});
        self.metrics.write("finalizer");
        match api
            .patch(
                meta::name(parent),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if !present && is_not_found(&e) => Ok(()),
            Err(e) => Err(ActError {
                verb: "update finalizers of",
                object: ObjectKey::of(parent).to_string(),
                source: e,
            }),
        }
    }

    async fn publish(&self, parent: &Json, events: &[crate::plan::PlanEvent]) {
        if events.is_empty() {
            return;
        }
        let reference = ObjectReference {
            api_version: Some(meta::api_version(parent).into()),
            kind: Some(meta::kind(parent).into()),
            name: Some(meta::name(parent).into()),
            namespace: Some(meta::namespace(parent).into()).filter(|n: &String| !n.is_empty()),
            uid: Some(meta::uid(parent).into()),
            ..ObjectReference::default()
        };
        let events: Vec<Event> = events
            .iter()
            .map(|e| Event {
                type_: if e.type_ == EventType::Warning {
                    KubeEventType::Warning
                } else {
                    KubeEventType::Normal
                },
                reason: e.reason.clone(),
                note: Some(e.message.chars().take(1000).collect()),
                action: "Reconcile".into(),
                // Part of the Recorder's series key: one series per child, not per reason.
                secondary: e.related.as_ref().map(object_reference),
            })
            .collect();
        // Events are informational: recording them must not hold up the reconcile.
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for event in events {
                metrics.write("event");
                if let Err(err) = recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %err, "cannot record event");
                }
            }
        });
    }
}

/// The reference of the object `key` names (an Event's `related` object).
fn object_reference(key: &ObjectKey) -> ObjectReference {
    ObjectReference {
        api_version: Some(key.api_version.clone()),
        kind: Some(key.kind.clone()),
        namespace: Some(key.namespace.clone()).filter(|n| !n.is_empty()),
        name: Some(key.name.clone()),
        ..ObjectReference::default()
    }
}

impl Actor {
    /// Before an update stops sending `fields` (`managedElsewhere`), gives those ruleop still
    /// owns to [`meta::HANDOVER_MANAGER`] at their live value: applying without them then
    /// releases them instead of removing them (a Deployment would fall back to 1 replica).
    async fn hand_over(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        fields: &[String],
    ) -> Result<(), ActError> {
        if fields.is_empty() {
            return Ok(());
        }
        let err = |verb: &'static str, source: kube::Error| ActError {
            verb,
            object: key.to_string(),
            source,
        };
        // The cache drops managedFields, so ownership is read from the live object.
        let Some(live) = api.get_opt(&key.name).await.map_err(|e| err("get", e))? else {
            return Ok(());
        };
        let live = serde_json::to_value(&live).unwrap_or(Json::Null);
        let owned = crate::handover::owned_by(&live, meta::FIELD_MANAGER, fields);
        let Some(config) = crate::handover::configuration(&live, &owned) else {
            return Ok(());
        };
        tracing::info!(object = %key, fields = ?owned, "handing fields over before ruleop stops setting them");
        self.metrics.write("apply");
        // Not forced: should another manager hold a field by now, nothing is overwritten.
        api.patch(
            &key.name,
            &PatchParams::apply(meta::HANDOVER_MANAGER),
            &Patch::Apply(&config),
        )
        .await
        .map_err(|e| err("hand over fields of", e))?;
        Ok(())
    }

    /// An `Api` for objects of `cache`'s kind in `namespace`.
    pub fn api(&self, cache: &KindCache, namespace: &str) -> Api<DynamicObject> {
        api_for(&self.client, cache, namespace)
    }

    /// Deletes `obj` (of `cache`'s kind) if it is still the same object.
    pub async fn delete_object(&self, cache: &KindCache, obj: &Json) -> Result<(), ActError> {
        let deletion = Deletion {
            child: String::new(),
            key: ObjectKey::of(obj),
            uid: meta::uid(obj).to_string(),
            reason: String::new(),
        };
        self.delete_in(cache, &deletion).await
    }
}

enum ApplyResult {
    /// Applied, or nothing to apply.
    Done,
    /// Not sent: the object is exactly what ruleop's last apply of this body produced.
    Unchanged,
    /// Left alone: the plan found the name taken.
    Skipped,
    /// Left alone: the API server found the name taken by an object that is not ours.
    Conflict(String),
}
