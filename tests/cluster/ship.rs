//! What an operator running in production shows its users: one Event per child in
//! `kubectl describe`, and logs without colour codes whose failed reconciles are WARN/ERROR
//! lines naming the parent in separate fields. Uses the `Tenant` test rule (four children of
//! three kinds), unlike the reference rules.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value as Json;
use support::operator::{Operator, ready, root};
use support::{TestEnv, audit, wait_for};

const T: Duration = Duration::from_secs(120);
/// The Tenant kind by its full name: other tests on the same control plane serve a Tenant of
/// their own (ownership, examples), and `kubectl get tenant` would pick one group's.
const TENANT: &str = "tenants.ship.test.ruleop.dev";

fn install_tenant_crd() {
    support::install_crds_at(&root().join("tests/rules/ship/crds"));
}

/// `kind/name` of every object of `kinds` in the namespace, less what Kubernetes itself puts
/// in every namespace.
fn objects(env: &TestEnv, kinds: &str) -> BTreeSet<String> {
    let list: Json = serde_json::from_str(&env.kubectl(&["get", kinds, "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .filter(|k| k != "ConfigMap/kube-root-ca.crt" && k != "ServiceAccount/default")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_each_child_event_and_logs_name_the_failed_parent() {
    install_tenant_crd();
    let env = TestEnv::new("ship-events").await;
    let op = Operator::start_with_rules(
        &env.ns,
        &root().join("tests/rules/ship"),
        &["--log-format", "json"],
    );
    env.apply_yaml(
        "apiVersion: ship.test.ruleop.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec: {tier: gold}\n",
    );
    wait_for("Tenant acme Ready", T, || async {
        ready(&env, TENANT, "acme").0 == "True"
    })
    .await;
    let children: BTreeSet<String> = [
        "ConfigMap/acme-quota",
        "ConfigMap/acme-settings",
        "Secret/acme-token",
        "ServiceAccount/acme-runner",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        objects(&env, "configmaps,secrets,serviceaccounts"),
        children
    );

    // The children created in one reconcile are one Event naming all four (one write, not
    // four), and `kubectl describe` shows it.
    let created = [
        "created ConfigMap/NS/acme-settings",
        "created ConfigMap/NS/acme-quota",
        "created Secret/NS/acme-token",
        "created ServiceAccount/NS/acme-runner",
    ]
    .map(|m| m.replace("NS", &env.ns));
    let describe = wait_for_describe(&env, &created).await;
    let created_lines = describe
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Created"))
        .count();
    assert_eq!(
        created_lines, 1,
        "one Created line for the four children:\n{describe}"
    );

    // A parent the rule refuses: a WARN line naming it in separate JSON fields.
    env.apply_yaml(
        "apiVersion: ship.test.ruleop.dev/v1\nkind: Tenant\nmetadata: {name: broken}\nspec: {tier: platinum}\n",
    );
    wait_for("Tenant broken InvalidTier", T, || async {
        ready(&env, TENANT, "broken").1 == "InvalidTier"
    })
    .await;
    let failed = wait_for_log_line(&op, &env.ns, "broken").await;
    assert!(
        matches!(failed["level"].as_str(), Some("WARN" | "ERROR")),
        "{failed}"
    );
    assert_eq!(failed["kind"], "Tenant", "{failed}");
    assert_eq!(failed["reason"], "InvalidTier", "{failed}");
    let log = op.log();
    assert!(
        !log.contains('\u{1b}'),
        "logs to a pipe carry no colour codes:\n{log}"
    );
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Json>(line).is_ok(),
            "--log-format json: every line is one JSON object, got {line:?}"
        );
    }

    // Converged: nothing more is created, and the operator stays silent.
    assert_eq!(
        objects(&env, "configmaps,secrets,serviceaccounts"),
        children
    );
    audit::assert_no_writes("shipped", Duration::from_secs(6), |w| w.namespace == env.ns).await;
}

/// `kubectl describe tenant acme` once it shows every message of `created`.
async fn wait_for_describe(env: &TestEnv, created: &[String]) -> String {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        last = env.kubectl(&["describe", TENANT, "acme"]);
        if created.iter().all(|m| last.contains(m.as_str())) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("kubectl describe does not show each of {created:?}:\n{last}");
}

/// The operator's JSON log line saying the reconcile of `name` in `ns` failed.
async fn wait_for_log_line(op: &Operator, ns: &str, name: &str) -> Json {
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        let found = op
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .find(|l| {
                l["message"] == "reconcile failed" && l["namespace"] == ns && l["name"] == name
            });
        if let Some(line) = found {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "no `reconcile failed` line with namespace={ns} name={name}:\n{}",
        op.log()
    );
}
