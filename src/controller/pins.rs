//! Rule revisions in the controller: the revision each running rule plans with (the actor pins
//! it on each parent as the `ruleop.dev/revision` label), and what each parent showed after
//! its last reconcile, counted per revision on demand for the `RuleRevision` status.
//!
//! Counting reads the parent cache (labels are kept parsed there) and this in-memory map: no
//! API request, and nothing per reconcile but a map entry updated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};

use serde_json::Value as Json;

use super::Controller;
use super::queue::Key;
use ruleop_schema::meta;

/// What a parent showed after its last reconcile, on the revision that planned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    revision: u64,
    ready: bool,
    failing: bool,
}

/// Revision numbers of running rules and the last outcome of each parent.
#[derive(Default)]
pub(super) struct Pins {
    /// By rule name and file content hash (`LoadedRule::hash`): a reload sets the new
    /// content's number before the new rule starts, while the old one still reconciles
    /// with its own. A few entries per reload, kept for the process's life.
    current: RwLock<HashMap<(String, String), u64>>,
    seen: Mutex<HashMap<Key, Seen>>,
}

/// The parents of one revision: how many carry its label, how many of those were last seen
/// Ready, and how many last failed (a plan failure, a conflict or a refused write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Parents labelled with the revision.
    pub parents: u64,
    /// Of those, Ready after their last reconcile on it.
    pub ready: u64,
    /// Of those, failing after their last reconcile on it.
    pub failing: u64,
}

/// Whether `status` holds `Ready=True`.
pub(super) fn ready_in(status: Option<&Json>) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Json::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Json::as_str) == Some("Ready")
                    && c.get("status").and_then(Json::as_str) == Some("True")
            })
        })
}

impl Controller {
    /// Sets the revision of `rule` with file content `hash` (`LoadedRule::hash`; `None`:
    /// unknown, no label is written). Returns whether it changed; the caller reconciles the
    /// rule's parents then.
    pub fn set_revision(&self, rule: &str, hash: &str, revision: Option<u64>) -> bool {
        let mut current = self
            .pins
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (rule.to_string(), hash.to_string());
        let before = match revision {
            Some(n) => current.insert(key, n),
            None => current.remove(&key),
        };
        before != revision
    }

    /// The revision of `rule` with file content `hash`, if known.
    pub fn revision(&self, rule: &str, hash: &str) -> Option<u64> {
        self.pins
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(rule.to_string(), hash.to_string()))
            .copied()
    }

    /// Records how a parent's reconcile on `revision` ended.
    pub(super) fn note_outcome(&self, key: &Key, revision: u64, ready: bool, failing: bool) {
        let seen = Seen {
            revision,
            ready,
            failing,
        };
        let mut map = self
            .pins
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(key) != Some(&seen) {
            map.insert(key.clone(), seen);
        }
    }

    /// How a parent's last reconcile ended, if it had one.
    pub(super) fn last_outcome(&self, key: &Key) -> Option<super::staged::LastOutcome> {
        let map = self
            .pins
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|s| super::staged::LastOutcome {
            revision: s.revision,
            ready: s.ready,
            failing: s.failing,
        })
    }

    /// Forgets a parent that is gone.
    pub(super) fn forget_outcome(&self, key: &Key) {
        self.pins
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The parents of `rule` per revision, from the parent cache's labels and the last
    /// outcomes. `None` while the rule is not active or its parents' cache has not listed
    /// (a partial count would be written and then corrected).
    pub fn revision_counts(&self, rule: &str) -> Option<BTreeMap<u64, Counts>> {
        let parents = self.active_parents(rule)?;
        let seen = self
            .pins
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut counts: BTreeMap<u64, Counts> = BTreeMap::new();
        for p in parents {
            let Some(revision) = p.label(meta::REVISION_LABEL).and_then(|v| v.parse().ok()) else {
                continue;
            };
            let entry = counts.entry(revision).or_default();
            entry.parents += 1;
            let key = Key {
                rule: rule.to_string(),
                namespace: p.namespace().to_string(),
                name: p.name().to_string(),
            };
            if let Some(s) = seen.get(&key).filter(|s| s.revision == revision) {
                entry.ready += u64::from(s.ready);
                entry.failing += u64::from(s.failing);
            }
        }
        Some(counts)
    }

    /// The revisions some parent of `rule` is labelled with (never pruned). `None` while
    /// that cannot be known (see [`Controller::revision_counts`]).
    pub fn revisions_in_use(&self, rule: &str) -> Option<BTreeSet<u64>> {
        let parents = self.active_parents(rule)?;
        Some(
            parents
                .iter()
                .filter_map(|p| p.label(meta::REVISION_LABEL)?.parse().ok())
                .collect(),
        )
    }

    pub(super) fn active_parents(
        &self,
        rule: &str,
    ) -> Option<Vec<std::sync::Arc<crate::cache::Cached>>> {
        let active = self.rules_read().get(rule).cloned()?;
        let cache = self.cache(&active.parent)?;
        // The cache holds the watched namespaces only.
        cache.is_synced().then(|| cache.list(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_is_the_ready_condition() {
        assert!(ready_in(Some(
            &json!({"conditions": [{"type": "Ready", "status": "True"}]})
        )));
        assert!(!ready_in(Some(
            &json!({"conditions": [{"type": "Ready", "status": "False"}]})
        )));
        assert!(!ready_in(Some(&json!({}))));
        assert!(!ready_in(None));
    }
}
