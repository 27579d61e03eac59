//! What ruleop's own last apply of each child produced, so an apply that cannot change
//! anything is not sent again.
//!
//! The planner compares the rendering with the observed object as server-side apply merges
//! (`plan::uptodate`). Some servers change an object in ways no schema describes: an
//! admission plugin that appends to an atomic list the rule sets (Pod tolerations), a
//! webhook that rewrites a field. The planner then sees a difference on every reconcile,
//! though applying again would leave the object as it is. When the object is still exactly
//! what our last apply of the same body returned (same uid, same content apart from status
//! and bookkeeping metadata), applying that body again is a no-op, and it is skipped.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use ruleop_schema::meta::{self, ObjectKey};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    uid: String,
    /// Digest of the object our apply left, without status and bookkeeping metadata (a
    /// status update by the object's own controller does not undo what the apply did).
    content: [u8; 32],
    body: [u8; 32],
}

/// The result of ruleop's last successful apply, per child.
#[derive(Debug, Default)]
pub struct AppliedMemo(Mutex<HashMap<ObjectKey, Applied>>);

fn digest(body: &Json) -> [u8; 32] {
    let mut text = String::new();
    canonical(body, &mut text);
    Sha256::digest(text.as_bytes()).into()
}

/// JSON text with mapping keys sorted, whatever order the object was read in.
fn canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The object without what changes when nothing an apply sets changed: status,
/// resourceVersion, generation and managedFields.
fn content(object: &Json) -> [u8; 32] {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(m) = o.pointer_mut("/metadata").and_then(Json::as_object_mut) {
        for k in ["resourceVersion", "generation", "managedFields"] {
            m.remove(k);
        }
        // The caches drop it (see `cache::to_cached`).
        if let Some(a) = m.get_mut("annotations").and_then(Json::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    digest(&o)
}

impl AppliedMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Applied>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `observed` is what applying `body` last produced: applying it again changes
    /// nothing.
    pub fn unchanged_since(&self, key: &ObjectKey, observed: &Json, body: &Json) -> bool {
        let Some(applied) = self.lock().get(key).cloned() else {
            return false;
        };
        applied.uid == meta::uid(observed)
            && applied.body == digest(body)
            && applied.content == content(observed)
    }

    /// Records that applying `body` produced `result` (the API server's answer).
    pub fn record(&self, key: ObjectKey, result: &Json, body: &Json) {
        if meta::uid(result).is_empty() {
            return;
        }
        self.lock().insert(
            key,
            Applied {
                uid: meta::uid(result).to_string(),
                content: content(result),
                body: digest(body),
            },
        );
    }

    /// Forgets a child (deleted).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(uid: &str, rv: &str) -> Json {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "spec": {"tolerations": [{"key": "x"}, {"key": "added-by-admission"}]}})
    }

    #[test]
    fn only_the_exact_object_our_apply_produced_is_skipped() {
        let memo = AppliedMemo::default();
        let body = json!({"spec": {"tolerations": [{"key": "x"}]}});
        let key = ObjectKey::of(&obj("u1", "5"));
        assert!(
            !memo.unchanged_since(&key, &obj("u1", "5"), &body),
            "nothing known"
        );
        memo.record(key.clone(), &obj("u1", "5"), &body);
        assert!(memo.unchanged_since(&key, &obj("u1", "5"), &body));
        let mut status_only = obj("u1", "6");
        status_only["status"] = json!({"phase": "Running"});
        assert!(
            memo.unchanged_since(&key, &status_only, &body),
            "a status update does not undo the apply"
        );
        let mut edited = obj("u1", "7");
        edited["spec"]["tolerations"] = json!([{"key": "hand-edit"}]);
        assert!(
            !memo.unchanged_since(&key, &edited, &body),
            "changed by someone since: apply again (drift)"
        );
        assert!(
            !memo.unchanged_since(&key, &obj("u2", "5"), &body),
            "another object of that name"
        );
        let other = json!({"spec": {"tolerations": [{"key": "y"}]}});
        assert!(
            !memo.unchanged_since(&key, &obj("u1", "5"), &other),
            "a new rendering is applied"
        );
        memo.forget(&key);
        assert!(!memo.unchanged_since(&key, &obj("u1", "5"), &body));
    }
}
