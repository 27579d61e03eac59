//! `ruleop run`: one dynamic controller for every rule. Observe (shared per-kind watches) →
//! plan (the pure planner) → act (the apply module), per parent, from a deduplicating queue.

mod gate;
pub mod memo;
pub mod observe;
pub mod openapi_fetch;
mod pins;
pub mod queue;
mod reconcile;
pub mod routes;
mod rules;
pub mod schemas;
mod select;
pub mod staged;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::Actor;
use crate::cache::{self, Cached, Change, GroupKind, KindCache};
use crate::client::identity::{Identities, Writer};
use crate::telemetry::{Metrics, RuleStateLabels};
pub use pins::Counts;
use plan::Selector;
use queue::{Key, Queue};
use routes::Routes;
use ruleop_lang::load::LoadedRule;
use ruleop_lang::rule::{CompiledRule, Scope};
use ruleop_plan as plan;
use ruleop_schema::meta;
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
    /// Which Events are recorded.
    pub events: crate::apply::EventLevel,
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
    /// Decorated kinds, by decoration index, and whether each is namespaced.
    decorated: Vec<(GroupKind, bool)>,
    /// Which related and looked-up objects the rule reads beyond their metadata.
    reads: ruleop_lang::rule::Reads,
    /// The child kinds' schemas (for the planner's up-to-date comparison).
    schemas: ChildSchemas,
    /// Converged plans of this rule by their inputs (a reloaded rule starts empty).
    memo: memo::PlanMemo,
    /// The client its writes go through (its ServiceAccount's, or the operator's).
    writer: Arc<Writer>,
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
    /// The write clients of the rules' accounts.
    identities: Identities,
    config: Config,
    metrics: Arc<Metrics>,
    actor: Actor,
    queue: Queue,
    caches: RwLock<HashMap<GroupKind, RunningCache>>,
    rules: RwLock<HashMap<String, Arc<ActiveRule>>>,
    waiting: Mutex<BTreeMap<String, (LoadedRule, String)>>,
    changes: mpsc::UnboundedSender<Change>,
    routes: Mutex<Routes>,
    schemas: SchemaCache,
    gate: gate::Gate,
    /// Rule revisions: the one each rule plans with, parents' last outcomes.
    pins: pins::Pins,
    /// Rollouts in progress of `Staged` rules (empty for `Immediate` ones).
    staged: RwLock<staged::Views>,
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
    /// A controller reading through the operator's client of `identities` and writing
    /// through each rule's. Nothing runs until [`Controller::run`].
    pub fn new(
        identities: Identities,
        config: Config,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = identities.operator().clone();
        let actor = Actor::new(
            client.clone(),
            metrics.clone(),
            &config.identity,
            config.events,
        );
        let controller = Arc::new(Self {
            schemas: SchemaCache::new(client.clone()),
            client,
            identities,
            config,
            metrics,
            actor,
            queue: Queue::new(),
            caches: RwLock::default(),
            rules: RwLock::default(),
            waiting: Mutex::default(),
            changes: tx,
            routes: Mutex::default(),
            gate: gate::Gate::default(),
            pins: pins::Pins::default(),
            staged: RwLock::default(),
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
                        self.refresh_schemas().await;
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

    /// Looks again for child schemas still missing, and reads again the schemas whose
    /// document changed (a CRD edited): the rule's parents are then reconciled, so a status
    /// refused by the old CRD, or a condition it did not allow, is written within a tick.
    ///
    /// Changes are found by reading the OpenAPI v3 index (a hash per group-version) each
    /// discovery tick rather than by watching CustomResourceDefinitions: a watch would hold
    /// every CRD of the cluster in memory (their schemas are large), need RBAC to list them,
    /// miss aggregated APIs, and still have to wait for the document to be published; the
    /// index is one small read per tick, none while no rule is active, and never a write.
    async fn refresh_schemas(&self) {
        let changes = match self.schemas.changed().await {
            Ok(changes) => Some(changes),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the OpenAPI index; next tick tries again");
                None
            }
        };
        // Listed after the index is read: a rule activated meanwhile with an old document
        // has it found changed on the next tick.
        let rules: Vec<_> = self.rules_read().values().cloned().collect();
        for r in rules {
            let name = &r.rule().name;
            // A schema found late is used from the parents' next reconcile (they were planned
            // a moment before it was published, not against an older one).
            self.schemas.retry(name, &r.schemas).await;
            if let Some(changes) = changes.as_ref().filter(|c| !c.is_empty())
                && self.schemas.refresh(name, &r.schemas, changes).await
            {
                tracing::info!(rule = %name, "a schema of the rule's kinds changed: reconciling its parents");
                self.enqueue_all(name);
            }
        }
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

    /// Whether objects of `gk` must be watched in full (some rule uses it as parent, related
    /// or looked-up kind).
    fn needs_all_objects(&self, gk: &GroupKind) -> bool {
        self.rules_read().values().any(|r| {
            &r.parent == gk
                || r.related.contains(gk)
                || r.lookups.iter().any(|(k, _)| k == gk)
                || r.decorated.iter().any(|(k, _)| k == gk)
        })
    }

    /// Whether some rule reads more than the metadata of objects of `gk`: it is a parent or
    /// child kind, or a related or looked-up kind whose objects a rule reads further.
    fn needs_bodies(&self, gk: &GroupKind) -> bool {
        self.rules_read().values().any(|r| {
            let related = r.related.iter().zip(&r.reads.related);
            let lookups = r.lookups.iter().map(|(k, _)| k).zip(&r.reads.lookups);
            &r.parent == gk
                || r.children.contains(gk)
                || r.decorated.iter().any(|(k, _)| k == gk)
                || related.chain(lookups).any(|(k, whole)| k == gk && *whole)
        })
    }

    fn ensure_watch(self: &Arc<Self>, r: Resolved) {
        let managed_only = !self.needs_all_objects(&r.gk);
        let metadata_only = !managed_only && !self.needs_bodies(&r.gk);
        let selector = self.watch_selector(&r.gk);
        let mut caches = self
            .caches
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = caches.get(&r.gk) {
            let all_objects = !existing.cache.managed_only || managed_only;
            let bodies = !existing.cache.metadata_only || metadata_only;
            if all_objects && bodies && existing.cache.label_selector == selector {
                return;
            }
            // A kind watched for ruleop's children only, or for metadata only, is now needed
            // in full.
            existing.cancel.cancel();
        }
        let scopes: Vec<Option<String>> = if self.config.namespaces.is_empty() || !r.namespaced {
            vec![None]
        } else {
            self.config.namespaces.iter().cloned().map(Some).collect()
        };
        let cache = Arc::new(
            KindCache::new(
                r.gk.clone(),
                r.resource,
                r.namespaced,
                managed_only,
                scopes.len(),
            )
            .with_metadata_only(metadata_only)
            .with_label_selector(selector.clone()),
        );
        let cancel = self.cancel.child_token();
        tracing::info!(kind = %r.gk, managed_only, metadata_only, selector = selector.as_deref().unwrap_or(""), "watching");
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
        let rules: Vec<Arc<ActiveRule>> = self.rules_read().values().cloned().collect();
        // Parents that look the object up by name, or wait for the name it holds (a child's):
        // only objects of a looked-up or child kind can be either, so the busiest events (a
        // related kind's, such as Pods) skip the index.
        let named = rules.iter().any(|r| {
            r.children.contains(&change.kind)
                || r.lookups.iter().any(|(gk, _)| gk == &change.kind)
                || r.decorated.iter().any(|(gk, _)| gk == &change.kind)
        });
        let objects = std::iter::once(&change.object).chain(change.old.iter());
        for obj in objects.filter(|_| named) {
            for (rule, (namespace, name)) in self.routes().by_name(&change.kind, obj) {
                self.queue.add(Key {
                    rule,
                    namespace,
                    name,
                });
            }
        }
        for rule in rules {
            let name = &rule.rule().name;
            if rule.parent == change.kind && select::routes_parent(&rule, change) {
                self.queue.add(key_for(name, &change.object));
            }
            if rule.children.contains(&change.kind) {
                for obj in std::iter::once(&change.object).chain(change.old.iter()) {
                    let labelled = obj
                        .label(meta::OWNER_LABEL)
                        .filter(|_| obj.label(meta::RULE_LABEL) == Some(name.as_str()));
                    // A child whose labels were removed is still found by its controller.
                    for uid in labelled.into_iter().chain(obj.controller()) {
                        if let Some(parent) = self.cache(&rule.parent).and_then(|c| c.by_uid(uid))
                            && select::governs(&rule, &parent)
                        {
                            self.queue.add(key_for(name, &parent));
                        }
                    }
                }
            }
            self.route_decorated(&rule, change);
            for (i, gk) in rule.related.iter().enumerate() {
                if gk != &change.kind {
                    continue;
                }
                let index = self.routes();
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

    /// Routes a change of a decorated kind: to the parents whose decorations the object
    /// carries (or carried), and through the routing index to those whose decoration
    /// selector matches it (indexed after the rule's related selectors).
    fn route_decorated(&self, rule: &ActiveRule, change: &Change) {
        let name = &rule.rule().name;
        let objects = || std::iter::once(&change.object).chain(change.old.iter());
        let mut decorated = rule.decorated.iter().map(|(gk, _)| gk);
        if !decorated.any(|gk| gk == &change.kind) {
            return;
        }
        let parents = self.cache(&rule.parent);
        for uid in objects().flat_map(|o| o.decorators()) {
            if let Some(parent) = parents.as_ref().and_then(|c| c.by_uid(uid)) {
                self.queue.add(key_for(name, &parent));
            }
        }
        let offset = rule.related.len();
        for (i, (gk, _)) in rule.decorated.iter().enumerate() {
            if gk != &change.kind {
                continue;
            }
            let index = self.routes();
            for obj in objects() {
                for (namespace, parent) in index.matching(name, offset + i, obj) {
                    self.queue.add(Key {
                        rule: name.clone(),
                        namespace,
                        name: parent,
                    });
                }
            }
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a parent's rendered related selectors for routing (none when they cannot be
    /// rendered: the plan reports that, and the parent then matches nothing).
    fn record_selectors(&self, rule: &ActiveRule, parent: cache::ObjKey, selectors: Vec<Selector>) {
        let compiled = rule.rule();
        // A cluster-scoped related kind is selected across the cluster.
        let namespaced = rule
            .related_namespaced
            .iter()
            .chain(rule.decorated.iter().map(|(_, n)| n));
        let scopes: Vec<Option<&str>> = namespaced
            .map(|namespaced| {
                (*namespaced && compiled.spec.parent.scope == Scope::Namespaced)
                    .then_some(parent.0.as_str())
            })
            .collect();
        let scopes: Vec<Option<String>> = scopes.iter().map(|s| s.map(str::to_string)).collect();
        let decorations = compiled.spec.decorations.iter();
        let anchors: Vec<Option<&str>> = compiled
            .spec
            .related
            .iter()
            .map(|r| routes::anchor_key(&r.selector))
            .chain(decorations.map(|d| d.target.selector.as_ref().and_then(routes::anchor_key)))
            .collect();
        self.routes().set_selectors(
            (compiled.name.clone(), parent),
            &scopes,
            selectors,
            &anchors,
        );
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

impl Controller {
    /// Records `events` about `object` (a `RuleRevision`) through the parents' Event recorder.
    pub async fn publish(&self, object: &serde_json::Value, events: &[plan::PlanEvent]) {
        self.actor.publish(object, events).await;
    }
}

fn key_for(rule: &str, parent: &Cached) -> Key {
    Key {
        rule: rule.to_string(),
        namespace: parent.namespace().to_string(),
        name: parent.name().to_string(),
    }
}
