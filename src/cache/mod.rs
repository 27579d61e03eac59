//! In-memory caches of watched kinds. One watch per kind (per namespace in scope), shared by
//! every rule that uses the kind; objects are kept as JSON text without what no rule reads
//! (`managedFields` but for ruleop's own entries, `last-applied-configuration`, and all but
//! `metadata` of kinds rules only read the metadata of), indexed by namespace/name, by
//! parent uid (ruleop's owner label, and the controller ownerReference) and by uid.

mod object;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use kube::api::ApiResource;

pub use object::Cached;
use ruleop_schema::meta;
pub use watch::watch;

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

#[derive(Default)]
struct Inner {
    objects: HashMap<ObjKey, Arc<Cached>>,
    by_owner: HashMap<String, HashSet<ObjKey>>,
    /// Objects by their controller's uid: a child whose owner label was removed is found too.
    by_controller: HashMap<String, HashSet<ObjKey>>,
    by_uid: HashMap<String, ObjKey>,
    /// Objects by the uids of the parents whose decorations they carry.
    by_decorator: HashMap<String, HashSet<ObjKey>>,
    /// Objects by namespace and label, so selecting related objects does not scan the kind.
    by_label: HashMap<LabelKey, HashSet<ObjKey>>,
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
        for parent in obj.decorators() {
            self.by_decorator
                .entry(parent.to_string())
                .or_default()
                .insert(key.clone());
        }
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
        for parent in old.decorators() {
            if let Some(set) = self.by_decorator.get_mut(parent) {
                set.remove(key);
                if set.is_empty() {
                    self.by_decorator.remove(parent);
                }
            }
        }
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
    /// Whether only objects' metadata is watched (kinds no rule reads more of).
    pub metadata_only: bool,
    /// The label selector sent with the watch (a parent kind every rule using it selects
    /// by the same labels): objects outside it are never cached, and one that stops matching
    /// arrives as a deletion although it still exists.
    pub label_selector: Option<String>,
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
            metadata_only: false,
            label_selector: None,
            inner: RwLock::default(),
            synced: tokio::sync::watch::Sender::new(false),
            synced_scopes: std::sync::Mutex::new(0),
            scopes: scopes.max(1),
        }
    }

    /// The same cache, watching only its objects' metadata when `metadata_only`.
    pub fn with_metadata_only(mut self, metadata_only: bool) -> Self {
        self.metadata_only = metadata_only;
        self
    }

    /// The same cache, watching only objects matching `selector` (API server syntax).
    pub fn with_label_selector(mut self, selector: Option<String>) -> Self {
        self.label_selector = selector;
        self
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

    /// Counts one scope's watch as listed; the cache is synced once every scope is.
    pub(super) fn scope_listed(&self) {
        let mut listed = self
            .synced_scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *listed += 1;
        if *listed >= self.scopes {
            self.synced.send_replace(true);
        }
    }

    /// Returns once every watch of this kind has listed once.
    pub async fn wait_synced(&self) {
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = self.synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// Adds or replaces `obj` as a watch event would, for callers without an API server
    /// (the planner benchmark).
    pub fn put(&self, obj: serde_json::Value) {
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

    /// Objects carrying decorations of the parent with `uid`.
    pub fn decorated_by(&self, uid: &str) -> Vec<Arc<Cached>> {
        let inner = self.read();
        let keys = inner.by_decorator.get(uid).into_iter().flatten();
        keys.filter_map(|k| inner.objects.get(k).cloned()).collect()
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

    pub(super) fn apply(&self, obj: Arc<Cached>) -> Option<Arc<Cached>> {
        self.write().insert(obj)
    }

    pub(super) fn delete(&self, obj: &Cached) -> Option<Arc<Cached>> {
        self.write().remove(&obj.key())
    }

    /// Replaces the objects of one scope (a namespace, or all) after a (re)list; returns the
    /// objects that vanished.
    pub(super) fn replace_scope(
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use serde_json::{Value as Json, json};

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
        let cached = object::to_cached(dynamic, &resource);
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
    fn decorated_objects_keep_their_decoration_fields_and_are_found_by_parent() {
        let cache = pod_cache();
        let manager = ruleop_plan::decoration_manager("r", "p1");
        let fields = json!({"f:metadata": {"f:labels": {"f:pod-name": {}}}});
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "namespace": "a", "name": "decorated", "uid": "d", "labels": {"pod-name": "decorated"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}},
                {"manager": manager, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}]}});
        let resource = cache.resource.clone();
        let dynamic: DynamicObject = serde_json::from_value(obj).unwrap();
        let cached = object::to_cached(dynamic, &resource);
        // The decoration manager's entry is kept whole: it says which keys were decorated.
        let (labels, _) = ruleop_plan::owned_keys(&cached.json(), &manager);
        assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["pod-name"]);
        assert_eq!(
            cached.json()["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        cache.apply(cached);
        cache.apply(pod("a", "plain", json!({})));
        let found: Vec<String> = cache
            .decorated_by("p1")
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        assert_eq!(found, ["decorated"]);
        assert!(cache.decorated_by("p2").is_empty());
        // Once the decoration is gone, the object is no longer found by its parent.
        cache.apply(pod("a", "decorated", json!({})));
        assert!(cache.decorated_by("p1").is_empty());
    }
}
