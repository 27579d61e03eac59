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
    /// The first kind `rule` reads (parent, children, cleanup steps, related, looked up) whose cache has
    /// not synced, if any.
    fn pending(&self, rule: &ActiveRule) -> Option<Pending> {
        let caches = self.caches_read();
        std::iter::once(&rule.parent)
            .chain(&rule.children)
            .chain(&rule.related)
            .chain(rule.lookups.iter().map(|(gk, _)| gk))
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
            .chain(rule.lookups.iter().map(|(gk, _)| gk))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use kube::api::ApiResource;

    use super::*;
    use crate::controller::{Config, RunningCache};
    use crate::telemetry::Metrics;
    use ruleop_lang::load::{LoadedRule, parse_rule};

    fn gk(kind: &str) -> GroupKind {
        GroupKind {
            group: "test".into(),
            kind: kind.into(),
        }
    }

    fn kind_cache(kind: &str) -> Arc<KindCache> {
        let resource = ApiResource {
            group: "test".into(),
            version: "v1".into(),
            api_version: "test/v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        Arc::new(KindCache::new(gk(kind), resource, true, false, 1))
    }

    fn controller() -> Arc<Controller> {
        // Never contacted: the gate only looks at caches and the queue.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let transport = crate::client::identity::Transport::new(&config, None).unwrap();
        let identities = crate::client::identity::Identities::new(transport, None);
        let config = Config {
            namespaces: Vec::new(),
            concurrency: 1,
            identity: "test".into(),
            events: crate::apply::EventLevel::All,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        Controller::new(identities, config, metrics, ready, CancellationToken::new()).0
    }

    fn rule(c: &Controller) -> Arc<ActiveRule> {
        let source = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\n\
                      spec: {parent: {apiVersion: test/v1, kind: Parent}}\n";
        let loaded = LoadedRule {
            path: "r.yaml".into(),
            hash: "h".into(),
            rule: Arc::new(parse_rule("r.yaml".as_ref(), source).unwrap()),
        };
        let active = Arc::new(ActiveRule {
            reads: loaded.rule.reads(),
            loaded,
            parent: gk("Parent"),
            children: vec![gk("Child")],
            related: vec![gk("Related")],
            related_namespaced: vec![true],
            lookups: Vec::new(),
            decorated: Vec::new(),
            schemas: super::super::schemas::ChildSchemas::none(),
            memo: Default::default(),
            writer: c.identities.writer(None).unwrap(),
        });
        c.rules.write().unwrap().insert("r".into(), active.clone());
        active
    }

    fn key(name: &str) -> Key {
        Key {
            rule: "r".into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    /// Puts `cache` in place of the kind's current one (cancelling it), as a re-watch does.
    fn install(c: &Controller, cache: &Arc<KindCache>) {
        let previous = c.caches.write().unwrap().insert(
            cache.kind.clone(),
            RunningCache {
                cache: cache.clone(),
                cancel: CancellationToken::new(),
            },
        );
        if let Some(p) = previous {
            p.cancel.cancel();
        }
        c.gate.caches_changed();
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn parked_keys_wait_for_every_cache_the_rule_reads_and_none_is_lost() {
        let c = controller();
        let rule = rule(&c);
        // No watch started yet, then caches that have not listed.
        assert!(c.admit(&rule, &key("a")).is_none());
        let parent = kind_cache("Parent");
        let child = kind_cache("Child");
        let related = kind_cache("Related");
        for cache in [&parent, &child, &related] {
            install(&c, cache);
        }
        assert!(c.admit(&rule, &key("b")).is_none());
        assert!(c.admit(&rule, &key("a")).is_none());
        parent.mark_synced();
        related.mark_synced();
        settle().await;
        assert_eq!(c.queue.depth(), 0, "the child cache has not listed");

        // The child kind is re-watched in full: the old cache finishing its list no longer
        // counts, the new one must list first.
        let rewatched = kind_cache("Child");
        install(&c, &rewatched);
        child.mark_synced();
        settle().await;
        assert_eq!(c.queue.depth(), 0, "the re-watched cache has not listed");
        assert!(c.admit(&rule, &key("c")).is_none());

        rewatched.mark_synced();
        let mut released = Vec::new();
        for _ in 0..3 {
            let next = tokio::time::timeout(Duration::from_secs(5), c.queue.next()).await;
            released.push(next.unwrap().unwrap().0.name);
        }
        released.sort();
        assert_eq!(released, ["a", "b", "c"], "every parked key, once");
        settle().await;
        assert_eq!(c.queue.depth(), 0);
        let snapshot = c.admit(&rule, &key("a")).expect("synced");
        assert!(Arc::ptr_eq(&snapshot[&gk("Child")], &rewatched));
    }

    #[tokio::test]
    async fn keys_of_a_removed_rule_are_dropped() {
        let c = controller();
        let rule = rule(&c);
        let parent = kind_cache("Parent");
        install(&c, &parent);
        assert!(c.admit(&rule, &key("a")).is_none());
        c.rules.write().unwrap().remove("r");
        // Wakes the waiting task, which finds the rule gone.
        c.gate.caches_changed();
        settle().await;
        assert!(c.gate.parked().is_empty());
        assert_eq!(c.queue.depth(), 0);
    }
}
