//! The simulated cluster of a test case: the parent and the observed objects, changed by
//! each step's edits and by applying each plan as the controller would.

use jiff::Timestamp;
use serde_json::{Value as Json, json};

use super::keys::{TestKey, Unresolved, resolve, shown};
use crate::{Action, FinalizerChange, Plan};
use ruleop_schema::meta::{self, ObjectKey};

/// The parent and the objects the next plan observes.
#[derive(Debug, Clone)]
pub struct World {
    /// The parent.
    pub parent: Json,
    /// Every other object.
    pub observed: Vec<Json>,
    next_uid: u64,
}

/// RFC 7386 JSON merge patch: mappings merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Json::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

impl World {
    /// A world holding `parent` and `observed`.
    pub fn new(parent: Json, observed: Vec<Json>) -> Self {
        Self {
            parent,
            observed,
            next_uid: 1,
        }
    }

    /// How tests name every observed object (`Kind/name`, with the namespace for twins).
    pub fn keys(&self) -> Vec<String> {
        let keys: Vec<TestKey<'_>> = self.observed.iter().map(TestKey::of).collect();
        shown(&keys)
    }

    /// Patches the parent; a changed spec bumps `metadata.generation` as the API server does.
    pub fn patch_parent(&mut self, patch: &Json) {
        let spec_before = self.parent.get("spec").cloned();
        merge_patch(&mut self.parent, patch);
        if self.parent.get("spec").cloned() != spec_before
            && let Some(g) = self.parent.pointer_mut("/metadata/generation")
        {
            *g = json!(g.as_i64().unwrap_or(0) + 1);
        }
    }

    /// Patches (or with `null`, removes) the observed object `Kind/name` or
    /// `Kind/namespace/name`; a readable error when it names none or several.
    pub fn patch_observed(&mut self, key: &str, patch: &Json) -> Result<(), String> {
        let keys: Vec<TestKey<'_>> = self.observed.iter().map(TestKey::of).collect();
        let i = match resolve(key, &keys) {
            Ok(i) => i,
            Err(Unresolved::Ambiguous(message)) => return Err(message),
            Err(Unresolved::Missing) => {
                return Err(format!(
                    "no observed object {key} (observed: {})",
                    shown(&keys).join(", ")
                ));
            }
        };
        if patch.is_null() {
            self.observed.remove(i);
        } else {
            merge_patch(&mut self.observed[i], patch);
        }
        Ok(())
    }

    /// Adds objects (namespaced like the parent unless they say otherwise).
    pub fn add(&mut self, objects: impl Iterator<Item = Json>) {
        for mut obj in objects {
            let ns = meta::namespace(&self.parent).to_string();
            if let Some(m) = obj.get_mut("metadata").and_then(Json::as_object_mut) {
                m.entry("namespace").or_insert_with(|| json!(ns));
            }
            self.observed.push(obj);
        }
    }

    fn position(&self, key: &ObjectKey) -> Option<usize> {
        self.observed
            .iter()
            .position(|o| ObjectKey::of(o).same_object(key))
    }

    /// Applies `plan` as the controller would on success: writes children (keeping the
    /// server-set metadata and status of existing ones), deletes (a recreated child goes
    /// now and comes back on the next plan), writes the status and the finalizer.
    pub fn apply(&mut self, plan: &Plan, now: Timestamp) {
        if plan.failure.is_none() {
            for d in &plan.apply {
                let key = ObjectKey::of(&d.object);
                match d.action {
                    Action::Create | Action::Update => {
                        let mut obj = d.object.clone();
                        match self.position(&key) {
                            Some(i) => {
                                let old = self.observed.remove(i);
                                for f in ["uid", "creationTimestamp", "resourceVersion"] {
                                    if let Some(v) = old.pointer(&format!("/metadata/{f}")) {
                                        obj["metadata"][f] = v.clone();
                                    }
                                }
                                if let Some(s) = old.get("status") {
                                    obj["status"] = s.clone();
                                }
                                self.observed.insert(i, obj);
                            }
                            None => {
                                obj["metadata"]["uid"] = json!(format!("uid-{}", self.next_uid));
                                self.next_uid += 1;
                                obj["metadata"]["creationTimestamp"] =
                                    json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
                                self.observed.push(obj);
                            }
                        }
                    }
                    Action::Recreate => {
                        if let Some(i) = self.position(&key) {
                            self.observed.remove(i);
                        }
                    }
                    Action::UpToDate | Action::Conflict => {}
                }
            }
            for d in &plan.delete {
                if let Some(i) = self.position(&d.key) {
                    self.observed.remove(i);
                }
            }
        }
        if let Some(status) = &plan.status {
            self.parent["status"] = status.clone();
        }
        if plan.finalizer == FinalizerChange::None {
            return;
        }
        let finalizers = self
            .parent
            .pointer_mut("/metadata")
            .and_then(Json::as_object_mut)
            .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
        if let Some(Json::Array(list)) = finalizers {
            match plan.finalizer {
                FinalizerChange::Add => list.push(json!(meta::FINALIZER)),
                FinalizerChange::Remove => list.retain(|f| f != meta::FINALIZER),
                FinalizerChange::None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_merges_replaces_and_removes() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [2, 3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [2, 3]}));
    }

    #[test]
    fn spec_changes_bump_the_generation() {
        let mut w = World::new(
            json!({"metadata": {"generation": 1}, "spec": {"x": 1}}),
            vec![],
        );
        w.patch_parent(&json!({"metadata": {"labels": {"a": "b"}}}));
        assert_eq!(w.parent["metadata"]["generation"], 1);
        w.patch_parent(&json!({"spec": {"x": 2}}));
        assert_eq!(w.parent["metadata"]["generation"], 2);
    }
}
