//! Helpers of the lifecycle scenarios: the `Roster` test kind and rules, the child set of a
//! rule, and the operator's writes from the audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::audit::{self, Mark};
use crate::support::operator::{jsonpath, root};
use crate::support::{Scope, TestEnv, install_crds_at, live_uids, wait_for};

pub const T: Duration = Duration::from_secs(120);
/// How long the operator must stay silent to count as idle.
pub const IDLE: Duration = Duration::from_secs(6);
/// Every kind the rules used here create.
pub const CHILD_KINDS: &str = "deployments,services,pods,configmaps,statefulsets,cronjobs,jobs";
/// The Roster kind by its full name: the caches tests serve a Roster of their own on the same
/// control plane, and `kubectl get roster` would pick one of the two.
pub const ROSTER: &str = "rosters.lifecycle.test.ruleop.dev";

/// The resource kubectl gets for a parent kind named like its rule: `roster` is the Roster by
/// its full name ([`ROSTER`]), the others are unique on the control plane.
pub fn resource(kind: &str) -> &str {
    if kind == "roster" { ROSTER } else { kind }
}

/// Installs the `Roster` test CRD once per test binary.
pub fn install_roster_crd() {
    install_crds_at(&root().join("tests/rules/lifecycle/crds"));
}

pub fn reference(op: &str) -> PathBuf {
    root().join(format!("rules/{op}.yaml"))
}

pub fn picket_rule() -> PathBuf {
    root().join("tests/rules/lifecycle/picket.yaml")
}

/// The Events (`events.k8s.io/v1`) of the namespace about the object named `name`.
pub fn events_about(env: &TestEnv, name: &str) -> Vec<Json> {
    let list: Json =
        serde_json::from_str(&env.kubectl(&["get", "events.v1.events.k8s.io", "-o", "json"]))
            .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .cloned()
        .collect()
}

pub fn roster_rule() -> PathBuf {
    root().join("tests/rules/lifecycle/roster.yaml")
}

/// A rules directory holding copies of `files`.
pub fn rules_dir(files: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    dir
}

/// Replaces `name` in `dir` atomically (the operator never reads half a file).
pub fn publish(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn uid(env: &TestEnv, what: &str, name: &str) -> String {
    jsonpath(env, what, name, "{.metadata.uid}")
}

/// Every live object of the namespace that ruleop labelled for `rule`: `Kind/name` → uid.
pub fn children(env: &TestEnv, rule: &str) -> BTreeMap<String, String> {
    let selector = format!("ruleop.dev/rule={rule}");
    live_uids(Scope::Namespace(&env.ns), CHILD_KINDS, Some(&selector))
}

pub fn names(children: &BTreeMap<String, String>) -> BTreeSet<String> {
    children.keys().cloned().collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The operator's writes to the namespace after `mark`, Events included.
pub fn operator_writes(mark: &Mark, ns: &str) -> Vec<audit::Write> {
    mark.operator_writes_and_events_where(|w| w.namespace == ns)
}

/// Waits until the operator has written nothing to the namespace for [`IDLE`].
pub async fn settle(env: &TestEnv) {
    let mut last = String::new();
    for _ in 0..10 {
        let mark = Mark::now();
        tokio::time::sleep(IDLE).await;
        let writes = operator_writes(&mark, &env.ns);
        if writes.is_empty() {
            return;
        }
        last = audit::describe(&writes);
    }
    panic!("the operator never went idle; last writes:\n{last}");
}

/// Asserts the operator writes nothing to the namespace (Events included) for [`IDLE`].
pub async fn assert_idle(env: &TestEnv, what: &str) {
    audit::assert_no_writes_or_events(what, IDLE, |w| w.namespace == env.ns).await;
}

pub fn roster(name: &str, seats: u32) -> String {
    format!(
        "apiVersion: lifecycle.test.ruleop.dev/v1\nkind: Roster\nmetadata: {{name: {name}}}\n\
         spec: {{seats: {seats}, motto: \"it's \\\"ours\\\": {{yes}}\"}}\n"
    )
}

/// A ConfigMap the test owns, selected by the roster as a member.
pub fn member(name: &str, roster: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{roster: {roster}}}}}\n\
         data: {{role: crew}}\n"
    )
}

/// Waits until `rule`'s children in the namespace are exactly `expected`.
pub async fn expect_children(env: &TestEnv, rule: &str, expected: &BTreeSet<String>) {
    wait_for(
        &format!("{rule} children exactly {expected:?}"),
        T,
        || async { &names(&children(env, rule)) == expected },
    )
    .await;
}

/// The statuses of `parents` (conditions with their transition times) and the children of
/// their rules (with uids), to compare before and after a restart.
pub fn state(env: &TestEnv, parents: &[(&str, &str)]) -> Vec<(Json, BTreeMap<String, String>)> {
    parents
        .iter()
        .map(|(kind, name)| {
            let status = env.get(resource(kind), name).unwrap()["status"].clone();
            // Each parent's kind is its rule's name here.
            (status, children(env, kind))
        })
        .collect()
}

/// A rule for `Roster`s (shaped unlike the reference ones): a Deployment scaled to the
/// seats and a ConfigMap tally; `handed_over` leaves replicas and the tally to others.
pub fn squad_rule(handed_over: bool) -> String {
    let (web, tally) = if handed_over {
        (
            "      managedElsewhere: [spec.replicas]\n",
            "      managedElsewhere: [data.tally]\n",
        )
    } else {
        ("", "")
    };
    format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: squad}}
spec:
  parent: {{apiVersion: lifecycle.test.ruleop.dev/v1, kind: Roster}}
  allow:
    - {{apiVersion: apps/v1, kind: Deployment}}
    - {{apiVersion: v1, kind: ConfigMap}}
  children:
    - name: web
      apiVersion: apps/v1
      kind: Deployment
{web}      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}-web"}}
        spec:
          replicas: {{{{ parent.spec.seats }}}}
          selector: {{matchLabels: {{squad: "{{{{ parent.metadata.name }}}}"}}}}
          template:
            metadata: {{labels: {{squad: "{{{{ parent.metadata.name }}}}"}}}}
            spec:
              containers: [{{name: web, image: "nginx:1.27"}}]
    - name: tally
      apiVersion: v1
      kind: ConfigMap
{tally}      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}-tally"}}
        data:
          tally: "{{{{ parent.spec.seats * 10 }}}}"
          motto: "{{{{ parent.spec.motto }}}}"
"#
    )
}

/// Whether `manager`'s apply owns the field `path` (`f:` keys) of the object.
pub fn applies(obj: &Json, manager: &str, path: &[&str]) -> bool {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == manager && e["operation"] == "Apply")
        .any(|e| {
            path.iter()
                .try_fold(&e["fieldsV1"], |f, p| f.get(format!("f:{p}")))
                .is_some()
        })
}
