//! Unit tests of the up-to-date comparison, one per case of what the API server adds,
//! defaults and normalises, and per hand edit that must still count as a change.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::{ListReplacement, compare, repair_patch};
use ruleop_schema::openapi::{Document, KindSchema};

/// A trimmed copy of what the API server publishes for core/v1, plus a custom kind whose
/// list is keyed by a field that is not `name`.
fn document() -> Arc<Document> {
    let r = |name: &str| json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}]});
    Arc::new(Document::parse(&json!({"components": {"schemas": {
        "io.k8s.api.core.v1.Pod": {"type": "object",
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
            "properties": {"metadata": r("meta.ObjectMeta"), "spec": r("core.PodSpec")}},
        "io.k8s.api.core.v1.Service": {"type": "object",
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}],
            "properties": {"metadata": r("meta.ObjectMeta"), "spec": r("core.ServiceSpec")}},
        "meta.ObjectMeta": {"type": "object", "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}}},
        "core.PodSpec": {"type": "object", "properties": {
            "containers": {"type": "array", "items": r("core.Container"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "volumes": {"type": "array", "items": r("core.Volume"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "tolerations": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}}},
                "x-kubernetes-list-type": "atomic"},
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "hostNetwork": {"type": "boolean"}}},
        "core.Container": {"type": "object", "properties": {
            "name": {"type": "string"}, "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
            "env": {"type": "array", "items": r("core.EnvVar"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "ports": {"type": "array", "items": r("core.ContainerPort"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["containerPort", "protocol"]},
            "volumeMounts": {"type": "array", "items": r("core.VolumeMount"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]},
            "resources": r("core.ResourceRequirements")}},
        "core.EnvVar": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}},
        "core.ContainerPort": {"type": "object", "properties": {
            "containerPort": {"type": "integer"}, "protocol": {"type": "string"}, "name": {"type": "string"}}},
        "core.VolumeMount": {"type": "object", "properties": {"name": {"type": "string"}, "mountPath": {"type": "string"}}},
        "core.Volume": {"type": "object", "properties": {"name": {"type": "string"},
            "emptyDir": r("core.EmptyDir"), "hostPath": {"type": "object", "properties": {"path": {"type": "string"}}}}},
        "core.EmptyDir": {"type": "object", "properties": {"medium": {"type": "string"},
            "sizeLimit": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}}},
        "core.ResourceRequirements": {"type": "object", "properties": {
            "limits": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}}}},
        "core.ServiceSpec": {"type": "object", "properties": {
            "selector": {"type": "object", "additionalProperties": {"type": "string"}},
            "ports": {"type": "array", "items": r("core.ServicePort"),
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"]}}},
        "core.ServicePort": {"type": "object", "properties": {"name": {"type": "string"},
            "port": {"type": "integer"}, "protocol": {"type": "string"}, "targetPort": {"x-kubernetes-int-or-string": true}}},
        "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
        "test.Gadget": {"type": "object",
            "x-kubernetes-group-version-kind": [{"group": "uptodate.test", "version": "v1", "kind": "Gadget"}],
            "properties": {"spec": {"type": "object", "properties": {
                "bays": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["bay"],
                    "items": {"type": "object", "properties": {
                        "bay": {"type": "integer"}, "label": {"type": "string"}, "mode": {"type": "string"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "size": {"type": "string"}}}}}
    }}})))
}

fn schema(kind: &str) -> KindSchema {
    let group = if kind == "Gadget" {
        "uptodate.test"
    } else {
        ""
    };
    document().kind(group, "v1", kind).unwrap()
}

/// Up to date with the kind's schema.
fn same(observed: &Json, desired: &Json) -> bool {
    compare(observed, desired, Some(&schema(kind_of(desired)))).up_to_date
}

/// Up to date without a schema (offline, or a schema the server does not publish).
fn same_offline(observed: &Json, desired: &Json) -> bool {
    compare(observed, desired, None).up_to_date
}

fn kind_of(o: &Json) -> &str {
    o["kind"].as_str().unwrap()
}

fn pod(spec: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn service(ports: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "a"}, "ports": ports}})
}

#[test]
fn a_pod_with_the_token_volume_added_by_the_server_is_up_to_date() {
    let desired = pod(json!({
        "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]}));
    let observed = pod(json!({
        "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always",
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
        "volumes": [{"name": "data", "emptyDir": {}},
            {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": []}}],
        "tolerations": [{"key": "node.kubernetes.io/not-ready"}]}));
    assert!(same(&observed, &desired));
    assert!(same_offline(&observed, &desired));
    // ... but the volume the rule renders must be there.
    let mut gone = observed.clone();
    gone["spec"]["volumes"].as_array_mut().unwrap().remove(0);
    assert!(!same(&gone, &desired));
    assert!(!same_offline(&gone, &desired));
}

#[test]
fn quantities_compare_by_value() {
    let desired = pod(json!({"containers": [{"name": "c",
        "resources": {"limits": {"memory": "1024Mi", "cpu": "1000m", "ephemeral-storage": 2}}}]}));
    let observed = pod(json!({"containers": [{"name": "c",
        "resources": {"limits": {"memory": "1Gi", "cpu": "1", "ephemeral-storage": "2"}}}]}));
    assert!(same(&observed, &desired));
    assert!(same_offline(&observed, &desired));
    let mut more = observed.clone();
    more["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("2Gi");
    assert!(!same(&more, &desired));
    // A string the schema does not call a quantity is compared as written.
    let g = |size: &str| json!({"apiVersion": "uptodate.test/v1", "kind": "Gadget", "spec": {"size": size}});
    assert!(!same(&g("1Gi"), &g("1024Mi")));
}

#[test]
fn null_and_empty_values_equal_absent_ones() {
    let desired = pod(json!({
        "containers": [{"name": "c", "args": [], "env": [{"name": "A", "value": ""}, {"name": "B", "value": null}]}],
        "nodeSelector": {}, "hostNetwork": false}));
    let observed = pod(
        json!({"containers": [{"name": "c", "env": [{"name": "A"}, {"name": "B", "value": ""}]}]}),
    );
    assert!(same(&observed, &desired));
    assert!(same_offline(&observed, &desired));
    // A rendered value that is not empty is a value.
    let mut set = desired.clone();
    set["spec"]["hostNetwork"] = json!(true);
    assert!(!same(&observed, &set));
    // A null rendered where something is set: the apply removes it.
    let mut extra = observed.clone();
    extra["spec"]["containers"][0]["env"][1]["value"] = json!("x");
    assert!(!same(&extra, &desired));
}

#[test]
fn an_empty_struct_is_not_an_absent_one() {
    let desired = pod(json!({"volumes": [{"name": "v", "emptyDir": {}}]}));
    let edited = pod(json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}));
    assert!(!same(&edited, &desired));
}

#[test]
fn fields_defaulted_inside_list_entries_are_not_changes() {
    let desired = service(json!([{"name": "http", "port": 80, "targetPort": 8080},
        {"name": "metrics", "port": 9090}]));
    let observed = service(
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]),
    );
    assert!(same(&observed, &desired));
    assert!(same_offline(&observed, &desired));
}

#[test]
fn keyed_lists_compare_by_key_not_position() {
    let desired = pod(json!({"containers": [{"name": "a", "image": "x",
        "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]},
        {"name": "b", "image": "y"}]}));
    let observed = pod(
        json!({"containers": [{"name": "sidecar", "image": "z"}, {"name": "b", "image": "y"},
        {"name": "a", "image": "x", "ports": [{"containerPort": 53, "protocol": "UDP"},
            {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81, "protocol": "TCP"}]}]}),
    );
    assert!(same(&observed, &desired));
    // An entry with the same key but another value is a change, repaired by the apply.
    let mut edited = observed.clone();
    edited["spec"]["containers"][1]["image"] = json!("hacked");
    let c = compare(&edited, &desired, Some(&schema("Pod")));
    assert!(!c.up_to_date);
    assert!(c.replacements.is_empty());
}

#[test]
fn a_custom_kind_uses_the_list_keys_its_schema_declares() {
    let gadget = |bays: Json, tags: Json| json!({"apiVersion": "uptodate.test/v1", "kind": "Gadget", "spec": {"bays": bays, "tags": tags}});
    let desired = gadget(
        json!([{"bay": 1, "label": "a"}, {"bay": 2, "label": "b"}]),
        json!(["x", "y"]),
    );
    // Another manager added bay 9 and tag z; the server defaulted `mode`.
    let observed = gadget(
        json!([{"bay": 2, "label": "b", "mode": "auto"}, {"bay": 9, "label": "theirs", "mode": "auto"},
            {"bay": 1, "label": "a", "mode": "auto"}]),
        json!(["z", "y", "x"]),
    );
    assert!(same(&observed, &desired));
    // No `name` in the entries: without the schema the lists are atomic, so they differ.
    assert!(!same_offline(&observed, &desired));
    let mut edited = observed.clone();
    edited["spec"]["bays"][2]["label"] = json!("hand");
    assert!(!same(&edited, &desired));
    let mut untagged = observed.clone();
    untagged["spec"]["tags"] = json!(["x", "z"]);
    assert!(!same(&untagged, &desired));
}

#[test]
fn atomic_lists_are_compared_whole() {
    let desired = pod(
        json!({"containers": [{"name": "c", "args": ["a", "b"]}], "tolerations": [{"key": "k"}]}),
    );
    let ok = pod(json!({"containers": [{"name": "c", "args": ["a", "b"]}],
        "tolerations": [{"key": "k", "operator": "Equal"}]}));
    assert!(
        same(&ok, &desired),
        "defaults inside atomic entries are fine"
    );
    let longer = pod(
        json!({"containers": [{"name": "c", "args": ["a", "b", "c"]}], "tolerations": [{"key": "k"}]}),
    );
    assert!(
        !same(&longer, &desired),
        "an entry added by hand is a change"
    );
    let reordered = pod(
        json!({"containers": [{"name": "c", "args": ["b", "a"]}], "tolerations": [{"key": "k"}]}),
    );
    assert!(!same(&reordered, &desired));
    assert!(!same_offline(&reordered, &desired));
}

#[test]
fn set_lists_compare_as_sets() {
    let p = |f: Json| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": f}});
    assert!(same(&p(json!(["b", "other", "a"])), &p(json!(["a", "b"]))));
    assert!(!same(&p(json!(["b"])), &p(json!(["a", "b"]))));
}

#[test]
fn hand_edits_of_scalars_and_maps_are_changes() {
    let desired = service(json!([{"name": "http", "port": 80}]));
    let mut edited = desired.clone();
    edited["spec"]["selector"]["app"] = json!("other");
    assert!(!same(&edited, &desired));
    let mut removed = desired.clone();
    removed["spec"].as_object_mut().unwrap().remove("selector");
    assert!(!same(&removed, &desired));
    // Labels others add are theirs.
    let mut labelled = desired.clone();
    labelled["metadata"]["labels"] = json!({"team": "x"});
    assert!(same(&labelled, &desired));
}

#[test]
fn an_edited_key_asks_for_the_list_to_be_put_back() {
    let desired = service(json!([{"name": "http", "port": 80, "targetPort": 8080},
        {"name": "metrics", "port": 9090}]));
    let observed_ports = json!([{"name": "http", "port": 81, "protocol": "TCP", "targetPort": 8080},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]);
    let observed = service(observed_ports.clone());
    let c = compare(&observed, &desired, Some(&schema("Service")));
    assert!(!c.up_to_date);
    let expected = ListReplacement {
        pointer: "/spec/ports".into(),
        observed: observed_ports.clone(),
        // The rendered entry for the lost key; the other keeps what the server defaulted.
        replacement: json!([{"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]),
    };
    assert_eq!(c.replacements, vec![expected.clone()]);
    assert_eq!(
        repair_patch(&c.replacements).unwrap(),
        json!([{"op": "test", "path": "/spec/ports", "value": observed_ports},
            {"op": "replace", "path": "/spec/ports", "value": expected.replacement}])
    );
    assert_eq!(repair_patch(&[]), None);
    // Offline the ports are keyed by name: the edited port is a changed field instead.
    let offline = compare(&observed, &desired, None);
    assert!(!offline.up_to_date && offline.replacements.is_empty());
}

#[test]
fn nested_lists_are_put_back_at_the_observed_position() {
    let desired = pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}));
    let observed = pod(json!({"containers": [{"name": "z"},
        {"name": "a", "ports": [{"containerPort": 81, "protocol": "TCP"}]}]}));
    let c = compare(&observed, &desired, Some(&schema("Pod")));
    assert_eq!(c.replacements.len(), 1);
    assert_eq!(c.replacements[0].pointer, "/spec/containers/1/ports");
    // When the outer list is put back too, the inner one waits for the next comparison.
    let observed = pod(json!({"containers": [{"name": "z"},
        {"name": "a", "ports": [{"containerPort": 81, "protocol": "TCP"}]}]}));
    let desired = pod(
        json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}, {"name": "b"}]}),
    );
    let c = compare(&observed, &desired, Some(&schema("Pod")));
    let pointers: Vec<&str> = c.replacements.iter().map(|r| r.pointer.as_str()).collect();
    assert_eq!(pointers, ["/spec/containers"]);
}

#[test]
fn pointers_escape_keys() {
    let desired =
        json!({"apiVersion": "v1", "kind": "X", "data": {"a/b~c": [{"name": "n", "v": 1}]}});
    let observed =
        json!({"apiVersion": "v1", "kind": "X", "data": {"a/b~c": [{"name": "m", "v": 1}]}});
    let c = compare(&observed, &desired, None);
    assert_eq!(c.replacements[0].pointer, "/data/a~1b~0c");
}

#[test]
fn numbers_compare_by_value() {
    let desired = json!({"apiVersion": "v1", "kind": "X", "spec": {"n": 1, "f": 0.5}});
    let observed = json!({"apiVersion": "v1", "kind": "X", "spec": {"n": 1.0, "f": 0.5}});
    assert!(same_offline(&observed, &desired));
    let observed = json!({"apiVersion": "v1", "kind": "X", "spec": {"n": 2, "f": 0.5}});
    assert!(!same_offline(&observed, &desired));
}
