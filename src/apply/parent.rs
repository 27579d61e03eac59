//! Writes to the parent: ruleop's part of its status, its finalizer, a failure reported on it.

use jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value as Json, json};

use super::error::{ActError, FORBIDDEN, INVALID};
use super::outcome::Outcome;
use super::{Actor, PERMANENT_RETRY, REPORT_AFTER_FAILURES, Report, Target};
use crate::apply::ssa;
use ruleop_plan::status::{self, Condition, READY};
use ruleop_plan::{EventType, reason};
use ruleop_schema::meta::{self, ObjectKey};

/// The verb of a failed status write.
const STATUS_VERB: &str = "update status of";

impl Actor {
    /// Reports an API failure on the parent: `Ready=False` with the server's message (set
    /// in `owned`, ruleop's part of the status, as far as `shape` allows), the current
    /// `observedGeneration` and a
    /// Warning; transient failures retry with backoff (no sooner than a `Retry-After`),
    /// permanent ones wait.
    pub(super) async fn fail(
        &self,
        target: &Target<'_>,
        parent_api: &Api<DynamicObject>,
        plan: &ruleop_plan::Plan,
        error: ActError,
        mut events: Vec<ruleop_plan::PlanEvent>,
    ) -> Report {
        let (owned, shape) = (&plan.owned_status, &plan.status_shape);
        let parent = target.parent;
        // A write the rule's account may not make: its grant is most often applied a moment
        // after the rule, so it is retried with backoff (healed without another change),
        // and the message names the account the write went out as.
        let denied = (error.reason() == FORBIDDEN)
            .then_some(target.writer.account.as_ref())
            .flatten();
        let transient = error.is_transient() || denied.is_some();
        let refused = error.verb == STATUS_VERB && error.reason() == INVALID;
        let message = match denied {
            Some(account) => format!("{} (writing as {account})", error.message()),
            None => error.message(),
        };
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
            let stored = parent.get("status");
            let written = self.written_conditions(parent);
            let (condition, new_status) = if refused {
                // The status ruleop computed is what was refused (its CRD does not match the
                // rule): only `Ready` is applied, saying so, so the parent does not keep
                // showing an old `Ready=True`.
                let condition = Condition::unmet(READY, reason::STATUS_REFUSED, message.clone());
                let conditions = status::merge_conditions(
                    stored.and_then(|s| s.get("conditions")),
                    std::slice::from_ref(&condition),
                    generation,
                    Timestamp::now(),
                );
                (condition, shape.restrict(json!({"conditions": conditions})))
            } else {
                let condition = Condition::unmet(READY, error.reason(), message.clone());
                let new_status = shape.restrict(status::with_condition(
                    Some(owned),
                    stored,
                    &condition,
                    generation,
                    Timestamp::now(),
                ));
                (condition, new_status)
            };
            if status::differs(stored, &new_status)
                && let Err(e) = self.write_status(parent_api, parent, &new_status).await
            {
                // Even that refused: the Warning below and this line are all that shows it.
                tracing::warn!(kind = meta::kind(parent), namespace = meta::namespace(parent), name = meta::name(parent), error = %e, "cannot write status");
            }
            super::drop_ready(&mut events);
            // Said once, when the parent first shows it, not on every retry while it lasts.
            if !status::condition_shown(stored, &condition)
                && !status::condition_shown(written.as_ref(), &condition)
            {
                events.push(ruleop_plan::PlanEvent {
                    type_: EventType::Warning,
                    reason: condition.reason.clone(),
                    message,
                    related: None,
                });
            }
            self.publish(parent, &events).await;
        }
        Report {
            // A refused status waits for its CRD to be fixed: the controller reconciles the
            // parent when the CRD's published schema changes (within a discovery tick), so
            // this is only the fallback for a refusal from elsewhere (an admission policy).
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

    /// Applies ruleop's part of the parent's status (`new`) with server-side apply: fields
    /// ruleop applied before and left out now are removed, fields of other writers (a
    /// Namespace's `phase`) are never touched.
    pub(super) async fn write_status(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
        new: &Json,
    ) -> Result<(), ActError> {
        let body = ssa::status_of(parent, new);
        self.metrics.write("status");
        let written = self
            .apply_json(api, meta::name(parent), &body, true)
            .await
            .map_err(|e| ActError {
                verb: STATUS_VERB,
                object: ObjectKey::of(parent).to_string(),
                source: e,
            })?;
        if let Some(conditions) = new.get("conditions") {
            self.written_lock().insert(
                meta::uid(parent).to_string(),
                json!({"conditions": conditions}),
            );
        }
        // Status written by earlier versions with merge patches is still owned by ruleop's
        // Update entry: fold it in once, so fields no longer projected can be removed.
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

    /// Removes ruleop's part of `parent`'s status (its conditions and fields): an apply of
    /// an empty status drops every field ruleop's earlier applies owned, and no other.
    pub async fn clear_status(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
    ) -> Result<(), ActError> {
        self.write_status(api, parent, &json!({})).await
    }

    /// The conditions ruleop last wrote to `parent`'s status, while its cached copy does not
    /// show them yet (once it does they are forgotten).
    pub(super) fn written_conditions(&self, parent: &Json) -> Option<Json> {
        let mut written = self.written_lock();
        let uid = meta::uid(parent);
        let conditions = written.get(uid)?;
        if !status::differs(parent.get("status"), conditions) {
            written.remove(uid);
            return None;
        }
        Some(conditions.clone())
    }

    fn written_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Json>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or removes ruleop's finalizer on `parent`.
    pub async fn set_finalizer(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
        present: bool,
    ) -> Result<(), ActError> {
        self.patch_metadata(api, parent, Some(present), None).await
    }
}
