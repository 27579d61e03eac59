//! Events on the parent, recorded in the background so they never hold up a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value as Json;

use super::Actor;
use super::recorder::Occurrence;
use ruleop_plan::PlanEvent;
use ruleop_schema::meta::{self, ObjectKey};

impl Actor {
    /// Records `events` about `parent` (any object: a `RuleRevision` too), as the Event level
    /// allows, in the background.
    pub async fn publish(&self, parent: &Json, events: &[PlanEvent]) {
        let level = self.events;
        if !events.iter().any(|e| level.records(e.type_)) {
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
        let events: Vec<Occurrence> = events
            .iter()
            .filter(|e| level.records(e.type_))
            .map(|e| Occurrence {
                type_: e.type_,
                reason: e.reason.clone(),
                note: e.message.chars().take(1000).collect(),
                // Part of the series key: one series per child, not per reason.
                related: e.related.as_ref().map(object_reference),
            })
            .collect();
        // Events are informational: recording them must not hold up the reconcile.
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for event in events {
                metrics.write("event");
                if let Err(err) = recorder.record(&event, &reference).await {
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
