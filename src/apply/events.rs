//! Events on the parent, recorded in the background so they never hold up a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value as Json;

use super::Actor;
use super::recorder::Occurrence;
use ruleop_plan::{EventType, PlanEvent};
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
        let events = occurrences(events.iter().filter(|e| level.records(e.type_)));
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

/// The longest note an Event carries (the API server's limit is 1 kB).
const MAX_NOTE: usize = 1000;

/// The Events to record for a reconcile's `events`: the progress of several children with
/// one reason (`Created`, `Updated`, `Deleted`) is one Event naming them all, so a new
/// parent costs one Event write, not one per child; Warnings stay one per object.
fn occurrences<'a>(events: impl Iterator<Item = &'a PlanEvent>) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = Vec::new();
    // Index in `out` of the grouped occurrence of each reason, and how many it holds.
    let mut grouped: Vec<(usize, usize)> = Vec::new();
    for e in events {
        let groups = e.type_ == EventType::Normal && e.related.is_some();
        let same = grouped
            .iter_mut()
            .find(|(i, _)| groups && out[*i].reason == e.reason);
        if let Some((i, count)) = same {
            let o = &mut out[*i];
            *count += 1;
            o.related = None;
            append_note(&mut o.note, &e.message);
            continue;
        }
        if groups {
            grouped.push((out.len(), 1));
        }
        out.push(Occurrence {
            type_: e.type_,
            reason: e.reason.clone(),
            note: e.message.chars().take(MAX_NOTE).collect(),
            // Part of the series key: one series per child, not per reason.
            related: e.related.as_ref().map(object_reference),
        });
    }
    out
}

/// Adds `message` to a grouped note, or an ellipsis once it is full.
fn append_note(note: &mut String, message: &str) {
    const MORE: &str = "; ...";
    if note.ends_with(MORE) {
        return;
    }
    if note.chars().count() + 2 + message.chars().count() + MORE.len() <= MAX_NOTE {
        note.push_str("; ");
        note.push_str(message);
    } else {
        note.push_str(MORE);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(type_: EventType, reason: &str, message: &str, related: Option<&str>) -> PlanEvent {
        PlanEvent {
            type_,
            reason: reason.into(),
            message: message.into(),
            related: related.map(|name| ObjectKey {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "ns".into(),
                name: name.into(),
            }),
        }
    }

    #[test]
    fn progress_of_several_children_is_one_event_warnings_stay_apart() {
        let n = EventType::Normal;
        let w = EventType::Warning;
        let events = [
            event(n, "Created", "created ConfigMap/ns/a", Some("a")),
            event(w, "Conflict", "ConfigMap/ns/x is not ours", Some("x")),
            event(n, "Created", "created ConfigMap/ns/b", Some("b")),
            event(n, "Deleted", "deleted ConfigMap/ns/c", Some("c")),
            event(w, "Conflict", "ConfigMap/ns/y is not ours", Some("y")),
            event(n, "Ready", "ready", None),
        ];
        let out = occurrences(events.iter());
        let summary: Vec<_> = out
            .iter()
            .map(|o| (o.reason.as_str(), o.note.as_str(), o.related.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "Created",
                    "created ConfigMap/ns/a; created ConfigMap/ns/b",
                    false
                ),
                ("Conflict", "ConfigMap/ns/x is not ours", true),
                ("Deleted", "deleted ConfigMap/ns/c", true),
                ("Conflict", "ConfigMap/ns/y is not ours", true),
                ("Ready", "ready", false),
            ]
        );
    }

    #[test]
    fn a_long_group_ends_in_an_ellipsis_within_the_limit() {
        let long = "x".repeat(300);
        let events: Vec<_> = (0..10)
            .map(|i| event(EventType::Normal, "Created", &long, Some(&format!("c{i}"))))
            .collect();
        let out = occurrences(events.iter());
        assert_eq!(out.len(), 1);
        assert!(
            out[0].note.chars().count() <= MAX_NOTE,
            "{}",
            out[0].note.len()
        );
        assert!(out[0].note.ends_with("; ..."));
    }
}
