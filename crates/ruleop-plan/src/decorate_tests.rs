//! The planner's decorations on the pod-name-label example: what is written, when nothing
//! is, and what is removed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};

use super::{manager, manager_parent, owned_keys};
use crate::tests::run;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;

const RULE: &str = include_str!("../../../examples/pod-name-label/rule.yaml");

fn rule() -> CompiledRule {
    parse_rule("rule.yaml".as_ref(), RULE).unwrap()
}

fn parent() -> Json {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "sts-1", "finalizers": ["ruleop.dev/cleanup"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}})
}

fn pod(name: &str, app: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": app}}})
}

/// `obj` as the API server stores it after the decoration manager applied `labels`.
fn decorated(mut obj: Json, labels: &[(&str, &str)]) -> Json {
    let mut fields = serde_json::Map::new();
    for (k, v) in labels {
        obj["metadata"]["labels"][*k] = json!(v);
        fields.insert(format!("f:{k}"), json!({}));
    }
    obj["metadata"]["managedFields"] = json!([
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}},
        {"manager": manager("pod-name-label", "sts-1"), "operation": "Apply",
         "fieldsV1": {"f:metadata": {"f:labels": fields}}},
    ]);
    obj
}

#[test]
fn manager_names_carry_the_parent() {
    let m = manager("pod-name-label", "sts-1");
    assert_eq!(m, "ruleop-decorate/pod-name-label/sts-1");
    assert_eq!(manager_parent(&m), Some("sts-1"));
    assert_eq!(manager_parent("ruleop"), None);
    let (labels, annotations) = owned_keys(&decorated(pod("a", "web"), &[("x", "1")]), &m);
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["x"]);
    assert!(annotations.is_empty());
}

#[test]
fn each_selected_pod_gets_its_name_and_nothing_else_is_touched() {
    let observed = [
        pod("web-0", "web"),
        pod("web-1", "web"),
        pod("other-0", "other"),
    ];
    let plan = run(&rule(), &parent(), &observed);
    assert!(plan.failure.is_none(), "{:?}", plan.failure);
    assert!(plan.delete.is_empty());
    // The Services per Pod are children; no child is a Pod.
    assert!(plan.apply.iter().all(|d| d.object["kind"] == "Service"));
    let written: Vec<(String, Json)> = plan
        .decorate
        .iter()
        .map(|d| (d.key.name.clone(), json!(d.labels)))
        .collect();
    assert_eq!(
        written,
        [
            ("web-0".to_string(), json!({"pod-name": "web-0"})),
            ("web-1".to_string(), json!({"pod-name": "web-1"}))
        ]
    );
    assert!(plan.decorate.iter().all(|d| d.annotations.is_empty()
        && d.manager == "ruleop-decorate/pod-name-label/sts-1"
        && d.uid.starts_with("uid-web-")));
    assert!(plan.undecorate.is_empty());
}

#[test]
fn decorated_pods_need_no_write() {
    let observed = [
        decorated(pod("web-0", "web"), &[("pod-name", "web-0")]),
        decorated(pod("web-1", "web"), &[("pod-name", "web-1")]),
    ];
    let plan = run(&rule(), &parent(), &observed);
    assert!(
        plan.decorate.is_empty() && plan.undecorate.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn a_label_removed_by_hand_or_changed_is_written_again() {
    let mut removed = decorated(pod("web-0", "web"), &[("pod-name", "web-0")]);
    removed["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-name");
    let changed = decorated(pod("web-1", "web"), &[("pod-name", "stale")]);
    let plan = run(&rule(), &parent(), &[removed, changed]);
    let names: Vec<&str> = plan.decorate.iter().map(|d| d.key.name.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1"]);
    assert_eq!(plan.decorate[1].labels["pod-name"], "web-1");
}

#[test]
fn a_key_the_rule_no_longer_renders_is_dropped_by_a_new_apply() {
    let extra = decorated(pod("web-0", "web"), &[("pod-name", "web-0"), ("old", "x")]);
    let plan = run(&rule(), &parent(), &[extra]);
    assert_eq!(plan.decorate.len(), 1);
    assert_eq!(json!(plan.decorate[0].labels), json!({"pod-name": "web-0"}));
}

#[test]
fn a_pod_that_leaves_the_selection_loses_its_decoration_only() {
    let left = decorated(pod("web-0", "moved"), &[("pod-name", "web-0")]);
    // Another parent's decoration is not this parent's to remove.
    let mut foreign = pod("web-9", "moved");
    foreign["metadata"]["managedFields"] = json!([{"manager": manager("pod-name-label", "sts-2"),
        "fieldsV1": {"f:metadata": {"f:labels": {"f:pod-name": {}}}}}]);
    let plan = run(&rule(), &parent(), &[left, foreign]);
    assert!(plan.decorate.is_empty());
    assert_eq!(plan.undecorate.len(), 1);
    let d = &plan.undecorate[0];
    assert_eq!(
        (d.key.name.as_str(), d.uid.as_str()),
        ("web-0", "uid-web-0")
    );
    assert!(d.labels.is_empty() && d.annotations.is_empty());
}

#[test]
fn a_deleted_parent_removes_every_decoration_before_its_finalizer() {
    let mut deleting = parent();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let observed = [decorated(pod("web-0", "web"), &[("pod-name", "web-0")])];
    let plan = run(&rule(), &deleting, &observed);
    assert_eq!(plan.undecorate.len(), 1);
    assert_eq!(plan.finalizer, crate::FinalizerChange::None);
    // Once the Pod shows no decoration, the finalizer goes.
    let plan = run(&rule(), &deleting, &[pod("web-0", "web")]);
    assert!(plan.undecorate.is_empty());
    assert_eq!(plan.finalizer, crate::FinalizerChange::Remove);
}

#[test]
fn a_parent_without_the_finalizer_gets_it_first() {
    let mut fresh = parent();
    fresh["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    let plan = run(&rule(), &fresh, &[pod("web-0", "web")]);
    assert_eq!(plan.finalizer, crate::FinalizerChange::Add);
}

fn errors(source: &str) -> String {
    let errs = parse_rule("rule.yaml".as_ref(), source).unwrap_err();
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rule_errors_are_located() {
    let bad = RULE.replace(
        "selector:\n          app:",
        "objectName: x\n        selector:\n          app:",
    );
    let err = errors(&bad);
    assert!(
        err.contains("rule.yaml:") && err.contains("exactly one of selector, objectName, related"),
        "{err}"
    );
    let bad = RULE.replace("pod-name: \"{{", "Bad Key: \"{{");
    let err = errors(&bad);
    assert!(err.contains("not a valid labels key"), "{err}");
    let bad = RULE.replace("kind: Pod", "kind: Namespace");
    let err = errors(&bad);
    assert!(err.contains("cluster-scoped"), "{err}");
}

const BY_NAME_AND_RELATED: &str = r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: deco}
spec:
  parent: {apiVersion: apps/v1, kind: StatefulSet}
  related:
    - {name: secrets, apiVersion: v1, kind: Secret, selector: {app: "{{ parent.metadata.name }}"}}
  decorations:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      target: {objectName: "{{ parent.metadata.name }}-config"}
      annotations:
        example.org/used-by: "{{ parent.metadata.name }}"
    - name: secrets
      apiVersion: v1
      kind: Secret
      target: {related: secrets}
      labels:
        used: "yes"
"#;

#[test]
fn objects_by_name_and_related_objects_are_decorated_in_the_parents_namespace() {
    let rule = parse_rule("deco.yaml".as_ref(), BY_NAME_AND_RELATED).unwrap();
    let object = |kind: &str, ns: &str, name: &str, labels: Json| {
        json!({"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "labels": labels}})
    };
    let observed = [
        object("ConfigMap", "ns", "web-config", json!({})),
        // Same name in another namespace: never a namespaced parent's to decorate.
        object("ConfigMap", "other", "web-config", json!({})),
        object("ConfigMap", "ns", "unrelated", json!({})),
        object("Secret", "ns", "s1", json!({"app": "web"})),
        object("Secret", "ns", "s2", json!({"app": "db"})),
    ];
    let plan = run(&rule, &parent(), &observed);
    assert!(plan.failure.is_none(), "{:?}", plan.failure);
    let written: Vec<(String, Json, Json)> = plan
        .decorate
        .iter()
        .map(|d| (d.key.to_string(), json!(d.labels), json!(d.annotations)))
        .collect();
    assert_eq!(
        written,
        [
            (
                "ConfigMap/ns/web-config".to_string(),
                json!({}),
                json!({"example.org/used-by": "web"})
            ),
            (
                "Secret/ns/s1".to_string(),
                json!({"used": "yes"}),
                json!({})
            ),
        ]
    );
}

#[test]
fn a_failing_decoration_template_fails_the_plan_at_its_line() {
    let source = RULE.replace(
        "{{ object.metadata.name }}",
        "{{ object.metadata.name | nope }}",
    );
    let err = errors(&source);
    assert!(err.contains("rule.yaml:") && err.contains("nope"), "{err}");
    let source = RULE.replace("{{ object.metadata.name }}", "{{ object.spec.missing.x }}");
    let rule = parse_rule("rule.yaml".as_ref(), &source).unwrap();
    let plan = run(&rule, &parent(), &[pod("web-0", "web")]);
    let failure = plan.failure.unwrap();
    assert!(
        failure.message.starts_with("rule.yaml:"),
        "{}",
        failure.message
    );
    assert!(plan.decorate.is_empty() && plan.apply.is_empty());
}
