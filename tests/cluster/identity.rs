//! End to end: one identity per rule. A rule with `spec.serviceAccount` writes as that
//! ServiceAccount (the audit log records the impersonated user); what the account's Role does
//! not grant fails with `Forbidden` on the parent, naming the account, backs off instead of
//! storming, leaves a rule without an account in the same operator unaffected, and heals
//! once the Role grants it.

use crate::support;

use std::time::Duration;

use support::audit::{self, Mark, Write};
use support::operator::{Operator, jsonpath, ready};
use support::{TestEnv, kubectl_with_input, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(60);
/// Long enough for the failing parent's backoff to grow past a few seconds.
const SETTLE: Duration = Duration::from_secs(5);
/// The window the failing rule's retries are counted over.
const WINDOW: Duration = Duration::from_secs(20);
/// At most this many retries in [`WINDOW`]: exponential backoff with its jitter gives one to
/// four; a storm (a retry per watch event or a fixed short delay) gives dozens.
const MAX_RETRIES: usize = 6;
/// Backoff is capped at 5 minutes, but a grant made within a minute of the first failure is
/// picked up by a retry within about a minute.
const HEAL: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(10);

/// A namespaced CRD `kind` in `group`, with a status subresource.
fn crd(group: &str, kind: &str) -> String {
    let plural = format!("{}s", kind.to_lowercase());
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#,
        singular = kind.to_lowercase()
    )
}

fn install_crd(env: &TestEnv, group: &str, kind: &str) {
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd(group, kind)));
    let name = format!("{}s.{group}", kind.to_lowercase());
    env.delete_on_drop("crd", &name);
    support::kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{name}"),
    ]);
}

/// A rule for `Site` writing as `site-writer`: a Service (first, in rule order) and a
/// ConfigMap per Site.
fn site_rule(group: &str, ns: &str) -> String {
    format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: site}}
spec:
  parent: {{apiVersion: {group}/v1, kind: Site}}
  serviceAccount: {{name: site-writer, namespace: {ns}}}
  allow: [{{apiVersion: v1, kind: Service}}, {{apiVersion: v1, kind: ConfigMap}}]
  children:
    - name: service
      apiVersion: v1
      kind: Service
      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}"}}
        spec:
          ports: [{{port: 80}}]
          selector: {{app: "{{{{ parent.metadata.name }}}}"}}
    - name: config
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}"}}
        data: {{site: "{{{{ parent.metadata.name }}}}"}}
"#
    )
}

/// A rule for `Plain` without an account: it writes as the operator, as before.
fn plain_rule(group: &str) -> String {
    format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: plain}}
spec:
  parent: {{apiVersion: {group}/v1, kind: Plain}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  children:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: "plain-{{{{ parent.metadata.name }}}}"}}
        data: {{plain: "yes"}}
"#
    )
}

/// The account's Role: everything the Site rule writes, but creating Services unless
/// `create_services`.
fn role(group: &str, create_services: bool) -> String {
    let services = if create_services {
        "[create, patch, delete]"
    } else {
        "[patch, delete]"
    };
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: site-writer}}
rules:
  - {{apiGroups: [{group}], resources: [sites, sites/status], verbs: [patch]}}
  - {{apiGroups: [{group}], resources: [sites/finalizers], verbs: [update]}}
  - {{apiGroups: [""], resources: [configmaps], verbs: [create, patch, delete]}}
  - {{apiGroups: [""], resources: [services], verbs: {services}}}
"#
    )
}

fn account(env: &TestEnv, group: &str) {
    env.apply_yaml(&format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: site-writer}}
---
{role}---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: site-writer}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: site-writer}}
subjects: [{{kind: ServiceAccount, name: site-writer, namespace: {ns}}}]
"#,
        role = role(group, false),
        ns = env.ns
    ));
}

fn condition_message(env: &TestEnv, what: &str, name: &str) -> String {
    jsonpath(
        env,
        what,
        name,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    )
}

/// ruleop's requests (failed ones too) in `ns` after `mark`, Events and Leases aside.
fn requests(mark: &Mark, ns: &str) -> Vec<Write> {
    mark.writes()
        .into_iter()
        .filter(|w| {
            w.by_replica() && w.namespace == ns && w.resource != "events" && w.resource != "leases"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_writes_go_out_as_its_service_account_and_rbac_bounds_them() {
    let env = TestEnv::new("e2e-identity").await;
    let group = format!("ident{}.test.ruleop.dev", unique_suffix());
    // Full names: other tests' CRDs may have the plural `sites` too.
    let sites = format!("sites.{group}");
    install_crd(&env, &group, "Site");
    install_crd(&env, &group, "Plain");
    account(&env, &group);
    let user = format!("system:serviceaccount:{}:site-writer", env.ns);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("site.yaml"), site_rule(&group, &env.ns)).unwrap();
    std::fs::write(dir.path().join("plain.yaml"), plain_rule(&group)).unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    wait_for("both rules active", T, || async {
        op.log().matches("rule active").count() == 2
    })
    .await;

    let mark = Mark::now();
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Site\nmetadata: {{name: s1}}\n---\n\
         apiVersion: {group}/v1\nkind: Plain\nmetadata: {{name: p1}}\n"
    ));

    // The rule without an account is unaffected.
    wait_for("the plain rule's child", T, || async {
        jsonpath(&env, "configmap", "plain-p1", "{.data.plain}") == "yes"
    })
    .await;
    wait_for("the plain parent Ready", T, || async {
        ready(&env, &format!("plains.{group}"), "p1").0 == "True"
    })
    .await;

    // The Service the account may not create: Forbidden, naming the account, verb and kind.
    wait_for("Forbidden on the site", T, || async {
        ready(&env, &sites, "s1") == ("False".into(), "Forbidden".into())
    })
    .await;
    let message = condition_message(&env, &sites, "s1");
    for part in [
        user.as_str(),
        "cannot create",
        "services",
        "Service",
        &format!("ServiceAccount {}/site-writer", env.ns),
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert!(env.get("service", "s1").is_none(), "no Service exists");
    assert!(
        env.get("configmap", "s1").is_none(),
        "nothing after the refused write in rule order is created"
    );
    wait_for("a Forbidden Event on the site", T, || async {
        let events = env.kubectl(&["get", "events", "-o", "json"]);
        let events: serde_json::Value = serde_json::from_str(&events).unwrap();
        events["items"].as_array().unwrap().iter().any(|e| {
            e["involvedObject"]["name"] == "s1"
                && e["reason"] == "Forbidden"
                && e["message"].as_str().unwrap_or("").contains(&user)
        })
    })
    .await;

    // Every write for the Site went out as its account; the Plain rule's as the operator.
    let seen = requests(&mark, &env.ns);
    let site =
        |w: &&Write| w.resource.starts_with("sites") || w.resource == "services" || w.name == "s1";
    let site_writes: Vec<&Write> = seen.iter().filter(site).collect();
    assert!(
        site_writes.iter().all(|w| w.impersonated_user == user),
        "a write for the Site not made as its account:\n{}",
        audit::describe(&seen)
    );
    assert!(
        site_writes
            .iter()
            .any(|w| w.resource == "services" && w.code == 403),
        "the refused Service apply is audited as the account:\n{}",
        audit::describe(&seen)
    );
    assert!(
        site_writes
            .iter()
            .any(|w| w.resource == "sites" && w.subresource == "status" && w.succeeded()),
        "the account wrote the Forbidden status:\n{}",
        audit::describe(&seen)
    );
    assert!(
        seen.iter()
            .filter(|w| w.name == "plain-p1" || w.resource.starts_with("plains"))
            .all(|w| w.impersonated_user.is_empty()),
        "the rule without an account writes as the operator:\n{}",
        audit::describe(&seen)
    );

    // Settled: no successful write, and the refused one is retried with backoff, not a storm.
    tokio::time::sleep(SETTLE).await;
    let idle = Mark::now();
    tokio::time::sleep(WINDOW).await;
    let seen = requests(&idle, &env.ns);
    let succeeded: Vec<Write> = seen.iter().filter(|w| w.succeeded()).cloned().collect();
    assert!(
        succeeded.is_empty(),
        "writes while settled:\n{}",
        audit::describe(&succeeded)
    );
    let retries = seen
        .iter()
        .filter(|w| w.resource == "services" && w.code == 403)
        .count();
    eprintln!("the refused write was retried {retries} times in {WINDOW:?}");
    assert!(
        retries <= MAX_RETRIES && retries == seen.len(),
        "{retries} retries in {WINDOW:?}:\n{}",
        audit::describe(&seen)
    );

    // The grant heals it, with no other change.
    let healing = Mark::now();
    env.apply_yaml(&role(&group, true));
    wait_for("the Service once granted", HEAL, || async {
        env.get("service", "s1").is_some()
    })
    .await;
    wait_for("the site Ready", T, || async {
        ready(&env, &sites, "s1").0 == "True"
    })
    .await;
    assert_eq!(jsonpath(&env, "configmap", "s1", "{.data.site}"), "s1");
    let seen = requests(&healing, &env.ns);
    let created: Vec<&Write> = seen
        .iter()
        .filter(|w| (w.resource == "services" || w.resource == "configmaps") && w.succeeded())
        .collect();
    assert!(
        created.len() >= 2 && created.iter().all(|w| w.impersonated_user == user),
        "the children are created as the account:\n{}",
        audit::describe(&seen)
    );
    audit::assert_no_writes("healed", IDLE, |w| w.namespace == env.ns).await;
    drop(op);
}

/// The operator runs as a ServiceAccount holding only what `ruleop rbac` prints for a rule
/// with an account: its own ClusterRole (reads of the rule's kinds, no writes) and the grant
/// to impersonate exactly that account; the account holds the rule's writes. That is enough:
/// the children are created, as the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_ruleop_rbac_prints_are_enough_for_a_rule_with_an_account() {
    let env = TestEnv::new("e2e-identity-rbac").await;
    let group = format!("identrbac{}.test.ruleop.dev", unique_suffix());
    let sites = format!("sites.{group}");
    install_crd(&env, &group, "Site");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("site.yaml"), site_rule(&group, &env.ns)).unwrap();

    let name = format!("ruleop-test-{}", unique_suffix());
    let operator = format!("{}/ruleop", env.ns);
    let printed = support::operator::ruleop_ok(&[
        "rbac",
        "--name",
        &name,
        "--rules",
        rules.to_str().unwrap(),
        "--service-account",
        &operator,
    ]);
    env.kubectl(&["create", "serviceaccount", "ruleop"]);
    env.kubectl(&["create", "serviceaccount", "site-writer"]);
    kubectl_with_input(&["apply", "-f", "-"], Some(&printed));
    for role in [name.clone(), format!("{name}-rule-site")] {
        env.delete_on_drop("clusterrole", &role);
        env.delete_on_drop("clusterrolebinding", &role);
    }
    support::kubectl(&[
        "create",
        "clusterrolebinding",
        &name,
        "--clusterrole",
        &name,
        "--serviceaccount",
        &format!("{}:ruleop", env.ns),
    ]);
    let can = |who: &str| {
        support::kubectl(&[
            "auth",
            "can-i",
            "create",
            "services",
            "-n",
            &env.ns,
            "--as",
            &format!("system:serviceaccount:{}:{who}", env.ns),
        ])
        .trim()
        .to_string()
    };
    let refused = support::try_kubectl(
        &[
            "auth",
            "can-i",
            "create",
            "services",
            "-n",
            &env.ns,
            "--as",
            &format!("system:serviceaccount:{}:ruleop", env.ns),
        ],
        None,
    );
    assert!(
        refused.is_err() || refused.as_deref().map(str::trim) == Ok("no"),
        "the operator itself may not create Services: {refused:?}"
    );
    assert_eq!(can("site-writer"), "yes", "the account may");

    let token = env.kubectl(&["create", "token", "ruleop", "--duration=1h"]);
    let kubeconfig = crate::rbac::token_kubeconfig(dir.path(), token.trim());
    let op = Operator::start_as(&env.ns, &rules, &[], &kubeconfig);
    let mark = Mark::now();
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Site\nmetadata: {{name: s1}}\n"
    ));
    let deadline = std::time::Instant::now() + T;
    while ready(&env, &sites, "s1").0 != "True" {
        assert!(
            std::time::Instant::now() < deadline,
            "the site is not Ready: {:?}\n{}",
            condition_message(&env, &sites, "s1"),
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(env.get("service", "s1").is_some() && env.get("configmap", "s1").is_some());
    let user = format!("system:serviceaccount:{}:site-writer", env.ns);
    let seen = requests(&mark, &env.ns);
    // A write may meet a grant the API server's RBAC cache has not seen yet (a 403, retried).
    let created = |resource: &str| {
        seen.iter()
            .any(|w| w.resource == resource && w.name == "s1" && w.succeeded())
    };
    assert!(
        created("services")
            && created("configmaps")
            && seen.iter().all(|w| w.impersonated_user == user),
        "every write made as the account:\n{}",
        audit::describe(&seen)
    );
    drop(op);
}

/// A rule naming no account namespace, in an operator that knows its own neither
/// (`$POD_NAMESPACE`, `--rules-configmap`): the rule waits, saying where and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_a_namespace_waits_when_the_operator_knows_none() {
    if std::env::var_os("POD_NAMESPACE").is_some() {
        eprintln!("skipped: $POD_NAMESPACE is set, so the operator knows its namespace");
        return;
    }
    let env = TestEnv::new("e2e-identity-ns").await;
    let group = format!("identns{}.test.ruleop.dev", unique_suffix());
    install_crd(&env, &group, "Site");
    let dir = tempfile::tempdir().unwrap();
    let rule = site_rule(&group, &env.ns).replace(
        &format!("{{name: site-writer, namespace: {}}}", env.ns),
        "{name: site-writer}",
    );
    std::fs::write(dir.path().join("site.yaml"), rule).unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    wait_for("the rule waits for a namespace", T, || async {
        let log = op.log();
        log.contains("site.yaml:6:") && log.contains("spec.serviceAccount.namespace is required")
    })
    .await;
    assert!(op.metrics().contains("state=\"waiting\""));
    assert!(!op.log().contains("rule active"));
}
