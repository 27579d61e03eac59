//! End to end: the operator runs with a ServiceAccount token bound only to the ClusterRole
//! `ruleop rbac` prints, and that is enough for every reference operator; a rule whose child
//! kind the role does not grant gets a clear `Forbidden` condition, not a crash or a hot loop.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::operator::{Operator, install_crds, ready, root, ruleop_ok};
use support::{TestEnv, kubectl, kubectl_with_input, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(90);

/// A kubeconfig for the shared cluster that authenticates with `token`.
pub(crate) fn token_kubeconfig(dir: &Path, token: &str) -> std::path::PathBuf {
    let admin: serde_json::Value =
        ruleop_lang::yaml::from_str(&std::fs::read_to_string(support::kubeconfig()).unwrap())
            .unwrap();
    let mut config = admin.clone();
    config["users"] =
        ruleop_lang::yaml::from_str(&format!("[{{name: sa, user: {{token: {token}}}}}]")).unwrap();
    let context = config["contexts"][0]["name"].clone();
    config["contexts"][0]["context"]["user"] = "sa".into();
    config["current-context"] = context;
    let path = dir.join("kubeconfig");
    std::fs::write(&path, ruleop_lang::yaml::to_string(&config)).unwrap();
    path
}

/// A ServiceAccount in `env`'s namespace bound to `ruleop rbac`'s ClusterRole for `rules`;
/// returns a kubeconfig with its token.
fn service_account(env: &TestEnv, rules: &Path, dir: &Path) -> std::path::PathBuf {
    let role = format!("ruleop-test-{}", unique_suffix());
    let role_yaml = ruleop_ok(&["rbac", "--name", &role, "--rules", rules.to_str().unwrap()]);
    kubectl_with_input(&["apply", "-f", "-"], Some(&role_yaml));
    env.delete_on_drop("clusterrole", &role);
    env.kubectl(&["create", "serviceaccount", "ruleop"]);
    kubectl(&[
        "create",
        "clusterrolebinding",
        &role,
        "--clusterrole",
        &role,
        "--serviceaccount",
        &format!("{}:ruleop", env.ns),
    ]);
    env.delete_on_drop("clusterrolebinding", &role);
    let token = env.kubectl(&["create", "token", "ruleop", "--duration=1h"]);
    token_kubeconfig(dir, token.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_cluster_role_is_enough_for_every_reference_operator() {
    install_crds();
    let env = TestEnv::new("e2e-rbac").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account(&env, &root().join("rules"), dir.path());
    // The token really is limited: it cannot read Secrets.
    let denied = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", &env.ns, "get", "secrets"])
        .output()
        .unwrap();
    assert!(
        !denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("forbidden")
    );

    let op = Operator::start_as(
        &env.ns,
        &root().join("rules"),
        &["--leader-elect", "--leader-elect-namespace", &env.ns],
        &kubeconfig,
    );
    env.kubectl(&["apply", "-f", root().join("samples").to_str().unwrap()]);
    for (kind, name) in [
        ("whalesay", "example-whalesay"),
        ("podset", "example-podset"),
        ("etcdcluster", "prod-etcd"),
        ("myapp", "myapp-sample"),
        ("memcached", "example-memcached"),
        ("nginxserver", "example-nginx"),
    ] {
        wait_for(
            &format!("{kind} Ready with the ServiceAccount's token"),
            T,
            || async { ready(&env, kind, name).0 == "True" },
        )
        .await;
    }
    assert!(
        op.log().contains("became leader"),
        "the lease is granted too"
    );
    // Deletion with cleanup (Jobs, finalizers on the parent) works with the same rights.
    env.kubectl(&["delete", "etcdcluster", "prod-etcd", "--timeout=60s"]);
    assert!(
        !op.log().contains("Forbidden"),
        "no permission was missing:\n{}",
        op.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_kind_outside_the_role_is_a_forbidden_condition_not_a_hot_loop() {
    install_crds();
    let env = TestEnv::new("e2e-forbid").await;
    let dir = tempfile::tempdir().unwrap();
    // The role is generated from the reference rules only...
    let kubeconfig = service_account(&env, &root().join("rules"), dir.path());
    // ...but the operator runs a MyApp rule that also creates a Secret.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let myapp = std::fs::read_to_string(root().join("rules/myapp.yaml")).unwrap().replace(
        "  allow:\n    - {apiVersion: apps/v1, kind: Deployment}\n  children:\n",
        "  allow:\n    - {apiVersion: apps/v1, kind: Deployment}\n    - {apiVersion: v1, kind: Secret}\n  children:\n    - name: secret\n      apiVersion: v1\n      kind: Secret\n      template: |\n        metadata: {name: {{ parent.metadata.name ~ \"-secret\" }}}\n        stringData: {token: x}\n",
    );
    std::fs::write(rules.join("myapp.yaml"), myapp).unwrap();
    let op = Operator::start_as(&env.ns, &rules, &[], &kubeconfig);
    env.kubectl(&[
        "apply",
        "-f",
        root().join("samples/myapp.yaml").to_str().unwrap(),
    ]);
    wait_for("Forbidden condition", T, || async {
        ready(&env, "myapp", "myapp-sample") == ("False".into(), "Forbidden".into())
    })
    .await;
    let message = env.kubectl(&[
        "get",
        "myapp",
        "myapp-sample",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
    ]);
    assert!(
        message.contains("Secret") && message.contains("forbidden"),
        "{message}"
    );
    let before = op.counter("ruleop_reconciles_total", "rule=\"myapp\"");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = op.counter("ruleop_reconciles_total", "rule=\"myapp\"");
    assert!(after - before <= 2.0, "no hot loop: {before} -> {after}");
    assert!(
        op.metrics()
            .contains("ruleop_reconcile_errors_total{rule=\"myapp\",reason=\"Forbidden\"}")
    );
}
