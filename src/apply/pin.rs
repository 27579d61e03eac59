//! Pinning parents to rule revisions: each parent carries the number of the revision that
//! last planned it as the label `ruleop.dev/revision`, so a restarted or new leader (and a
//! staged rollout) knows which revision each parent is on, and
//! `kubectl get KIND -l ruleop.dev/revision=N` lists them.
//!
//! The label is written only when it differs from the revision planning the parent: with the
//! finalizer when the plan adds it (one patch), else as one metadata patch of its own (a rule
//! without a finalizer, or a parent that already has it). So a revision change costs one
//! metadata write per parent, and a steady state none. It is written before the children are
//! applied: a parent never has children of a revision it is not labelled with.

use std::collections::HashMap;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value as Json, json};

use super::Actor;
use super::error::{ActError, is_not_found};
use ruleop_schema::meta::{self, ObjectKey};

impl Actor {
    /// The revision to write on `parent` now, if any: its label shows another one, it is not
    /// being deleted, and the label was not just written (a cached copy a moment behind
    /// would write it twice).
    pub(super) fn revision_to_pin(&self, parent: &Json, revision: Option<u64>) -> Option<u64> {
        let revision = revision?;
        if parent.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let shown = parent
            .pointer("/metadata/labels")
            .and_then(|l| l.get(meta::REVISION_LABEL))
            .and_then(Json::as_str)
            .and_then(|v| v.parse::<u64>().ok());
        let uid = meta::uid(parent);
        let mut pinned = self.pinned_lock();
        if shown == Some(revision) {
            pinned.remove(uid);
            return None;
        }
        if pinned.get(uid) == Some(&revision) {
            return None;
        }
        Some(revision)
    }

    /// Writes ruleop's finalizer (`finalizer`: present or not; `None` leaves it) and the
    /// revision label (`revision`) in one metadata patch.
    pub(super) async fn patch_metadata(
        &self,
        api: &Api<DynamicObject>,
        parent: &Json,
        finalizer: Option<bool>,
        revision: Option<u64>,
    ) -> Result<(), ActError> {
        let mut metadata = serde_json::Map::new();
        if let Some(present) = finalizer {
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
            metadata.insert("finalizers".into(), json!(finalizers));
            // resourceVersion makes the patch fail (409, retried) if the list changed meanwhile.
            metadata.insert(
                "resourceVersion".into(),
                parent
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Json::Null),
            );
            self.metrics.write("finalizer");
        }
        if let Some(n) = revision {
            metadata.insert(
                "labels".into(),
                json!({meta::REVISION_LABEL: n.to_string()}),
            );
            if finalizer.is_none() {
                self.metrics.write("revision-label");
            }
        }
        let patch = json!({ "metadata": metadata });
        match api
            .patch(
                meta::name(parent),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {
                if let Some(n) = revision {
                    self.pinned_lock().insert(meta::uid(parent).to_string(), n);
                }
                Ok(())
            }
            Err(e) if finalizer == Some(false) && is_not_found(&e) => Ok(()),
            Err(e) => Err(ActError {
                verb: if finalizer.is_some() {
                    "update finalizers of"
                } else {
                    "label the revision of"
                },
                object: ObjectKey::of(parent).to_string(),
                source: e,
            }),
        }
    }

    fn pinned_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pinned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
