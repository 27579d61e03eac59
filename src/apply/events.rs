//! Events on the parent, recorded in the background so they never hold up a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType as KubeEventType};
use serde_json::Value as Json;

use super::Actor;
use crate::meta::{self, ObjectKey};
use crate::plan::{EventType, PlanEvent};

impl Actor {
    pub(super) async fn publish(&self, parent: &Json, events: &[PlanEvent]) {
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
