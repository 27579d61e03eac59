//! A cached object: identity and labels for the indexes, the body as compact JSON text;
//! and the conversion of watched objects into it, dropping what no rule reads.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::core::PartialObjectMeta;
use serde::Deserialize;
use serde_json::Value as Json;

use super::ObjKey;
use ruleop_plan::{DECORATION_MANAGER_PREFIX, decoration_parent};
use ruleop_schema::meta;

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
    /// The uids of the parents whose decorations the object carries.
    decorators: Box<[Box<str>]>,
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
    /// Caches `obj` as a watch event of it would be cached (for callers without an API
    /// server: tests and the planner benchmark). An `obj` that is no Kubernetes object (its
    /// metadata does not parse) is kept whole with no identity.
    pub fn new(obj: Json) -> Self {
        match DynamicObject::deserialize(&obj) {
            Ok(object) => from_object(object),
            Err(_) => Self {
                namespace: Box::default(),
                name: Box::default(),
                uid: Box::default(),
                controller: None,
                labels: Box::default(),
                decorators: Box::default(),
                body: Body::Tree(obj),
            },
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

    /// The uids of the parents whose decorations the object carries.
    pub fn decorators(&self) -> impl Iterator<Item = &str> {
        self.decorators.iter().map(|d| &**d)
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

/// Converts a watched object into the cached form, written as text straight from the
/// watched object (no intermediate tree: every watch event of every kind goes through here).
pub(super) fn to_cached(mut obj: DynamicObject, resource: &ApiResource) -> Arc<Cached> {
    obj.types.get_or_insert_with(|| TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    Arc::new(from_object(obj))
}

/// The cached form of `obj`, its identity read from its metadata (the one reading of it).
fn from_object(mut obj: DynamicObject) -> Cached {
    // Only whether ruleop's field manager wrote the object is kept (see plan::is_ours), and
    // the fields of decoration managers: they say which keys a parent decorated.
    obj.metadata.managed_fields = obj.metadata.managed_fields.map(|entries| {
        entries
            .into_iter()
            .filter_map(|e| match e.manager.as_deref() {
                Some(meta::FIELD_MANAGER) => Some(ManagedFieldsEntry {
                    manager: e.manager,
                    operation: e.operation,
                    subresource: e.subresource,
                    ..ManagedFieldsEntry::default()
                }),
                Some(m) if m.starts_with(DECORATION_MANAGER_PREFIX) => Some(ManagedFieldsEntry {
                    manager: e.manager,
                    operation: e.operation,
                    fields_type: e.fields_type,
                    fields_v1: e.fields_v1,
                    ..ManagedFieldsEntry::default()
                }),
                _ => None,
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
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let m = &obj.metadata;
    let text = match serde_json::to_string(&obj) {
        // The metadata nests a few levels only (ruleop's managedFields entries have no
        // fieldsV1, decoration entries only labels and annotations), so the data's depth decides.
        Ok(text) if depth(&obj.data) <= MAX_TEXT_DEPTH => Some(text),
        _ => None,
    };
    Cached {
        namespace: m.namespace.as_deref().unwrap_or_default().into(),
        name: m.name.as_deref().unwrap_or_default().into(),
        uid: m.uid.as_deref().unwrap_or_default().into(),
        controller: m
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.as_str().into()),
        labels: m
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str())))
            .collect(),
        decorators: m
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|e| decoration_parent(e.manager.as_deref()?))
            .map(Box::from)
            .collect(),
        body: match text {
            Some(text) => Body::Text(text.into_boxed_str()),
            None => Body::Tree(serde_json::to_value(&obj).unwrap_or(Json::Null)),
        },
    }
}

/// Converts an object of a metadata-only watch into the cached form: `apiVersion`, `kind`
/// (the watched kind's, not `PartialObjectMetadata`) and `metadata`.
pub(super) fn metadata_to_cached(
    obj: PartialObjectMeta<DynamicObject>,
    resource: &ApiResource,
) -> Arc<Cached> {
    let obj = DynamicObject {
        types: Some(TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        }),
        metadata: obj.metadata,
        data: Json::Object(serde_json::Map::new()),
    };
    to_cached(obj, resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// A Pod of the Memcached benchmark as the API server returns it (kwok node).
    fn bench_pod() -> Json {
        let f = |m: &str, op: &str, sub: Option<&str>| {
            let mut e = json!({"manager": m, "operation": op, "apiVersion": "v1",
                "time": "2026-11-29T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:memcached_cr": {}, "f:pod-template-hash": {}},
                    "f:ownerReferences": {".": {}, "k:{\"uid\":\"5b0e\"}": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"memcached\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {".": {}, "k:{\"containerPort\":11211,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
                        "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                    "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                    "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}});
            if let Some(sub) = sub {
                e["subresource"] = json!(sub);
            }
            e
        };
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "mc-00001-6d4cf56db6-x2x9k", "generateName": "mc-00001-6d4cf56db6-", "namespace": "bench",
            "uid": "0b7c5d9e-4a4f-4a49-9d1c-4f7c1d7c2a11", "resourceVersion": "123456",
            "creationTimestamp": "2026-11-29T10:00:00Z",
            "labels": {"app": "memcached", "memcached_cr": "mc-00001", "pod-template-hash": "6d4cf56db6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "mc-00001-6d4cf56db6",
                "uid": "5b0e6f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [f("kube-controller-manager", "Update", None), f("kwok", "Update", Some("status"))]},
          "spec": {"containers": [{"name": "memcached", "image": "memcached:1.4.36",
                "ports": [{"name": "memcached", "containerPort": 11211, "protocol": "TCP"}], "resources": {},
                "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": "kwok-node-1",
            "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"},
          "status": {"phase": "Running", "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-29T10:00:01Z"},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-29T10:00:01Z"},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-29T10:00:01Z"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-29T10:00:00Z"}],
            "hostIP": "10.240.0.2", "podIP": "10.64.16.5", "podIPs": [{"ip": "10.64.16.5"}],
            "startTime": "2026-11-29T10:00:01Z", "qosClass": "BestEffort",
            "containerStatuses": [{"name": "memcached", "state": {"running": {"startedAt": "2026-11-29T10:00:01Z"}},
                "lastState": {}, "ready": true, "restartCount": 0, "image": "memcached:1.4.36",
                "imageID": "", "started": true}]}})
    }

    #[test]
    fn a_watched_object_is_cached_whole_without_other_managers_or_last_applied() {
        let mut pod = bench_pod();
        pod["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"});
        pod["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"manager": meta::FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}),
            );
        let cached = to_cached(
            serde_json::from_value(pod.clone()).unwrap(),
            &pod_resource(),
        );
        let mut expected = pod.clone();
        expected["metadata"]["annotations"] = json!({"keep": "me"});
        expected["metadata"]["managedFields"] =
            json!([{"manager": meta::FIELD_MANAGER, "operation": "Apply"}]);
        assert_eq!(cached.json(), expected);
        assert!(matches!(cached.body, Body::Text(_)));
        assert_eq!(
            (cached.namespace(), cached.name(), cached.uid()),
            (
                "bench",
                "mc-00001-6d4cf56db6-x2x9k",
                "0b7c5d9e-4a4f-4a49-9d1c-4f7c1d7c2a11"
            )
        );
        assert_eq!(
            cached.controller(),
            Some("5b0e6f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(cached.label("memcached_cr"), Some("mc-00001"));
        // Without apiVersion and kind (as in a list's items), the watched kind's are added.
        let mut bare = pod;
        bare.as_object_mut().unwrap().remove("apiVersion");
        bare.as_object_mut().unwrap().remove("kind");
        let read = to_cached(serde_json::from_value(bare).unwrap(), &pod_resource()).json();
        assert_eq!(
            (read["apiVersion"].as_str(), read["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
    }

    fn pod_resource() -> ApiResource {
        ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
        }
    }

    #[test]
    fn a_metadata_only_object_keeps_its_identity_and_costs_a_fraction_of_the_whole() {
        let pod = bench_pod();
        let raw = serde_json::to_string(&pod).unwrap().len();
        let whole = to_cached(
            serde_json::from_value(pod.clone()).unwrap(),
            &pod_resource(),
        );
        let meta_only = metadata_to_cached(
            serde_json::from_value(
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": pod["metadata"]}),
            )
            .unwrap(),
            &pod_resource(),
        );
        let bytes = |c: &Cached| match &c.body {
            Body::Text(t) => t.len(),
            Body::Tree(_) => usize::MAX,
        };
        // Measured: the object as listed, cached whole (managedFields cut to ruleop's own
        // entries, none here), and metadata-only.
        let (whole_bytes, meta_bytes) = (bytes(&whole), bytes(&meta_only));
        assert!(whole_bytes < raw * 2 / 3, "{raw} -> {whole_bytes}");
        assert!(
            meta_bytes * 3 < whole_bytes,
            "{whole_bytes} -> {meta_bytes}"
        );
        // The watched kind's identity, labels and owners, not PartialObjectMetadata's.
        let read = meta_only.json();
        assert_eq!(
            (read["apiVersion"].as_str(), read["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
        assert_eq!(read["metadata"]["labels"], pod["metadata"]["labels"]);
        assert_eq!(
            read["metadata"]["ownerReferences"],
            pod["metadata"]["ownerReferences"]
        );
        assert_eq!(meta_only.controller(), whole.controller());
        assert_eq!(meta_only.label("memcached_cr"), Some("mc-00001"));
        assert!(read.get("spec").is_none() && read["metadata"].get("managedFields").is_none());
        println!(
            "pod as listed: {raw} B; cached whole: {whole_bytes} B; metadata-only: {meta_bytes} B"
        );
    }
}
