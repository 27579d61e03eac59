//! `ruleop run`: one dynamic controller for every rule. Observe (shared per-kind watches) →
//! plan (the pure planner) → act (the apply module), per parent, from a deduplicating queue.

pub mod conflicts;
mod gate;
pub mod lookups;
pub mod queue;
pub mod related;
pub mod schemas;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Client;
use kube::core::GroupVersionKind;
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::{Actor, Target};
use crate::cache::{self, Cached, Change, GroupKind, KindCache};
use crate::meta;
use crate::plan::{self, Input};
use crate::rule::{CompiledRule, LoadedRule, Scope, split_api_version};
use crate::telemetry::{Metrics, ResultLabels, RuleLabels, RuleStateLabels};
use conflicts::{Conflicts, conflicts_of, name_holders};
use lookups::LookupIndex;
use plan::Selector;
use queue::{Key, Outcome, Queue};
use related::RelatedIndex;
use schemas::{ChildSchemas, SchemaCache};

/// How often rules whose kinds are not served yet look again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// Settings of `ruleop run`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces to act in (all when empty).
    pub namespaces: Vec<String>,
    /// Parallel reconciles.
    pub concurrency: usize,
    /// Who this replica is (Events, leases).
    pub identity: String,
}

/// A rule whose kinds are all served, with the kinds it touches.
struct ActiveRule {
    loaded: LoadedRule,
    parent: GroupKind,
    /// Child and cleanup-step kinds.
    children: Vec<GroupKind>,
    /// Related kinds, by related index.
    related: Vec<GroupKind>,
    /// Whether each related kind is namespaced (a cluster-scoped kind is selected across
    /// the cluster, even for a namespaced parent).
    related_namespaced: Vec<bool>,
    /// Looked-up kinds, by lookup index, and whether each is namespaced.
    lookups: Vec<(GroupKind, bool)>,
    /// The child kinds' schemas (for the planner's up-to-date comparison).
    schemas: ChildSchemas,
}

impl ActiveRule {
    fn rule(&self) -> &CompiledRule {
        &self.loaded.rule
    }
}

struct RunningCache {
    cache: Arc<KindCache>,
    cancel: CancellationToken,
}

/// The controller's shared state.
pub struct Controller {
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    actor: Actor,
    queue: Queue,
    caches: RwLock<HashMap<GroupKind, RunningCache>>,
    rules: RwLock<HashMap<String, Arc<ActiveRule>>>,
    waiting: Mutex<BTreeMap<String, (LoadedRule, String)>>,
    changes: mpsc::UnboundedSender<Change>,
    related: Mutex<RelatedIndex>,
    lookups: Mutex<LookupIndex>,
    schemas: SchemaCache,
    gate: gate::Gate,
    conflicts: Mutex<Conflicts>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
}

/// What discovery found for one kind.
struct Resolved {
    gk: GroupKind,
    resource: kube::api::ApiResource,
    namespaced: bool,
}

impl Controller {
    /// A controller acting through `client`. Nothing runs until [`Controller::run`].
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(client.clone(), metrics.clone(), &config.identity);
        let controller = Arc::new(Self {
            schemas: SchemaCache::new(client.clone()),
            client,
            config,
            metrics,
            actor,
            queue: Queue::new(),
            caches: RwLock::default(),
            rules: RwLock::default(),
            waiting: Mutex::default(),
            changes: tx,
            related: Mutex::default(),
            lookups: Mutex::default(),
            gate: gate::Gate::default(),
            conflicts: Mutex::default(),
            ready,
            cancel,
        });
        (controller, rx)
    }

    /// Runs until cancelled: routes watch changes, reconciles, retries discovery; on
    /// cancellation waits for in-flight reconciles to finish.
    pub async fn run(self: &Arc<Self>, mut changes: mpsc::UnboundedReceiver<Change>) {
        let router = {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    this.route(&change);
                }
            })
        };
        let mut workers = Vec::new();
        for _ in 0..self.config.concurrency.max(1) {
            let this = self.clone();
            workers.push(tokio::spawn(async move { this.work().await }));
        }
        let mut tick = tokio::time::interval(DISCOVERY_RETRY);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                _ = tick.tick() => {
                    // Discovery may hang on an unreachable API server: a stop must not wait.
                    let rediscover = async {
                        self.activate_waiting().await;
                        let rules: Vec<_> = self.rules_read().values().cloned().collect();
                        for r in rules {
                            self.schemas.retry(&r.rule().name, &r.schemas).await;
                        }
                    };
                    tokio::select! {
                        () = self.cancel.cancelled() => break,
                        () = rediscover => {}
                    }
                    self.update_gauges();
                }
            }
        }
        tracing::info!("shutting down: finishing in-flight reconciles");
        // One bound for all of them, inside the process's shutdown grace.
        let _ =
            tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(workers)).await;
        router.abort();
        for running in self.caches_read().values() {
            running.cancel.cancel();
        }
        tracing::info!("stopped");
    }

    fn caches_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupKind, RunningCache>> {
        self.caches
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rules_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ActiveRule>>> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cache(&self, gk: &GroupKind) -> Option<Arc<KindCache>> {
        self.caches_read().get(gk).map(|r| r.cache.clone())
    }

    /// Adds rules (at start or on reload). Each becomes active once its kinds are served.
    pub async fn add_rules(self: &Arc<Self>, rules: Vec<LoadedRule>) {
        {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in rules {
                waiting.insert(r.rule.name.clone(), (r, "not resolved yet".into()));
            }
        }
        self.activate_waiting().await;
        self.update_gauges();
    }

    /// Names of active rules and of rules waiting for their kinds.
    pub fn rule_states(&self) -> (Vec<String>, Vec<String>) {
        let active = self.rules_read().keys().cloned().collect();
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        (active, waiting)
    }

    async fn activate_waiting(self: &Arc<Self>) {
        let pending: Vec<LoadedRule> = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|(r, _)| r.clone())
            .collect();
        for loaded in pending {
            match self.resolve(&loaded.rule).await {
                Ok(kinds) => self.activate(loaded, kinds).await,
                Err(why) => {
                    let mut waiting = self
                        .waiting
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(entry) = waiting.get_mut(&loaded.rule.name)
                        && entry.1 != why
                    {
                        tracing::info!(rule = %loaded.rule.name, reason = %why, "rule waiting for its kinds to be served");
                        entry.1 = why;
                    }
                }
            }
        }
        let synced = self.rules_read().values().all(|r| {
            std::iter::once(&r.parent)
                .chain(&r.children)
                .chain(&r.related)
                .chain(r.lookups.iter().map(|(gk, _)| gk))
                .all(|gk| self.cache(gk).is_some_and(|c| c.is_synced()))
        });
        self.ready.store(synced, Ordering::Release);
    }

    /// Resolves every kind a rule names through discovery.
    async fn resolve(&self, rule: &CompiledRule) -> Result<Vec<(Role, Resolved)>, String> {
        let spec = &rule.spec;
        let mut wanted: Vec<(Role, &str, &str)> =
            vec![(Role::Parent, &spec.parent.api_version, &spec.parent.kind)];
        wanted.extend(
            spec.children
                .iter()
                .map(|c| (Role::Child, c.api_version.as_str(), c.kind.as_str())),
        );
        if let Some(f) = &spec.finalizer {
            wanted.extend(
                f.cleanup
                    .iter()
                    .map(|c| (Role::Child, c.api_version.as_str(), c.kind.as_str())),
            );
        }
        wanted.extend(
            spec.related
                .iter()
                .map(|r| (Role::Related, r.api_version.as_str(), r.kind.as_str())),
        );
        wanted.extend(
            spec.lookups
                .iter()
                .map(|l| (Role::Lookup, l.api_version.as_str(), l.kind.as_str())),
        );
        let mut out = Vec::new();
        for (role, api_version, kind) in wanted {
            let (group, version) = split_api_version(api_version);
            let gvk = GroupVersionKind::gvk(group, version, kind);
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok((resource, caps)) => {
                    let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
                    check_scope(rule, role, api_version, kind, namespaced)?;
                    out.push((
                        role,
                        Resolved {
                            gk: GroupKind {
                                group: group.into(),
                                kind: kind.into(),
                            },
                            resource,
                            namespaced,
                        },
                    ));
                }
                Err(e) => return Err(format!("{api_version}/{kind} is not served: {e}")),
            }
        }
        Ok(out)
    }

    async fn activate(self: &Arc<Self>, loaded: LoadedRule, kinds: Vec<(Role, Resolved)>) {
        let name = loaded.rule.name.clone();
        let mut parent = None;
        let mut children = Vec::new();
        let mut related = Vec::new();
        let mut related_namespaced = Vec::new();
        let mut lookups = Vec::new();
        for (role, r) in &kinds {
            match role {
                Role::Parent => parent = Some(r.gk.clone()),
                Role::Child => children.push(r.gk.clone()),
                Role::Related => {
                    related.push(r.gk.clone());
                    related_namespaced.push(r.namespaced);
                }
                Role::Lookup => lookups.push((r.gk.clone(), r.namespaced)),
            }
        }
        let Some(parent) = parent else { return };
        let child_kinds: Vec<_> = kinds
            .iter()
            .filter(|(role, _)| *role == Role::Child)
            .map(|(_, r)| r.resource.clone())
            .collect();
        let schemas = self.schemas.for_children(&name, child_kinds).await;
        let active = Arc::new(ActiveRule {
            loaded: loaded.clone(),
            parent,
            children,
            related,
            related_namespaced,
            lookups,
            schemas,
        });
        self.rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.clone(), active);
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
        for (_, r) in kinds {
            self.ensure_watch(r);
        }
        tracing::info!(rule = %name, file = %loaded.path.display(), hash = %loaded.hash, "rule active");
        // Parents already cached (kind shared with an earlier rule) need a first reconcile.
        self.enqueue_all(&name);
    }

    /// Reconciles every parent of a rule.
    pub fn enqueue_all(&self, rule: &str) {
        let Some(active) = self.rules_read().get(rule).cloned() else {
            return;
        };
        if let Some(cache) = self.cache(&active.parent) {
            for p in cache.list(None) {
                self.queue.add(key_for(rule, &p));
            }
        }
    }

    /// Whether some active rule creates objects of `gk`.
    fn is_child_kind(&self, gk: &GroupKind) -> bool {
        self.rules_read().values().any(|r| r.children.contains(gk))
    }

    /// Applies a reload: starts added rules, restarts changed ones (every parent reconciled
    /// with the new version), and stops removed ones, releasing their parents.
    pub async fn apply_diff(self: &Arc<Self>, diff: &crate::reload::Diff) {
        for gone in diff.removed.iter().chain(&diff.changed) {
            let name = &gone.rule.name;
            let removed = diff.removed.iter().any(|r| &r.rule.name == name);
            self.related_index().remove_rule(name);
            self.conflicts_lock().remove_rule(name);
            self.lookup_index().remove_rule(name);
            self.waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
            let active = self
                .rules
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
            if let (true, Some(active)) = (removed, active) {
                self.release(&active).await;
            }
        }
        let mut start: Vec<LoadedRule> = diff.changed.clone();
        start.extend(diff.added.iter().cloned());
        self.add_rules(start).await;
    }

    /// A removed rule lets go of its parents: ruleop's finalizer is removed so none is left
    /// stuck in deletion; children stay unless the rule asked for them to be deleted.
    async fn release(&self, rule: &ActiveRule) {
        let name = &rule.rule().name;
        let delete_children =
            rule.rule().spec.on_rule_removal == crate::rule::RemovalPolicy::DeleteChildren;
        if let Some(parents) = self.cache(&rule.parent) {
            for cached in parents.list(None) {
                let parent = cached.json();
                if !meta::has_finalizer(&parent, meta::FINALIZER) {
                    continue;
                }
                let api = self.actor.api(&parents, meta::namespace(&parent));
                match self.actor.set_finalizer(&api, &parent, false).await {
                    Ok(()) => {
                        tracing::info!(rule = %name, parent = %meta::ObjectKey::of(&parent), "finalizer removed: rule gone")
                    }
                    Err(e) => tracing::warn!(rule = %name, error = %e, "cannot remove finalizer"),
                }
            }
        }
        if delete_children {
            let caches: Vec<Arc<KindCache>> = self
                .caches_read()
                .values()
                .map(|r| r.cache.clone())
                .collect();
            for cache in caches {
                for obj in cache
                    .list(None)
                    .iter()
                    .filter(|o| o.label(meta::RULE_LABEL) == Some(name.as_str()))
                {
                    if let Err(e) = self.actor.delete_object(&cache, &obj.json()).await {
                        tracing::warn!(rule = %name, error = %e, "cannot delete child of removed rule");
                    }
                }
            }
        }
    }

    /// Whether objects of `gk` must be watched in full (some rule uses it as parent, related
    /// or looked-up kind).
    fn needs_all_objects(&self, gk: &GroupKind) -> bool {
        self.rules_read().values().any(|r| {
            &r.parent == gk || r.related.contains(gk) || r.lookups.iter().any(|(k, _)| k == gk)
        })
    }

    fn ensure_watch(self: &Arc<Self>, r: Resolved) {
        let managed_only = !self.needs_all_objects(&r.gk);
        let mut caches = self
            .caches
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = caches.get(&r.gk) {
            if !existing.cache.managed_only || managed_only {
                return;
            }
            // A kind watched for ruleop's children only is now needed in full.
            existing.cancel.cancel();
        }
        let scopes: Vec<Option<String>> = if self.config.namespaces.is_empty() || !r.namespaced {
            vec![None]
        } else {
            self.config.namespaces.iter().cloned().map(Some).collect()
        };
        let cache = Arc::new(KindCache::new(
            r.gk.clone(),
            r.resource,
            r.namespaced,
            managed_only,
            scopes.len(),
        ));
        let cancel = self.cancel.child_token();
        tracing::info!(kind = %r.gk, managed_only, "watching");
        for scope in scopes {
            tokio::spawn(cache::watch(
                self.client.clone(),
                cache.clone(),
                scope,
                self.changes.clone(),
                cancel.clone(),
            ));
        }
        caches.insert(r.gk, RunningCache { cache, cancel });
        drop(caches);
        self.gate.caches_changed();
    }

    /// Maps a watch change to the parents it concerns.
    fn route(&self, change: &Change) {
        for parent in self
            .conflicts_lock()
            .waiting_on(&change.kind, &change.object.key())
        {
            self.queue.add(parent);
        }
        let rules: Vec<Arc<ActiveRule>> = self.rules_read().values().cloned().collect();
        for rule in rules {
            let name = &rule.rule().name;
            if rule.parent == change.kind {
                self.queue.add(key_for(name, &change.object));
            }
            if rule.children.contains(&change.kind) {
                for obj in std::iter::once(&change.object).chain(change.old.iter()) {
                    let labelled = obj
                        .label(meta::OWNER_LABEL)
                        .filter(|_| obj.label(meta::RULE_LABEL) == Some(name.as_str()));
                    // A child whose labels were removed is still found by its controller.
                    for uid in labelled.into_iter().chain(obj.controller()) {
                        if let Some(parent) = self.cache(&rule.parent).and_then(|c| c.by_uid(uid)) {
                            self.queue.add(key_for(name, &parent));
                        }
                    }
                }
            }
            if rule.lookups.iter().any(|(gk, _)| gk == &change.kind) {
                let index = self.lookup_index();
                for obj in std::iter::once(&change.object).chain(change.old.iter()) {
                    let target = (
                        change.kind.clone(),
                        obj.namespace().to_string(),
                        obj.name().to_string(),
                    );
                    for (reader_rule, (namespace, parent)) in index.readers(&target) {
                        if &reader_rule == name {
                            self.queue.add(Key {
                                rule: reader_rule,
                                namespace,
                                name: parent,
                            });
                        }
                    }
                }
            }
            for (i, gk) in rule.related.iter().enumerate() {
                if gk != &change.kind {
                    continue;
                }
                let index = self.related_index();
                for obj in std::iter::once(&change.object).chain(change.old.iter()) {
                    for (namespace, parent) in index.matching(name, i, obj) {
                        self.queue.add(Key {
                            rule: name.clone(),
                            namespace,
                            name: parent,
                        });
                    }
                }
            }
        }
    }

    fn conflicts_lock(&self) -> std::sync::MutexGuard<'_, Conflicts> {
        self.conflicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup_index(&self) -> std::sync::MutexGuard<'_, LookupIndex> {
        self.lookups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn related_index(&self) -> std::sync::MutexGuard<'_, RelatedIndex> {
        self.related
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a parent's rendered related selectors for routing (none when they cannot be
    /// rendered: the plan reports that, and the parent then matches nothing).
    fn record_selectors(&self, rule: &ActiveRule, parent: cache::ObjKey, selectors: Vec<Selector>) {
        let compiled = rule.rule();
        // A cluster-scoped related kind is selected across the cluster.
        let scopes: Vec<Option<&str>> = rule
            .related_namespaced
            .iter()
            .map(|namespaced| {
                (*namespaced && compiled.spec.parent.scope == Scope::Namespaced)
                    .then_some(parent.0.as_str())
            })
            .collect();
        let scopes: Vec<Option<String>> = scopes.iter().map(|s| s.map(str::to_string)).collect();
        let anchors: Vec<Option<&str>> = compiled
            .spec
            .related
            .iter()
            .map(|r| related::anchor_key(&r.selector))
            .collect();
        self.related_index()
            .set(&compiled.name, parent, &scopes, selectors, &anchors);
    }

    async fn work(self: Arc<Self>) {
        loop {
            let next = tokio::select! {
                () = self.cancel.cancelled() => return,
                next = self.queue.next() => next,
            };
            let Some((key, waited)) = next else { return };
            self.metrics.queue_wait.observe(waited.as_secs_f64());
            self.metrics.queue_depth.set(self.queue.depth() as i64);
            let started = Instant::now();
            let (outcome, result) = match self.reconcile(&key).await {
                Some(report) => (report.outcome, Some((report.result, report.reason))),
                None => (Outcome::Ok(None), None),
            };
            if let Some((result, reason)) = result {
                let labels = RuleLabels {
                    rule: key.rule.clone(),
                };
                self.metrics
                    .duration
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .reconciles
                    .get_or_create(&ResultLabels {
                        rule: key.rule.clone(),
                        result: result.into(),
                    })
                    .inc();
                if let Some(reason) = reason {
                    self.metrics
                        .errors
                        .get_or_create(&crate::telemetry::ErrorLabels {
                            rule: key.rule.clone(),
                            reason,
                        })
                        .inc();
                }
            }
            self.queue.done(&key, outcome);
        }
    }

    /// Observe → plan → act for one parent. `None` when there is nothing to do (rule or
    /// parent gone).
    async fn reconcile(self: &Arc<Self>, key: &Key) -> Option<crate::apply::Report> {
        let rule = self.rules_read().get(&key.rule).cloned()?;
        // Planned against a cache that has not listed, existing children would look missing;
        // the snapshot keeps a cache replaced meanwhile (re-watched in full) out of this plan.
        let caches = self.admit(&rule, key)?;
        let parent_cache = caches.get(&rule.parent)?.clone();
        let Some(cached_parent) = parent_cache.get(&key.namespace, &key.name) else {
            self.queue.forget(key);
            self.related_index()
                .remove(&key.rule, &(key.namespace.clone(), key.name.clone()));
            self.conflicts_lock().set(key, Vec::new());
            self.lookup_index()
                .remove(&key.rule, &(key.namespace.clone(), key.name.clone()));
            return None;
        };
        let parent = cached_parent.json();
        let compiled = rule.rule();
        let uid = meta::uid(&parent);
        // Owned objects of every watched kind: a changed rule may have dropped a kind whose
        // old children must still be pruned.
        let mut kinds = HashMap::new();
        let mut observed: Vec<Json> = Vec::new();
        // An object is observed once, even when it is both a child and related (a rule
        // whose replicas are also selected as related objects).
        let mut seen: HashSet<String> = HashSet::new();
        for (gk, cache) in &caches {
            if cache.managed_only || rule.children.contains(gk) || self.is_child_kind(gk) {
                extend_unique(&mut observed, &mut seen, cache.owned_by(uid));
                kinds.insert(gk.clone(), cache.clone());
            }
        }
        let namespace =
            (compiled.spec.parent.scope == Scope::Namespaced).then_some(key.namespace.as_str());
        let now = Timestamp::now();
        if !rule.related.is_empty() {
            // Every parent change and every rule (re)start reconciles the parent, so the
            // routing index is kept here, in one place.
            let selectors = plan::related_selectors(compiled, &parent, now).unwrap_or_default();
            for (gk, selector) in rule.related.iter().zip(&selectors) {
                if let Some(c) = caches.get(gk) {
                    let namespace = namespace.filter(|_| c.namespaced);
                    extend_unique(&mut observed, &mut seen, c.select(namespace, selector));
                }
            }
            self.record_selectors(&rule, cached_parent.key(), selectors);
        }
        if !rule.lookups.is_empty() {
            // As for related objects: the index is kept where every parent change lands.
            let targets = plan::lookup_targets(compiled, &parent, now).unwrap_or_default();
            let mut routed = Vec::new();
            for ((gk, namespaced), target) in rule.lookups.iter().zip(&targets) {
                let ns = if *namespaced {
                    target.namespace.as_str()
                } else {
                    ""
                };
                if let Some(found) = caches.get(gk).and_then(|c| c.get(ns, &target.name)) {
                    extend_unique(&mut observed, &mut seen, vec![found]);
                }
                routed.push((gk.clone(), ns.to_string(), target.name.clone()));
            }
            self.lookup_index()
                .set(&compiled.name, cached_parent.key(), routed);
        }
        let schemas = rule.schemas.current();
        let input = Input {
            parent: &parent,
            observed: &observed,
            now,
            schemas: Some(&schemas),
        };
        let mut plan = plan::plan(compiled, input);
        // An object that already holds a name the plan creates (another rule's child, or
        // anything else a cache holds) is shown to the planner, which leaves it alone.
        let holders = name_holders(&plan, &kinds);
        if !holders.is_empty() {
            observed.extend(holders);
            let input = Input {
                parent: &parent,
                observed: &observed,
                now,
                schemas: Some(&schemas),
            };
            plan = plan::plan(compiled, input);
        }
        self.conflicts_lock().set(key, conflicts_of(&plan));
        let writes = plan
            .apply
            .iter()
            .filter(|d| d.action != plan::Action::UpToDate)
            .count()
            + plan.delete.len();
        if let Some(f) = &plan.failure {
            // Bad input or a rule that cannot render: the parent's status and a Warning Event
            // say so too; the log names the parent in separate fields for searching.
            tracing::warn!(
                rule = %key.rule,
                kind = meta::kind(&parent),
                namespace = %key.namespace,
                name = %key.name,
                reason = %f.reason,
                error = %f.message,
                "reconcile failed"
            );
        }
        if writes > 0 || plan.status.is_some() {
            tracing::info!(
                parent = %key,
                apply = writes - plan.delete.len(),
                delete = plan.delete.len(),
                status = plan.status.is_some(),
                failure = plan.failure.as_ref().map(|f| f.message.as_str()),
                "reconciling"
            );
        }
        let target = Target {
            parent: &parent,
            parent_kind: &parent_cache,
            kinds: &kinds,
            failures: self.queue.failures(key),
        };
        Some(self.actor.execute(&target, plan).await)
    }

    fn update_gauges(&self) {
        self.metrics.queue_depth.set(self.queue.depth() as i64);
        let cached: usize = self.caches_read().values().map(|r| r.cache.len()).sum();
        self.metrics.cached_objects.set(cached as i64);
        self.metrics.rules.clear();
        for r in self.rules_read().values() {
            let labels = RuleStateLabels {
                rule: r.rule().name.clone(),
                hash: r.loaded.hash.clone(),
                state: "active".into(),
            };
            self.metrics.rules.get_or_create(&labels).set(1);
        }
        for (r, _) in self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            let labels = RuleStateLabels {
                rule: r.rule.name.clone(),
                hash: r.hash.clone(),
                state: "waiting".into(),
            };
            self.metrics.rules.get_or_create(&labels).set(1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Parent,
    Child,
    Related,
    Lookup,
}

/// Whether the rule's view of a kind's scope agrees with the cluster's discovery: a
/// mismatch would make every rendered object a different key than the stored one.
fn check_scope(
    rule: &CompiledRule,
    role: Role,
    api_version: &str,
    kind: &str,
    namespaced: bool,
) -> Result<(), String> {
    let expected = match role {
        Role::Parent => rule.spec.parent.scope,
        Role::Child => rule.kind_scope(api_version, kind),
        Role::Related | Role::Lookup => return Ok(()),
    };
    let served = if namespaced {
        Scope::Namespaced
    } else {
        Scope::Cluster
    };
    if expected == served {
        return Ok(());
    }
    let fix = match role {
        Role::Parent => format!("set spec.parent.scope: {served:?}"),
        _ => format!("set scope: {served:?} in its spec.allow entry"),
    };
    Err(format!(
        "{api_version}/{kind} is {served:?}-scoped in the cluster, but the rule treats it as {expected:?}-scoped: {fix}"
    ))
}

/// Adds the objects not seen yet (by uid).
fn extend_unique(observed: &mut Vec<Json>, seen: &mut HashSet<String>, objects: Vec<Arc<Cached>>) {
    for o in objects {
        if seen.insert(o.uid().to_string()) {
            observed.push(o.json());
        }
    }
}

fn key_for(rule: &str, parent: &Cached) -> Key {
    Key {
        rule: rule.to_string(),
        namespace: parent.namespace().to_string(),
        name: parent.name().to_string(),
    }
}
