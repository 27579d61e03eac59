//! Parent selectors end to end: a rule on the built-in StatefulSet governs only the ones its
//! annotation or label selector selects; one that stops matching is released (finalizer and
//! condition removed, children per `onRelease`), the others untouched; idle writes none.

use crate::support;

use std::time::Duration;

use support::examples::{assert_passes_offline, read, rule_file};
use support::operator::{Operator, jsonpath, ready};
use support::{Scope, TestEnv, audit, live_uids, wait_for, wait_for_ok};

const T: Duration = Duration::from_secs(90);
const IDLE: Duration = Duration::from_secs(6);

/// A StatefulSet `name` with `replicas` and extra metadata (`annotations: {...}` etc.).
fn statefulset(name: &str, replicas: u32, metadata: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\n{metadata}\
         spec:\n  replicas: {replicas}\n  serviceName: {name}\n  selector: {{matchLabels: {{app: {name}}}}}\n  \
         template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: nginx}}]}}\n"
    )
}

fn finalizers(env: &TestEnv, name: &str) -> String {
    jsonpath(env, "statefulset", name, "{.metadata.finalizers}")
}

fn names(env: &TestEnv, what: &str, selector: &str) -> Vec<String> {
    live_uids(Scope::Namespace(&env.ns), what, Some(selector))
        .into_keys()
        .collect()
}

/// Successful writes of the operator to the StatefulSet `name` after `mark`.
fn writes_to(mark: &audit::Mark, env: &TestEnv, name: &str) -> Vec<audit::Write> {
    mark.operator_writes_where(|w| {
        w.namespace == env.ns && w.resource == "statefulsets" && w.name == name
    })
}

/// The example's header, `check` and `ruleop test` (render of an unselected StatefulSet is
/// in tests/offline/selectors.rs).
#[test]
fn the_service_per_pod_example_passes_offline() {
    assert_passes_offline("service-per-pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_statefulsets_only_and_removing_the_annotation_releases_exactly_that_one() {
    let env = TestEnv::new("sel-ann").await;
    let start = audit::Mark::now();
    let op = Operator::start_with_rules(&env.ns, &rule_file("service-per-pod"), &[]);
    let annotated = "  annotations: {service-per-pod-label: statefulset.kubernetes.io/pod-name}\n";
    env.apply_yaml(&read("service-per-pod", "sample.yaml"));
    env.apply_yaml(&statefulset("other", 1, annotated));
    env.apply_yaml(&statefulset("plain", 1, ""));
    let services = || names(&env, "services", "ruleop.dev/rule=service-per-pod");

    wait_for("Services of the annotated StatefulSets", T, || async {
        services() == ["Service/nginx-0", "Service/nginx-1", "Service/other-0"]
    })
    .await;
    for name in ["nginx", "other"] {
        wait_for("Ready and the finalizer", T, || async {
            ready(&env, "statefulset", name).0 == "True"
                && finalizers(&env, name).contains("ruleop.dev/cleanup")
        })
        .await;
    }
    // The selector port and label come from the annotations.
    assert_eq!(
        jsonpath(&env, "service", "nginx-1", "{.spec.selector}"),
        r#"{"statefulset.kubernetes.io/pod-name":"nginx-1"}"#
    );
    assert_eq!(
        jsonpath(&env, "service", "nginx-0", "{.spec.ports[0].targetPort}"),
        "8080"
    );
    audit::assert_no_writes("converged", IDLE, |w| w.namespace == env.ns).await;

    // Edits of the unannotated StatefulSet queue nothing: no reconcile at all (the planner
    // would plan nothing for it either, so only the count of reconciles can tell).
    let reconciles = || op.counter("ruleop_reconciles_total", "rule=\"service-per-pod\"");
    let quiet = wait_for_ok("no reconcile for 2s", T, || async {
        let before = reconciles();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = reconciles();
        if before == after {
            Ok(after)
        } else {
            Err(format!("{before} -> {after}"))
        }
    })
    .await;
    env.kubectl(&["annotate", "statefulset", "plain", "example.com/touched=1"]);
    env.kubectl(&["label", "statefulset", "plain", "touched=yes"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reconciles(),
        quiet,
        "an unselected StatefulSet was reconciled"
    );

    // Removing the annotation releases nginx alone: finalizer and condition gone, its
    // Services deleted (`onRelease: DeleteChildren`); `other` is not written.
    let before = audit::Mark::now();
    env.kubectl(&["annotate", "statefulset", "nginx", "service-per-pod-label-"]);
    wait_for("nginx released", T, || async {
        finalizers(&env, "nginx").is_empty()
            && ready(&env, "statefulset", "nginx").0.is_empty()
            && services() == ["Service/other-0"]
    })
    .await;
    let other = writes_to(&before, &env, "other");
    assert!(other.is_empty(), "{}", audit::describe(&other));
    // Released once: ruleop's status removed, then its finalizer; nothing more.
    let released: Vec<String> = writes_to(&before, &env, "nginx")
        .iter()
        .map(|w| format!("{} {}", w.verb, w.subresource))
        .collect();
    assert_eq!(released, ["patch status", "patch "], "writes to nginx");
    assert_eq!(ready(&env, "statefulset", "other").0, "True");
    audit::assert_no_writes("released", IDLE, |w| w.namespace == env.ns).await;

    // Annotated again: adopted as any new parent.
    env.kubectl(&[
        "annotate",
        "statefulset",
        "nginx",
        "service-per-pod-label=statefulset.kubernetes.io/pod-name",
    ]);
    wait_for("nginx adopted again", T, || async {
        services() == ["Service/nginx-0", "Service/nginx-1", "Service/other-0"]
            && ready(&env, "statefulset", "nginx").0 == "True"
            && finalizers(&env, "nginx").contains("ruleop.dev/cleanup")
    })
    .await;

    // The unannotated one was never written, and carries nothing of ruleop's.
    let plain = writes_to(&start, &env, "plain");
    assert!(plain.is_empty(), "{}", audit::describe(&plain));
    assert!(finalizers(&env, "plain").is_empty());
    assert_eq!(
        jsonpath(&env, "statefulset", "plain", "{.status.conditions}"),
        ""
    );
}

const LABEL_RULE: &str = "apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata:
  name: sel-label
spec:
  parent:
    apiVersion: apps/v1
    kind: StatefulSet
    selector:
      matchLabels: {example.com/config: \"yes\"}
  allow:
    - {apiVersion: v1, kind: ConfigMap}
  children:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata:
          name: {{ parent.metadata.name }}-config
        data:
          replicas: \"{{ parent.spec.replicas }}\"
  finalizer: {}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_is_sent_with_the_watch_and_release_keeps_children() {
    let env = TestEnv::new("sel-label").await;
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yaml");
    std::fs::write(&rule, LABEL_RULE).unwrap();
    let start = audit::Mark::now();
    let mut op = Operator::start_with_rules(&env.ns, &rule, &[]);
    let labelled = "  labels: {example.com/config: \"yes\"}\n";
    env.apply_yaml(&statefulset("a", 1, labelled));
    env.apply_yaml(&statefulset("b", 1, labelled));
    env.apply_yaml(&statefulset("c", 1, labelled));
    env.apply_yaml(&statefulset("plain", 1, ""));
    let configs = || names(&env, "configmaps", "ruleop.dev/rule=sel-label");
    let all = [
        "ConfigMap/a-config",
        "ConfigMap/b-config",
        "ConfigMap/c-config",
    ];

    wait_for("ConfigMaps of the labelled StatefulSets", T, || async {
        configs() == all
    })
    .await;
    for name in ["a", "b", "c"] {
        wait_for("Ready and the finalizer", T, || async {
            ready(&env, "statefulset", name).0 == "True"
                && finalizers(&env, name).contains("ruleop.dev/cleanup")
        })
        .await;
    }
    // The selector went to the API server: unselected StatefulSets are never cached.
    assert!(
        op.log().contains(r#"selector="example.com/config=yes""#),
        "{}",
        op.log()
    );
    audit::assert_no_writes("converged", IDLE, |w| w.namespace == env.ns).await;

    // The label removed: the watch drops `a` as if deleted; ruleop reads it, finds it alive
    // and releases it. Its ConfigMap stays (`onRelease` defaults to KeepChildren).
    let before = audit::Mark::now();
    env.kubectl(&["label", "statefulset", "a", "example.com/config-"]);
    wait_for("a released", T, || async {
        finalizers(&env, "a").is_empty() && ready(&env, "statefulset", "a").0.is_empty()
    })
    .await;
    assert_eq!(configs(), all);
    assert!(env.get("statefulset", "a").is_some(), "a is not deleted");
    let released: Vec<String> = writes_to(&before, &env, "a")
        .iter()
        .map(|w| format!("{} {}", w.verb, w.subresource))
        .collect();
    assert_eq!(released, ["patch status", "patch "], "writes to a");
    let b = writes_to(&before, &env, "b");
    assert!(b.is_empty(), "{}", audit::describe(&b));
    audit::assert_no_writes("released", IDLE, |w| w.namespace == env.ns).await;

    // Edits of a released StatefulSet are not seen at all.
    env.kubectl(&["scale", "statefulset", "a", "--replicas=3"]);
    audit::assert_no_writes("unselected edit", IDLE, |w| w.namespace == env.ns).await;

    let plain = writes_to(&start, &env, "plain");
    assert!(plain.is_empty(), "{}", audit::describe(&plain));
    assert!(finalizers(&env, "plain").is_empty());

    // A real deletion of a selected parent is still a deletion (cleanup, finalizer removed).
    env.kubectl(&["delete", "statefulset", "b", "--wait=false"]);
    wait_for("b deleted", T, || async {
        env.get("statefulset", "b").is_none()
    })
    .await;

    // `c` loses its label while ruleop is stopped: the selecting watch of the next start
    // never shows it, so the start looks for such parents and releases it.
    op.stop();
    env.kubectl(&["label", "statefulset", "c", "example.com/config-"]);
    let _op = Operator::start_with_rules(&env.ns, &rule, &[]);
    wait_for("c released at start", T, || async {
        finalizers(&env, "c").is_empty() && ready(&env, "statefulset", "c").0.is_empty()
    })
    .await;
    audit::assert_no_writes("restarted", IDLE, |w| w.namespace == env.ns).await;
    let plain = writes_to(&start, &env, "plain");
    assert!(plain.is_empty(), "{}", audit::describe(&plain));
}
