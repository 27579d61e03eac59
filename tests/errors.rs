//! End to end: rules whose CRD appears later, and manifests the API server rejects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::operator::{Operator, jsonpath};
use support::{TestEnv, kubectl_with_input, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(60);

/// A CRD of kind `Widget` in a group unique to this test, and a rule for it.
fn widget(group: &str, data_value: &str) -> (String, String) {
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#
    );
    let rule = format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: widget}}
spec:
  parent: {{apiVersion: {group}/v1, kind: Widget}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  children:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: {{{{ parent.metadata.name }}}}}}
        data: {{value: {data_value}}}
"#
    );
    (crd, rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_waits_for_its_crd_and_starts_without_a_restart() {
    let env = TestEnv::new("e2e-latecrd").await;
    let group = format!("late{}.test.ruleop.dev", unique_suffix());
    let (crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("widget.yaml"), rule).unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    wait_for("the wait is logged", T, || async {
        op.log().contains("rule waiting for its kinds")
    })
    .await;
    assert!(
        op.metrics().contains("state=\"waiting\""),
        "the wait shows in metrics"
    );

    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    env.delete_on_drop("crd", &format!("widgets.{group}"));
    wait_for("rule active", T, || async {
        op.log().contains("rule active")
    })
    .await;
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{value: hello}}\n"
    ));
    wait_for("child created", T, || async {
        jsonpath(&env, "configmap", "w1", "{.data.value}") == "hello"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_manifest_is_reported_without_a_hot_loop_or_blocking_others() {
    let env = TestEnv::new("e2e-reject").await;
    let group = format!("rej{}.test.ruleop.dev", unique_suffix());
    // A number in ConfigMap data: the API server rejects it; a string is fine.
    let (crd, rule) = widget(&group, "{{ parent.spec.value }}");
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    env.delete_on_drop("crd", &format!("widgets.{group}"));
    support::kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/widgets.{group}"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("widget.yaml"), rule).unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: bad}}\nspec: {{value: 42}}\n"
    ));
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: good}}\nspec: {{value: fine}}\n"
    ));
    wait_for("the rejection reported", T, || async {
        jsonpath(
            &env,
            &format!("widgets.{group}"),
            "bad",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "False"
    })
    .await;
    let reason = jsonpath(
        &env,
        &format!("widgets.{group}"),
        "bad",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    );
    let message = jsonpath(
        &env,
        &format!("widgets.{group}"),
        "bad",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(reason == "Invalid", "reason {reason}: {message}");
    assert!(
        message.contains("ConfigMap") && message.contains("bad"),
        "the API server's message: {message}"
    );
    wait_for("the good parent is not blocked", T, || async {
        jsonpath(&env, "configmap", "good", "{.data.value}") == "fine"
    })
    .await;
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=bad",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Invalid"), "{events}");
    let before = op.counter("ruleop_reconciles_total", "rule=\"widget\"");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = op.counter("ruleop_reconciles_total", "rule=\"widget\"");
    assert!(
        after - before <= 1.0,
        "no hot loop: {before} -> {after} reconciles in 5 s"
    );
}
