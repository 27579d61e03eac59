//! The sync gate: a parent is reconciled only once the caches of every kind its rule reads
//! have listed, so a child that exists but is not cached yet never looks missing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::queue::Key;
use super::{ActiveRule, Controller};
use crate::cache::{GroupKind, KindCache};

/// The caches of every watched kind at one moment.
pub(super) type Snapshot = HashMap<GroupKind, Arc<KindCache>>;

/// Keys held back until their rule's caches have synced.
#[derive(Default)]
pub(super) struct Gate {
    /// Parked keys by rule name; a rule has a waiting task while its set is non-empty.
    parked: Mutex<HashMap<String, HashSet<Key>>>,
    /// Woken whenever a cache is added or replaced.
    caches_changed: Notify,
}

impl Gate {
    fn parked(&self) -> MutexGuard<'_, HashMap<String, HashSet<Key>>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the tasks waiting for a rule's caches: the set of caches changed.
    pub(super) fn caches_changed(&self) {
        self.caches_changed.notify_waiters();
    }
}

/// What a rule still waits for.
enum Pending {
    /// A kind whose watch has not been started yet.
    Missing,
    /// A cache that has not listed yet, and the token that stops it when replaced.
    Unsynced(Arc<KindCache>, CancellationToken),
}

impl Controller {
    /// The first kind `rule` reads (parent, children, cleanup steps, related) whose cache has
    /// not synced, if any.
    fn pending(&self, rule: &ActiveRule) -> Option<Pending> {
        let caches = self.caches_read();
        std::iter::once(&rule.parent)
            .chain(&rule.children)
            .chain(&rule.related)
            .find_map(|gk| match caches.get(gk) {
                None => Some(Pending::Missing),
                Some(r) if !r.cache.is_synced() => {
                    Some(Pending::Unsynced(r.cache.clone(), r.cancel.clone()))
                }
                Some(_) => None,
            })
    }

    /// The caches to reconcile `key` with, when every kind its rule reads has synced in
    /// them; otherwise `None`, and the key is parked and queued again once they have.
    pub(super) fn admit(self: &Arc<Self>, rule: &ActiveRule, key: &Key) -> Option<Snapshot> {
        let snapshot: Snapshot = self
            .caches_read()
            .iter()
            .map(|(gk, r)| (gk.clone(), r.cache.clone()))
            .collect();
        let synced = std::iter::once(&rule.parent)
            .chain(&rule.children)
            .chain(&rule.related)
            .all(|gk| snapshot.get(gk).is_some_and(|c| c.is_synced()));
        if synced {
            return Some(snapshot);
        }
        let first = {
            let mut parked = self.gate.parked();
            let set = parked.entry(key.rule.clone()).or_default();
            let first = set.is_empty();
            set.insert(key.clone());
            first
        };
        if first {
            tracing::debug!(rule = %key.rule, "caches not synced yet: reconciles wait");
            let this = self.clone();
            let name = key.rule.clone();
            tokio::spawn(async move { this.release_when_synced(&name).await });
        }
        None
    }

    /// Waits (without polling) until every cache `rule` reads has synced, then queues its
    /// parked keys. A cache replaced meanwhile (re-watched in full) is waited for anew.
    async fn release_when_synced(&self, rule: &str) {
        loop {
            // Registered before looking, so a cache added in between still wakes this.
            let changed = self.gate.caches_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // A removed rule drops its keys: activating it again queues every parent.
            let Some(active) = self.rules_read().get(rule).cloned() else {
                break;
            };
            match self.pending(&active) {
                None => break,
                Some(Pending::Missing) => {
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = &mut changed => {}
                    }
                }
                Some(Pending::Unsynced(cache, replaced)) => {
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = cache.wait_synced() => {}
                        () = replaced.cancelled() => {}
                        () = &mut changed => {}
                    }
                }
            }
        }
        let keys = self.gate.parked().remove(rule).unwrap_or_default();
        if self.rules_read().contains_key(rule) {
            for key in keys {
                self.queue.add(key);
            }
        }
    }
}
