//! Acting on a plan against the API server: server-side apply with one field manager,
//! deletions with uid preconditions (prune only after every apply succeeded), status through
//! the status subresource only when it changed, finalizer patches and Events. Writes to
//! children are in [`children`], to the parent in [`parent`], Events in [`events`] (recorded
//! with series by [`recorder`]);
//! [`error`] classifies failed API calls.

mod children;
pub mod decorate;
mod error;
mod events;
pub mod handover;
mod memo;
mod outcome;
mod parent;
mod pin;
mod recorder;
pub mod repair;
pub mod ssa;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch};
use serde_json::Value as Json;

use crate::cache::{GroupKind, KindCache};
use crate::client::identity::Writer;

use crate::telemetry::Metrics;
use children::ApplyResult;
pub use error::{ActError, THROTTLED};
use memo::AppliedMemo;
pub use outcome::Outcome;
use recorder::Recorder;
use ruleop_lang::rule::split_api_version;
use ruleop_plan::status;
use ruleop_plan::{EventType, FinalizerChange, Plan, reason};
use ruleop_schema::meta::{self, ObjectKey};

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
    /// The rule revision planning it, pinned on it as a label (`None`: revisions are off).
    pub revision: Option<u64>,
    /// The client the rule writes with: its ServiceAccount's, or the operator's.
    pub writer: &'a Writer,
}

/// After this many consecutive failures a race (404/409) is shown on the parent too; other
/// failures are shown at once, so a parent never looks ready while its writes fail.
pub const REPORT_AFTER_FAILURES: u32 = 3;

/// Which Events are recorded (`ruleop run --events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventLevel {
    /// Progress (`Created`, `Ready`, ...) and problems.
    All,
    /// Problems only (Warning Events).
    Warnings,
    /// None.
    None,
}

impl EventLevel {
    /// Whether an Event of `type_` is recorded.
    pub fn records(self, type_: EventType) -> bool {
        match self {
            EventLevel::All => true,
            EventLevel::Warnings => type_ == EventType::Warning,
            EventLevel::None => false,
        }
    }
}

/// Executes plans: every write with the rule's [`Writer`], Events as the operator (a rule's
/// account needs no Event permission, and a `Forbidden` it meets is still recorded).
pub struct Actor {
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    events: EventLevel,
    applied: AppliedMemo,
    /// The conditions ruleop last wrote to each parent's status (by uid), until the parent's
    /// cached copy shows them: a reconcile on a copy a moment behind must not announce again
    /// what the write already showed.
    written: std::sync::Mutex<HashMap<String, Json>>,
    /// The revision label ruleop last wrote on each parent (by uid), until the parent's
    /// cached copy shows it.
    pinned: std::sync::Mutex<HashMap<String, u64>>,
}

/// An `Api` for objects of `cache`'s kind in `namespace`, through `client`.
pub fn api_for(client: &Client, cache: &KindCache, namespace: &str) -> Api<DynamicObject> {
    if cache.namespaced {
        Api::namespaced_with(client.clone(), namespace, &cache.resource)
    } else {
        Api::all_with(client.clone(), &cache.resource)
    }
}

/// Drops the plan's `Ready` Event: the actor found the parent not ready after all.
fn drop_ready(events: &mut Vec<ruleop_plan::PlanEvent>) {
    events.retain(|e| {
        !(e.type_ == EventType::Normal && e.reason == reason::READY && e.related.is_none())
    });
}

fn group_kind(api_version: &str, kind: &str) -> GroupKind {
    GroupKind {
        group: split_api_version(api_version).0.to_string(),
        kind: kind.to_string(),
    }
}

impl Actor {
    /// An actor recording the Events `events` asks for as `reporter` with `client` (the
    /// operator's); writes go through each target's writer.
    pub fn new(client: Client, metrics: Arc<Metrics>, reporter: &str, events: EventLevel) -> Self {
        let recorder = Arc::new(Recorder::new(client, "ruleop", reporter));
        Self {
            metrics,
            recorder,
            events,
            applied: AppliedMemo::default(),
            written: std::sync::Mutex::default(),
            pinned: std::sync::Mutex::default(),
        }
    }

    /// Carries out `plan` for `target`.
    pub async fn execute(&self, target: &Target<'_>, plan: Plan) -> Report {
        let parent = target.parent;
        let parent_api = api_for(
            &target.writer.client,
            target.parent_kind,
            meta::namespace(parent),
        );
        let mut events = plan.events.clone();
        let written = self.written_conditions(parent);
        if let Some(f) = &plan.failure {
            // Announced by the plan because the cached parent does not show it yet, though
            // ruleop's last status write did.
            let shown = status::Condition::unmet(status::READY, &f.reason, f.message.clone());
            if status::condition_shown(written.as_ref(), &shown) {
                events.retain(|e| {
                    !(e.type_ == EventType::Warning
                        && e.related.is_none()
                        && e.reason == f.reason
                        && e.message == f.message)
                });
            }
        }

        // The revision label rides with the finalizer when it is added, else is a metadata
        // patch of its own, only when the revision changes (apply/pin.rs).
        let pin = self
            .revision_to_pin(parent, target.revision)
            .filter(|_| plan.finalizer != FinalizerChange::Remove);
        let finalizer = (plan.finalizer == FinalizerChange::Add).then_some(true);
        if (finalizer.is_some() || pin.is_some())
            && let Err(e) = self
                .patch_metadata(&parent_api, parent, finalizer, pin)
                .await
        {
            return self.fail(target, &parent_api, &plan, e, events).await;
        }

        let mut applied_all = true;
        let mut conflict = false;
        // Every child left alone for a conflict, in plan order, and whether the API server
        // revealed one the plan could not see (then `Ready` names them all, as the plan does).
        let mut conflicts: Vec<String> = Vec::new();
        let mut found = false;
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
                    conflicts.push(ObjectKey::of(&desired.object).to_string());
                }
                Ok(ApplyResult::Conflict(message)) => {
                    applied_all = false;
                    conflict = true;
                    found = true;
                    let key = ObjectKey::of(&desired.object);
                    conflicts.push(key.to_string());
                    events.retain(|e| !(e.reason == "Created" && e.related.as_ref() == Some(&key)));
                    // Said once, when it appears, not on every retry while it lasts.
                    if !status::conflict_shown(parent.get("status"), &key.to_string()) {
                        events.push(ruleop_plan::PlanEvent {
                            type_: EventType::Warning,
                            reason: reason::CONFLICT.into(),
                            message,
                            related: Some(key),
                        });
                    }
                }
                Err(e) => {
                    events.retain(|ev| ev.type_ == EventType::Warning);
                    return self.fail(target, &parent_api, &plan, e, events).await;
                }
            }
        }

        // Decorations after the children, before any pruning: a failed one stops the plan.
        if let Err(e) = self.decorate(target, &plan).await {
            events.retain(|ev| ev.type_ == EventType::Warning);
            return self.fail(target, &parent_api, &plan, e, events).await;
        }

        // Prune only after every apply succeeded.
        if applied_all {
            for deletion in &plan.delete {
                if let Err(e) = self.delete_one(target, deletion).await {
                    return self.fail(target, &parent_api, &plan, e, events).await;
                }
            }
        } else {
            events.retain(|e| e.reason != "Deleted");
        }

        let found_conflict = found.then(|| ruleop_plan::conflict_condition(&conflicts));
        let generation = parent
            .pointer("/metadata/generation")
            .and_then(Json::as_i64);
        let previous = parent.get("status");
        if found_conflict.is_some() {
            // The plan could not see the conflict: it may have found the parent ready.
            drop_ready(&mut events);
        }
        let new_status = match &found_conflict {
            Some(condition) => Some(plan.status_shape.restrict(status::with_condition(
                Some(&plan.owned_status),
                previous,
                condition,
                generation,
                Timestamp::now(),
            )))
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
            return self.fail(target, &parent_api, &plan, e, events).await;
        }
        self.publish(parent, &events).await;

        if plan.finalizer == FinalizerChange::Remove
            && let Err(e) = self.set_finalizer(&parent_api, parent, false).await
        {
            return self.fail(target, &parent_api, &plan, e, Vec::new()).await;
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

    /// Server-side apply of `body` to `name` (its `status` subresource when `status`) through
    /// `api`, the written object read as JSON: that is what ruleop reads it as, and reading
    /// a `DynamicObject` first costs serde a buffered pass over its flattened fields.
    async fn apply_json(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        body: &Json,
        status: bool,
    ) -> Result<Json, kube::Error> {
        let request = kube::core::Request::new(api.resource_url());
        let patch = Patch::Apply(body);
        let mut req = if status {
            request.patch_subresource("status", name, &ssa::params(), &patch)
        } else {
            request.patch(name, &ssa::params(), &patch)
        }
        .map_err(kube::Error::BuildRequest)?;
        req.extensions_mut().insert("patch");
        // Through `api`'s client: the rule's writer.
        api.clone().into_client().request::<Json>(req).await
    }
}
