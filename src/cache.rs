//! In-memory caches of watched kinds. One watch per kind (per namespace in scope), shared by
//! every rule that uses the kind; objects are kept as JSON without `managedFields` (but for
//! the names of ruleop's own entries), indexed by namespace/name, by parent uid (ruleop's
//! owner label, and the controller ownerReference) and by uid.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::meta;

/// `(namespace, name)`.
pub type ObjKey = (String, String);

/// A watched kind, identified by group and kind (the version is the preferred one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKind {
    /// API group ("" for core).
    pub group: String,
    /// Kind.
    pub kind: String,
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone)]
pub struct Change {
    /// The kind.
    pub kind: GroupKind,
    /// The object as now (or as last seen, when deleted).
    pub object: Arc<Cached>,
    /// The object before the change, if it was cached.
    pub old: Option<Arc<Cached>>,
}

/// `(namespace, label key, label value)`.
type LabelKey = (String, String, String);

/// Nesting beyond which an object is kept parsed: serde_json refuses to parse text nested
/// deeper than 128 levels, so such text could not be read back.
const MAX_TEXT_DEPTH: usize = 100;

/// A cached object: what routing and the indexes need (identity, labels), and the object
/// itself as compact JSON text. A parsed `serde_json::Value` costs about ten times its text
/// in memory, and most cached objects are only read when their parent is reconciled, so
/// they are parsed then ([`Cached::json`]).
#[derive(Debug)]
pub struct Cached {
    namespace: Box<str>,
    name: Box<str>,
    uid: Box<str>,
    /// The uid of the object's controller (ownerReference with `controller: true`).
    controller: Option<Box<str>>,
    labels: Box<[(Box<str>, Box<str>)]>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Text(Box<str>),
    Tree(Json),
}

fn depth(v: &Json) -> usize {
    match v {
        Json::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Json::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl Cached {
    /// Caches `obj`.
    pub fn new(obj: Json) -> Self {
        let labels = labels_of(&obj)
            .map(|(k, v)| (Box::from(k), Box::from(v)))
            .collect();
        let (namespace, name, uid) = (
            meta::namespace(&obj).into(),
            meta::name(&obj).into(),
            meta::uid(&obj).into(),
        );
        let controller = meta::controller_uid(&obj).map(Box::from);
        let body = match serde_json::to_string(&obj) {
            Ok(text) if depth(&obj) <= MAX_TEXT_DEPTH => Body::Text(text.into_boxed_str()),
            _ => Body::Tree(obj),
        };
        Self {
            namespace,
            name,
            uid,
            controller,
            labels,
            body,
        }
    }

    /// `metadata.namespace` (empty when cluster-scoped).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The uid of the object's controller, if it has one.
    pub fn controller(&self) -> Option<&str> {
        self.controller.as_deref()
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// The labels.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }

    /// `namespace/name`.
    pub fn key(&self) -> ObjKey {
        (self.namespace.to_string(), self.name.to_string())
    }

    /// The object.
    pub fn json(&self) -> Json {
        match &self.body {
            // The text is serde_json's own output within the depth limit, so it parses.
            Body::Text(text) => serde_json::from_str(text).unwrap_or(Json::Null),
            Body::Tree(tree) => tree.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    objects: HashMap<ObjKey, Arc<Cached>>,
    by_owner: HashMap<String, HashSet<ObjKey>>,
    /// Objects by their controller's uid: a child whose owner label was removed is found too.
    by_controller: HashMap<String, HashSet<ObjKey>>,
    by_uid: HashMap<String, ObjKey>,
    /// Objects by namespace and label, so selecting related objects does not scan the kind.
    by_label: HashMap<LabelKey, HashSet<ObjKey>>,
}

fn labels_of(obj: &Json) -> impl Iterator<Item = (&str, &str)> {
    obj.pointer("/metadata/labels")
        .and_then(Json::as_object)
        .into_iter()
        .flat_map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        })
}

impl Inner {
    fn insert(&mut self, obj: Arc<Cached>) -> Option<Arc<Cached>> {
        let key = obj.key();
        let old = self.remove(&key);
        if let Some(owner) = obj.label(meta::OWNER_LABEL) {
            self.by_owner
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
        if let Some(controller) = obj.controller() {
            self.by_controller
                .entry(controller.to_string())
                .or_default()
                .insert(key.clone());
        }
        self.by_uid.insert(obj.uid().to_string(), key.clone());
        for (k, v) in obj.labels() {
            self.by_label
                .entry((key.0.clone(), k.to_string(), v.to_string()))
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, obj);
        old
    }

    fn remove(&mut self, key: &ObjKey) -> Option<Arc<Cached>> {
        let old = self.objects.remove(key)?;
        if let Some(owner) = old.label(meta::OWNER_LABEL)
            && let Some(set) = self.by_owner.get_mut(owner)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        if let Some(controller) = old.controller()
            && let Some(set) = self.by_controller.get_mut(controller)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_controller.remove(controller);
            }
        }
        self.by_uid.remove(old.uid());
        for (k, v) in old.labels() {
            let label = (key.0.clone(), k.to_string(), v.to_string());
            if let Some(set) = self.by_label.get_mut(&label) {
                set.remove(key);
                if set.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
        Some(old)
    }
}

/// The cache of one kind.
pub struct KindCache {
    /// The kind.
    pub kind: GroupKind,
    /// How to reach it.
    pub resource: ApiResource,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether only ruleop-managed objects are watched (children-only kinds).
    pub managed_only: bool,
    inner: RwLock<Inner>,
    /// Whether every scope has listed once; watchable so reconciles can wait for it.
    synced: tokio::sync::watch::Sender<bool>,
    synced_scopes: std::sync::Mutex<usize>,
    scopes: usize,
}

impl KindCache {
    /// An empty cache.
    pub fn new(
        kind: GroupKind,
        resource: ApiResource,
        namespaced: bool,
        managed_only: bool,
        scopes: usize,
    ) -> Self {
        Self {
            kind,
            resource,
            namespaced,
            managed_only,
            inner: RwLock::default(),
            synced: tokio::sync::watch::Sender::new(false),
            synced_scopes: std::sync::Mutex::new(0),
            scopes: scopes.max(1),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether every watch of this kind has listed once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Marks the cache listed, as its watches do (for tests without an API server).
    #[cfg(test)]
    pub(crate) fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Returns once every watch of this kind has listed once.
    pub async fn wait_synced(&self) {
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = self.synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// Adds or replaces `obj` as a watch event would, for callers without an API server
    /// (the planner benchmark).
    pub fn put(&self, obj: Json) {
        self.apply(Arc::new(Cached::new(obj)));
    }

    /// The object at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Cached>> {
        self.read()
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The object with `uid`.
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Cached>> {
        let inner = self.read();
        inner
            .by_uid
            .get(uid)
            .and_then(|k| inner.objects.get(k))
            .cloned()
    }

    /// Objects labelled as rendered for the parent with `uid`, or controlled by it (the
    /// planner decides which of them are provably its children).
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<Cached>> {
        let inner = self.read();
        let labelled = inner.by_owner.get(uid).into_iter().flatten();
        let controlled = inner.by_controller.get(uid).into_iter().flatten();
        let keys: HashSet<&ObjKey> = labelled.chain(controlled).collect();
        keys.into_iter()
            .filter_map(|k| inner.objects.get(k).cloned())
            .collect()
    }

    /// Objects in `namespace` (every namespace when `None`) carrying all `selector` labels,
    /// found through the label index rather than a scan: per namespace, only the objects
    /// under the selector's rarest label are checked (`app: memcached` may cover every Pod,
    /// `memcached_cr: <name>` one parent's).
    pub fn select(
        &self,
        namespace: Option<&str>,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Arc<Cached>> {
        let inner = self.read();
        let matches = |o: &Cached| selector.iter().all(|(k, v)| o.label(k) == Some(v.as_str()));
        let Some((k, v)) = selector.iter().next() else {
            return Vec::new();
        };
        let namespaces: Vec<String> = match namespace {
            Some(ns) => vec![ns.to_string()],
            None => {
                let all: HashSet<&String> = inner
                    .by_label
                    .keys()
                    .filter(|(_, lk, lv)| lk == k && lv == v)
                    .map(|(ns, _, _)| ns)
                    .collect();
                all.into_iter().cloned().collect()
            }
        };
        let mut found = Vec::new();
        for ns in namespaces {
            let sets: Option<Vec<&HashSet<ObjKey>>> = selector
                .iter()
                .map(|(k, v)| inner.by_label.get(&(ns.clone(), k.clone(), v.clone())))
                .collect();
            // A label no object carries: nothing matches in this namespace.
            let Some(rarest) = sets.and_then(|s| s.into_iter().min_by_key(|set| set.len())) else {
                continue;
            };
            found.extend(
                rarest
                    .iter()
                    .filter_map(|key| inner.objects.get(key))
                    .filter(|o| matches(o))
                    .cloned(),
            );
        }
        found
    }

    /// Objects in `namespace` (all objects when `None`).
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<Cached>> {
        self.read()
            .objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, obj: Arc<Cached>) -> Option<Arc<Cached>> {
        self.write().insert(obj)
    }

    fn delete(&self, obj: &Cached) -> Option<Arc<Cached>> {
        self.write().remove(&obj.key())
    }

    /// Replaces the objects of one scope (a namespace, or all) after a (re)list; returns the
    /// objects that vanished.
    fn replace_scope(
        &self,
        namespace: Option<&str>,
        objects: Vec<Arc<Cached>>,
    ) -> Vec<Arc<Cached>> {
        let mut inner = self.write();
        let fresh: HashSet<ObjKey> = objects.iter().map(|o| o.key()).collect();
        let stale: Vec<ObjKey> = inner
            .objects
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns))
            .filter(|k| !fresh.contains(*k))
            .cloned()
            .collect();
        let gone = stale.iter().filter_map(|k| inner.remove(k)).collect();
        for o in objects {
            inner.insert(o);
        }
        gone
    }
}

/// Converts a watched object into the cached form.
fn to_cached(obj: DynamicObject, resource: &ApiResource) -> Arc<Cached> {
    let mut obj = obj;
    // Only whether ruleop's field manager wrote the object is kept (see plan::is_ours).
    obj.metadata.managed_fields = obj.metadata.managed_fields.map(|entries| {
        entries
            .into_iter()
            .filter(|e| e.manager.as_deref() == Some(meta::FIELD_MANAGER))
            .map(|e| ManagedFieldsEntry {
                manager: e.manager,
                operation: e.operation,
                subresource: e.subresource,
                ..ManagedFieldsEntry::default()
            })
            .collect()
    });
    if obj
        .metadata
        .managed_fields
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        obj.metadata.managed_fields = None;
    }
    let mut json = serde_json::to_value(&obj).unwrap_or(Json::Null);
    if let Some(map) = json.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Json::String(resource.api_version.clone()));
        map.entry("kind")
            .or_insert_with(|| Json::String(resource.kind.clone()));
        if let Some(annotations) = map
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Json::as_object_mut)
        {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    Arc::new(Cached::new(json))
}

/// Whether a watch error is the API server refusing the list or watch (403).
fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// Runs the watch of `cache` for one namespace (or all), feeding `changes` until cancelled.
pub async fn watch(
    client: Client,
    cache: Arc<KindCache>,
    namespace: Option<String>,
    changes: mpsc::UnboundedSender<Change>,
    cancel: CancellationToken,
) {
    let api: Api<DynamicObject> = match (&namespace, cache.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client, ns, &cache.resource),
        _ => Api::all_with(client, &cache.resource),
    };
    let mut config = crate::kubeclient::watcher_config().any_semantic();
    if cache.managed_only {
        config = config.labels(&format!("{}={}", meta::MANAGED_BY_LABEL, meta::MANAGED_BY));
    }
    let scope = if cache.namespaced {
        namespace.clone()
    } else {
        None
    };
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer: Vec<Arc<Cached>> = Vec::new();
    let mut counted = false;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            next = stream.next() => match next {
                Some(e) => e,
                None => return,
            },
        };
        let send = |object: Arc<Cached>, old: Option<Arc<Cached>>| {
            let _ = changes.send(Change {
                kind: cache.kind.clone(),
                object,
                old,
            });
        };
        match event {
            Ok(Event::Apply(obj)) => {
                let obj = to_cached(obj, &cache.resource);
                let old = cache.apply(obj.clone());
                send(obj, old);
            }
            Ok(Event::Delete(obj)) => {
                let obj = to_cached(obj, &cache.resource);
                let old = cache.delete(&obj);
                send(obj, old);
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(obj)) => buffer.push(to_cached(obj, &cache.resource)),
            Ok(Event::InitDone) => {
                let objects = std::mem::take(&mut buffer);
                let gone = cache.replace_scope(scope.as_deref(), objects.clone());
                if !counted {
                    counted = true;
                    let mut synced = cache
                        .synced_scopes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *synced += 1;
                    if *synced >= cache.scopes {
                        cache.synced.send_replace(true);
                    }
                }
                tracing::debug!(kind = %cache.kind, objects = objects.len(), "listed");
                for o in gone {
                    send(o.clone(), Some(o));
                }
                for o in objects {
                    send(o, None);
                }
            }
            Err(e) if is_forbidden(&e) => {
                // Waiting for a list that RBAC refuses would hold every parent of the rule
                // back forever: the kind counts as listed (empty), so its parents are planned
                // and their writes report `Forbidden` on the parent. Listing is retried.
                if !counted {
                    counted = true;
                    tracing::warn!(kind = %cache.kind, error = %e, "not allowed to list or watch this kind; its objects are treated as absent until RBAC allows it (retrying with backoff)");
                    let mut synced = cache
                        .synced_scopes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *synced += 1;
                    if *synced >= cache.scopes {
                        cache.synced.send_replace(true);
                    }
                } else {
                    tracing::debug!(kind = %cache.kind, error = %e, "watch still forbidden");
                }
            }
            Err(e) => {
                tracing::warn!(kind = %cache.kind, error = %e, "watch failed; retrying with backoff");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, labels: Json) -> Arc<Cached> {
        Arc::new(Cached::new(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name, "uid": name, "labels": labels}}),
        ))
    }

    /// An empty cache of namespaced Pods.
    fn pod_cache() -> KindCache {
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
        };
        let kind = GroupKind {
            group: String::new(),
            kind: "Pod".into(),
        };
        KindCache::new(kind, resource, true, false, 1)
    }

    #[test]
    fn selects_by_label_through_the_index_and_forgets_removed_objects() {
        let cache = pod_cache();
        cache.apply(pod("a", "p1", json!({"app": "mc", "cr": "one"})));
        cache.apply(pod("a", "p2", json!({"app": "mc", "cr": "two"})));
        cache.apply(pod("b", "p3", json!({"app": "mc", "cr": "one"})));
        let selector = [
            ("app".to_string(), "mc".to_string()),
            ("cr".to_string(), "one".to_string()),
        ]
        .into();
        let names = |v: Vec<Arc<Cached>>| {
            let mut n: Vec<String> = v.iter().map(|o| o.name().to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(cache.select(Some("a"), &selector)), ["p1"]);
        assert_eq!(names(cache.select(None, &selector)), ["p1", "p3"]);
        // A relabelled object moves in the index.
        cache.apply(pod("a", "p2", json!({"app": "mc", "cr": "one"})));
        assert_eq!(names(cache.select(Some("a"), &selector)), ["p1", "p2"]);
        cache.delete(&pod("a", "p1", json!({})));
        assert_eq!(names(cache.select(Some("a"), &selector)), ["p2"]);
        assert!(cache.select(Some("a"), &Default::default()).is_empty());
        // Every label must match, whichever one the lookup starts from.
        let unknown = [
            ("app".to_string(), "mc".to_string()),
            ("cr".to_string(), "none".to_string()),
        ]
        .into();
        assert!(cache.select(Some("a"), &unknown).is_empty());
        let other_app = [
            ("app".to_string(), "other".to_string()),
            ("cr".to_string(), "two".to_string()),
        ]
        .into();
        assert!(cache.select(None, &other_app).is_empty());
    }

    #[test]
    fn select_starts_from_the_rarest_label_and_still_checks_every_label() {
        let cache = pod_cache();
        // `app: mc` is common; `cr: one` is rarer but also carried by a foreign pod.
        for (name, labels) in [
            ("p1", json!({"app": "mc", "cr": "one"})),
            ("p2", json!({"app": "mc", "cr": "two"})),
            ("p3", json!({"app": "mc"})),
            ("p4", json!({"app": "mc"})),
            ("x1", json!({"app": "other", "cr": "one"})),
        ] {
            cache.apply(pod("a", name, labels));
        }
        let selector = [
            ("app".to_string(), "mc".to_string()),
            ("cr".to_string(), "one".to_string()),
        ]
        .into();
        let found: Vec<String> = cache
            .select(Some("a"), &selector)
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        assert_eq!(found, ["p1"]);
    }

    #[test]
    fn a_parents_objects_are_found_by_owner_label_or_by_controller() {
        let cache = pod_cache();
        cache.apply(pod("a", "labelled", json!({meta::OWNER_LABEL: "p1"})));
        let mut controlled = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "namespace": "a", "name": "controlled", "uid": "c",
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "p1", "controller": true}],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}},
                {"manager": meta::FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}}]}});
        let resource = cache.resource.clone();
        let dynamic: DynamicObject = serde_json::from_value(controlled.clone()).unwrap();
        let cached = to_cached(dynamic, &resource);
        // Only the names of ruleop's own managedFields entries are kept.
        controlled["metadata"]["managedFields"] =
            json!([{"manager": meta::FIELD_MANAGER, "operation": "Apply"}]);
        assert_eq!(cached.json()["metadata"], controlled["metadata"]);
        cache.apply(cached);
        let mut names: Vec<String> = cache
            .owned_by("p1")
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["controlled", "labelled"]);
        cache.delete(&pod("a", "controlled", json!({})));
        assert_eq!(cache.owned_by("p1").len(), 1);
    }

    #[test]
    fn keeps_objects_as_text_and_reads_them_back_whole() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "a", "name": "p", "uid": "u1", "labels": {"app": "mc"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 1}]}]}});
        let cached = Cached::new(obj.clone());
        assert!(matches!(cached.body, Body::Text(_)));
        assert_eq!(cached.json(), obj);
        assert_eq!(
            (cached.namespace(), cached.name(), cached.uid()),
            ("a", "p", "u1")
        );
        assert_eq!(cached.label("app"), Some("mc"));
        assert_eq!(cached.label("other"), None);
        // Nesting serde_json could not parse back is kept as a tree, still read back whole.
        let mut deep = json!("leaf");
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let deep = json!({"metadata": {"name": "d"}, "spec": deep});
        let cached = Cached::new(deep.clone());
        assert!(matches!(cached.body, Body::Tree(_)));
        assert_eq!(cached.json(), deep);
    }
}
