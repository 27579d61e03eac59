//! End to end: caches keep what rules read. With the test rule `tests/rules/caches/roster.yaml`
//! the Secrets a Roster only counts and names are watched metadata-only, while the Pods whose
//! `spec.nodeName` it reads are watched in full; templates and status see both as before.
//! When a reloaded rule reads the Secrets' data, their kind is watched in full again.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::audit::{self, Mark};
use support::operator::{Operator, jsonpath, root};
use support::{Scope, TestEnv, install_crds_at, live_uids, wait_for};

const T: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(6);
/// The Roster kind by its full name: the lifecycle tests serve a Roster of their own on the
/// same control plane, and `kubectl get roster` would pick one of the two.
const ROSTER: &str = "rosters.caches.test.ruleop.dev";

fn install_crds() {
    install_crds_at(&root().join("tests/rules/caches/crds"));
}

/// A Pod of `team` pinned to `node` (no scheduling: the node is known in advance).
fn pod(name: &str, team: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\nspec:\n  nodeName: {node}\n  tolerations: [{{operator: Exists}}]\n  containers: [{{name: c, image: busybox:1.36}}]\n"
    )
}

fn secret(name: &str, team: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\nstringData: {{value: {value}}}\n"
    )
}

/// `Kind/name` of every live object the roster rule labelled in the namespace.
fn children(env: &TestEnv) -> Vec<String> {
    live_uids(
        Scope::Namespace(&env.ns),
        "configmaps,secrets,pods",
        Some("ruleop.dev/rule=roster"),
    )
    .into_keys()
    .collect()
}

/// The summary ConfigMap's data; empty while it does not exist yet.
fn summary(env: &TestEnv) -> BTreeMap<String, String> {
    let cm = env.get("configmap", "r1-summary").unwrap_or_default();
    serde_json::from_value(cm["data"].clone()).unwrap_or_default()
}

fn expected(hosts: &str, badges: &str, holders: &str) -> BTreeMap<String, String> {
    [("hosts", hosts), ("badges", badges), ("holders", holders)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_read_by_name_are_cached_metadata_only_until_a_rule_reads_more() {
    install_crds();
    let env = TestEnv::new("e2e-caches").await;
    env.apply_yaml(&pod("m1", "red", "kwok-node-1"));
    env.apply_yaml(&pod("m2", "red", "kwok-node-0"));
    env.apply_yaml(&pod("other", "blue", "kwok-node-2"));
    env.apply_yaml(&secret("b1", "red", "one"));
    env.apply_yaml(&secret("b2", "red", "two"));
    env.apply_yaml(&secret("b3", "blue", "three"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/rules/caches/roster.yaml"),
        dir.path().join("roster.yaml"),
    )
    .unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(
        "apiVersion: caches.test.ruleop.dev/v1\nkind: Roster\nmetadata: {name: r1}\nspec: {team: red}\n",
    );

    // The pods' spec.nodeName reaches the template and the status (their kind is whole);
    // the Secrets' names and count too (their kind is metadata-only).
    let want = expected("kwok-node-1;kwok-node-0;", "2", "b1;b2;");
    wait_for("summary rendered", T, || async { summary(&env) == want }).await;
    wait_for("status projected", T, || async {
        jsonpath(&env, ROSTER, "r1", "{.status.hosts}") == r#"["kwok-node-0","kwok-node-1"]"#
            && jsonpath(&env, ROSTER, "r1", "{.status.badges}") == r#"["b1","b2"]"#
    })
    .await;
    let log = op.log();
    let watching = |kind: &str| {
        log.lines()
            .find(|l| l.contains("watching") && l.contains(&format!("kind={kind} ")))
            .unwrap_or_else(|| panic!("no watch of {kind} in the log:\n{log}"))
            .to_string()
    };
    assert!(
        watching("Secret").contains("metadata_only=true"),
        "{}",
        watching("Secret")
    );
    assert!(
        watching("Pod").contains("metadata_only=false"),
        "{}",
        watching("Pod")
    );
    assert_eq!(children(&env), ["ConfigMap/r1-summary"]);

    // A Secret's data changes: nothing the rule reads changed, so nothing is written.
    let mark = Mark::now();
    env.apply_yaml(&secret("b1", "red", "changed"));
    tokio::time::sleep(IDLE).await;
    let w = mark.operator_writes(&env.ns);
    assert!(w.is_empty(), "writes while idle: {}", audit::describe(&w));

    // A new member Secret and a moved Pod are seen through both caches.
    env.apply_yaml(&secret("b0", "red", "zero"));
    env.kubectl(&["delete", "pod", "m1", "--grace-period=0", "--force"]);
    let want = expected("kwok-node-0;", "3", "b0;b1;b2;");
    wait_for("summary follows", T, || async { summary(&env) == want }).await;
    wait_for("status follows", T, || async {
        jsonpath(&env, ROSTER, "r1", "{.status.hosts}") == r#"["kwok-node-0"]"#
            && jsonpath(&env, ROSTER, "r1", "{.status.badges}") == r#"["b0","b1","b2"]"#
    })
    .await;
    assert_eq!(children(&env), ["ConfigMap/r1-summary"]);
    audit::assert_no_writes("caches", IDLE, |w| w.namespace == env.ns).await;

    // The rule is changed to read the Secrets' data: their kind is watched in full again,
    // and the data reaches the template (a metadata-only cache would render it empty).
    let source = std::fs::read_to_string(root().join("tests/rules/caches/roster.yaml")).unwrap();
    let holders =
        r#"          holders: "{% for b in related.badges %}{{ b.metadata.name }};{% endfor %}""#;
    assert!(source.contains(holders), "the test rule changed");
    let reads_data = source.replace(
        holders,
        &format!(
            "{holders}\n          values: \"{{% for b in related.badges %}}{{{{ b.data.value }}}};{{% endfor %}}\""
        ),
    );
    // Written aside and renamed, so the operator never reads half a file.
    std::fs::write(dir.path().join("roster.tmp"), reads_data).unwrap();
    std::fs::rename(
        dir.path().join("roster.tmp"),
        dir.path().join("roster.yaml"),
    )
    .unwrap();
    // Base64 of "zero", "changed" and "two", in the holders' order.
    let mut want = expected("kwok-node-0;", "3", "b0;b1;b2;");
    want.insert("values".into(), "emVybw==;Y2hhbmdlZA==;dHdv;".into());
    wait_for("the Secrets' data rendered", T, || async {
        summary(&env) == want
    })
    .await;
    let log = op.log();
    let last_watch = log
        .lines()
        .rfind(|l| l.contains("watching") && l.contains("kind=Secret "))
        .unwrap_or_default();
    assert!(last_watch.contains("metadata_only=false"), "{log}");
    assert_eq!(children(&env), ["ConfigMap/r1-summary"]);
    audit::assert_no_writes("caches", IDLE, |w| w.namespace == env.ns).await;
}
