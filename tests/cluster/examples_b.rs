//! End to end: the examples `bluegreen`, `database`, `team-rbac` and `builtin` against the local control plane.

use crate::support;

use std::time::Duration;

use support::examples::{assert_passes_offline, read, rule_file};
use support::operator::{Operator, jsonpath, ready, root, ruleop};
use support::{
    Scope, TestEnv, audit, kubectl, kubectl_with_input, live_uids, try_kubectl, wait_for,
};

const T: Duration = Duration::from_secs(90);
/// The examples of this binary, each checked and tested offline below.
const EXAMPLES: &[&str] = &["bluegreen", "database", "team-rbac", "builtin"];

/// Installs the CRD that `ruleop crd` generates from the example's `spec.crd`.
fn install_generated_crd(name: &str) {
    let (ok, crd) = ruleop(&["crd", "--rule", rule_file(name).to_str().unwrap()]);
    assert!(ok, "ruleop crd {name}: {crd}");
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    kubectl_with_input(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "-",
        ],
        Some(&crd),
    );
}

/// `kind/name` of every live (not terminating) object of `kinds` carrying the rule's label, sorted.
fn owned(env: &TestEnv, kinds: &str, rule: &str) -> Vec<String> {
    let selector = format!("ruleop.dev/rule={rule}");
    live_uids(Scope::Namespace(&env.ns), kinds, Some(&selector))
        .into_keys()
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Asserts that the operator writes nothing in `ns` for a few seconds.
async fn assert_idle(ns: &str) {
    assert_idle_where(|w| w.namespace == ns).await;
}

/// Asserts that the operator makes none of the writes `keep` selects for a few seconds.
async fn assert_idle_where(keep: impl Fn(&audit::Write) -> bool) {
    audit::assert_no_writes("idle", Duration::from_secs(6), keep).await;
}

#[test]
fn examples_pass_check_and_their_rule_tests() {
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    for name in EXAMPLES {
        assert_passes_offline(name);
        // The docs list what each of these cannot express.
        assert!(
            docs.contains(&format!("| `{name}` (")),
            "docs/rules.md does not list what examples/{name} cannot express"
        );
        // `builtin` governs the built-in Service: it has no CRD to generate.
        if *name != "builtin" {
            let (ok, out) = ruleop(&["crd", "--rule", rule_file(name).to_str().unwrap()]);
            assert!(
                ok && out.contains("CustomResourceDefinition"),
                "ruleop crd {name}:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_switches_the_active_service_and_keeps_both_colours() {
    install_generated_crd("bluegreen");
    let env = TestEnv::new("ex-bluegreen").await;
    let _op = Operator::start_with_rules(&env.ns, &rule_file("bluegreen"), &[]);
    env.apply_yaml(&read("bluegreen", "sample.yaml"));
    let all = "deployments,services";
    let selector = |svc: &str| jsonpath(&env, "service", svc, "{.spec.selector.colour}");
    // Not expressible, so not tested: scaleDownDelaySeconds, autoPromotionSeconds, analysis
    // runs, automatic rollback (see the rule's header and docs/rules.md).

    // Create: two Deployments (one per colour) and two Services, nothing else.
    wait_for("BlueGreen Ready", T, || async {
        ready(&env, "bluegreen", "shop").0 == "True"
    })
    .await;
    let children = strings(&[
        "Deployment/shop-blue",
        "Deployment/shop-green",
        "Service/shop-active",
        "Service/shop-preview",
    ]);
    assert_eq!(owned(&env, all, "bluegreen"), children);
    assert_eq!(selector("shop-active"), "blue");
    assert_eq!(selector("shop-preview"), "green");
    assert_eq!(
        jsonpath(&env, "bluegreen", "shop", "{.status.activeImage}"),
        "nginx:1.25"
    );
    assert_idle(&env.ns).await;

    // Change: promoting green switches both selectors; the Deployments keep their uids.
    let green_uid = jsonpath(&env, "deployment", "shop-green", "{.metadata.uid}");
    env.kubectl(&[
        "patch",
        "bluegreen",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"active":"green"}}"#,
    ]);
    wait_for("active Service selects green", T, || async {
        selector("shop-active") == "green" && selector("shop-preview") == "blue"
    })
    .await;
    wait_for("status follows the promotion", T, || async {
        jsonpath(&env, "bluegreen", "shop", "{.status.activeImage}") == "nginx:1.27"
            && jsonpath(&env, "bluegreen", "shop", "{.status.previewColor}") == "blue"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "deployment", "shop-green", "{.metadata.uid}"),
        green_uid
    );
    assert_eq!(owned(&env, all, "bluegreen"), children);

    // Change: scaling the inactive colour down to zero.
    env.kubectl(&[
        "patch",
        "bluegreen",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"scaleDownInactive":true}}"#,
    ]);
    wait_for("inactive blue scaled to 0", T, || async {
        jsonpath(&env, "deployment", "shop-blue", "{.spec.replicas}") == "0"
            && jsonpath(&env, "deployment", "shop-green", "{.spec.replicas}") == "2"
    })
    .await;

    // Drift: a hand edit of the active selector and a deleted preview Service are put back.
    env.kubectl(&[
        "patch",
        "service",
        "shop-active",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"selector":{"colour":"blue"}}}"#,
    ]);
    env.kubectl(&["delete", "service", "shop-preview"]);
    wait_for("hand edits put back", T, || async {
        selector("shop-active") == "green" && selector("shop-preview") == "blue"
    })
    .await;
    wait_for("Ready again", T, || async {
        ready(&env, "bluegreen", "shop").0 == "True"
    })
    .await;
    assert_eq!(owned(&env, all, "bluegreen"), children);
    assert_idle(&env.ns).await;

    // Delete: garbage collection removes every child.
    env.kubectl(&["delete", "bluegreen", "shop"]);
    wait_for("no children left", T, || async {
        owned(&env, all, "bluegreen").is_empty() && env.get("deployment", "shop-blue").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_waits_for_its_secret_and_rolls_when_it_changes() {
    install_generated_crd("database");
    // Not expressible, so not tested: failover, switchover, generated passwords, replication
    // and backups (see the rule's header and docs/rules.md).
    let env = TestEnv::new("ex-database").await;
    let _op = Operator::start_with_rules(&env.ns, &rule_file("database"), &[]);
    let all = "statefulsets,services";
    let checksum = |sts: &str| {
        jsonpath(
            &env,
            "statefulset",
            sts,
            "{.spec.template.metadata.annotations.checksum/credentials}",
        )
    };

    // Without its Secret: LookupMissing and no children at all.
    env.apply_yaml(&read("database", "sample.yaml"));
    wait_for("LookupMissing", T, || async {
        ready(&env, "database", "orders") == ("False".into(), "LookupMissing".into())
    })
    .await;
    assert_eq!(owned(&env, all, "database"), Vec::<String>::new());

    // Create: the Secret appears, the whole set follows.
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "orders-credentials",
        "--from-literal=password=s3cret",
    ]);
    wait_for("Database Ready", T, || async {
        ready(&env, "database", "orders").0 == "True"
    })
    .await;
    let full = strings(&[
        "Service/orders",
        "Service/orders-ro",
        "Service/orders-rw",
        "StatefulSet/orders-primary",
        "StatefulSet/orders-replica",
    ]);
    assert_eq!(owned(&env, all, "database"), full);
    assert_eq!(
        jsonpath(&env, "service", "orders-rw", "{.spec.selector.role}"),
        "primary"
    );
    assert_eq!(
        jsonpath(&env, "database", "orders", "{.status.primary}"),
        "orders-primary-0"
    );
    assert_eq!(
        jsonpath(&env, "database", "orders", "{.status.readyReplicas}"),
        "2"
    );
    assert_idle(&env.ns).await;

    // Change of the looked-up Secret: both pod templates get the new checksum.
    let before = checksum("orders-primary");
    assert_eq!(before.len(), 64, "checksum annotation: {before:?}");
    env.kubectl(&[
        "patch",
        "secret",
        "orders-credentials",
        "--type",
        "merge",
        "-p",
        r#"{"stringData":{"password":"n3w"}}"#,
    ]);
    wait_for("new password rolls both StatefulSets", T, || async {
        let now = checksum("orders-primary");
        now != before && now.len() == 64 && checksum("orders-replica") == now
    })
    .await;

    // Drift: the write Service pointed at the replicas by hand, the primary deleted.
    env.kubectl(&[
        "patch",
        "service",
        "orders-rw",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"selector":{"role":"replica"}}}"#,
    ]);
    env.kubectl(&["delete", "statefulset", "orders-primary"]);
    wait_for("hand edits put back", T, || async {
        jsonpath(&env, "service", "orders-rw", "{.spec.selector.role}") == "primary"
            && jsonpath(&env, "statefulset", "orders-primary", "{.spec.replicas}") == "1"
    })
    .await;

    // Change: no replicas removes the replica StatefulSet and the read-only Service, exactly.
    env.kubectl(&[
        "patch",
        "database",
        "orders",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":0}}"#,
    ]);
    let primary_only = strings(&[
        "Service/orders",
        "Service/orders-rw",
        "StatefulSet/orders-primary",
    ]);
    wait_for("replicas pruned", T, || async {
        owned(&env, all, "database") == primary_only
    })
    .await;
    wait_for("Ready with the primary alone", T, || async {
        ready(&env, "database", "orders").0 == "True"
    })
    .await;
    assert_idle(&env.ns).await;

    // Delete: every child goes; the user's Secret stays (ruleop never owned it).
    env.kubectl(&["delete", "database", "orders"]);
    wait_for("no children left", T, || async {
        owned(&env, all, "database").is_empty()
            && env.get("statefulset", "orders-primary").is_none()
    })
    .await;
    assert!(env.get("secret", "orders-credentials").is_some());
}

/// Whether `user` may list pods in `ns`, as the API server's authorizer answers.
fn can_list_pods(user: &str, ns: &str) -> bool {
    try_kubectl(
        &["auth", "can-i", "list", "pods", "--as", user, "-n", ns],
        None,
    )
    .is_ok_and(|out| out.trim() == "yes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_rbac_binds_members_in_listed_and_labelled_namespaces() {
    install_generated_crd("team-rbac");
    // Not expressible, so not tested: a free namespaceSelector (only the fixed label
    // `examples.ruleop.dev/team`), group and service-account subjects.
    let a = TestEnv::new("ex-team-a").await;
    let b = TestEnv::new("ex-team-b").await;
    let c = TestEnv::new("ex-team-c").await;
    // Cluster-scoped and unique per run: the namespace name is.
    let team = a.ns.clone();
    a.delete_on_drop("team", &team);
    let _op = Operator::start_cluster_wide(&rule_file("team-rbac"), &[]);
    let rbac = "roles,rolebindings";
    let pair = strings(&[
        &format!("Role/team-{team}"),
        &format!("RoleBinding/team-{team}"),
    ]);
    let binding = format!("team-{team}");
    let apply_team = |members: &str, namespaces: &str| {
        kubectl_with_input(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: examples.ruleop.dev/v1\nkind: Team\nmetadata: {{name: {team}}}\n\
                 spec: {{members: {members}, namespaces: {namespaces}}}\n"
            )),
        )
    };
    let status_namespaces = || jsonpath(&a, "team", &team, "{.status.namespaces}");

    // Create: a Role and a RoleBinding in each listed namespace, none elsewhere.
    apply_team("[alice, bob]", &format!("[{}, {}]", a.ns, b.ns));
    wait_for("Team Ready", T, || async {
        ready(&a, "team", &team).0 == "True"
    })
    .await;
    assert_eq!(owned(&a, rbac, "team-rbac"), pair);
    assert_eq!(owned(&b, rbac, "team-rbac"), pair);
    assert_eq!(owned(&c, rbac, "team-rbac"), Vec::<String>::new());
    assert!(can_list_pods("alice", &a.ns) && can_list_pods("bob", &b.ns));
    assert!(!can_list_pods("alice", &c.ns));
    let namespaces = [a.ns.clone(), b.ns.clone(), c.ns.clone()];
    let ours = |w: &audit::Write| namespaces.contains(&w.namespace) || w.resource == "teams";
    assert_idle_where(ours).await;

    // Labelling a namespace binds the team there too.
    kubectl(&[
        "label",
        "namespace",
        &c.ns,
        &format!("examples.ruleop.dev/team={team}"),
    ]);
    wait_for("labelled namespace bound", T, || async {
        owned(&c, rbac, "team-rbac") == pair
    })
    .await;
    assert!(can_list_pods("alice", &c.ns));

    // Change: namespace a dropped from the list, carol added. Exactly a's copies go; b's
    // RoleBinding is updated in place.
    let b_uid = jsonpath(&b, "rolebinding", &binding, "{.metadata.uid}");
    apply_team("[alice, bob, carol]", &format!("[{}]", b.ns));
    wait_for("namespace a unbound", T, || async {
        owned(&a, rbac, "team-rbac").is_empty()
    })
    .await;
    wait_for("carol bound in b and c", T, || async {
        can_list_pods("carol", &b.ns) && can_list_pods("carol", &c.ns)
    })
    .await;
    assert!(!can_list_pods("alice", &a.ns));
    assert_eq!(owned(&b, rbac, "team-rbac"), pair);
    assert_eq!(owned(&c, rbac, "team-rbac"), pair);
    assert_eq!(
        jsonpath(&b, "rolebinding", &binding, "{.metadata.uid}"),
        b_uid
    );
    let mut expected = vec![b.ns.clone(), c.ns.clone()];
    expected.sort();
    wait_for("status lists the bound namespaces", T, || async {
        serde_json::from_str::<Vec<String>>(&status_namespaces()).unwrap_or_default() == expected
    })
    .await;

    // Drift: a subject removed by hand and a deleted Role are put back.
    b.kubectl(&[
        "patch",
        "rolebinding",
        &binding,
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/subjects/0"}]"#,
    ]);
    c.kubectl(&["delete", "role", &binding]);
    wait_for("hand edits put back", T, || async {
        jsonpath(&b, "rolebinding", &binding, "{.subjects[0].name}") == "alice"
            && owned(&c, rbac, "team-rbac") == pair
    })
    .await;
    wait_for("Ready again", T, || async {
        ready(&a, "team", &team).0 == "True"
    })
    .await;
    assert_idle_where(ours).await;

    // Removing the label unbinds c; deleting the Team removes the rest.
    kubectl(&["label", "namespace", &c.ns, "examples.ruleop.dev/team-"]);
    wait_for("unlabelled namespace unbound", T, || async {
        owned(&c, rbac, "team-rbac").is_empty()
    })
    .await;
    kubectl(&["delete", "team", &team]);
    wait_for("no children left", T, || async {
        owned(&b, rbac, "team-rbac").is_empty()
    })
    .await;
    assert!(!can_list_pods("bob", &b.ns));
}

/// `(status, message)` of a Service's `Exposed` condition.
fn exposed(env: &TestEnv, svc: &str) -> (String, String) {
    let field = |f: &str| {
        jsonpath(
            env,
            "service",
            svc,
            &format!("{{.status.conditions[?(@.type==\"Exposed\")].{f}}}"),
        )
    };
    (field("status"), field("message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_services_labelled_expose_get_an_ingress() {
    let env = TestEnv::new("ex-builtin").await;
    // Not expressible, so not tested: the URL annotation on the Service (it is the message of
    // the `Exposed` condition instead), and a parent selector (every Service gets conditions).
    let _op = Operator::start_with_rules(&env.ns, &rule_file("builtin"), &[]);
    let host = |svc: &str| jsonpath(&env, "ingress", svc, "{.spec.rules[0].host}");
    env.apply_yaml(&read("builtin", "sample.yaml"));
    env.apply_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: internal}\n\
         spec: {selector: {app: internal}, ports: [{port: 5432}]}\n",
    );

    // Create: the labelled Service gets its Ingress and the URL; the other one nothing.
    let default_url = format!("http://web.{}.ruleop.test", env.ns);
    wait_for("web Exposed", T, || async {
        exposed(&env, "web") == ("True".into(), default_url.clone())
    })
    .await;
    wait_for("internal not exposed", T, || async {
        exposed(&env, "internal").0 == "False"
    })
    .await;
    assert_eq!(
        owned(&env, "ingresses", "expose"),
        strings(&["Ingress/web"])
    );
    assert_eq!(
        jsonpath(
            &env,
            "ingress",
            "web",
            "{.spec.rules[0].http.paths[0].backend.service.port.number}"
        ),
        "8080"
    );
    // The API server's own status of the Service stays beside ruleop's conditions.
    assert_eq!(
        jsonpath(&env, "service", "web", "{.spec.type}"),
        "ClusterIP"
    );
    assert_idle(&env.ns).await;

    // Change of the looked-up ConfigMap: every Ingress moves to the new domain.
    env.apply_yaml(&read("builtin", "config.yaml"));
    let domain_host = format!("web.{}.apps.example.org", env.ns);
    wait_for("new domain", T, || async {
        host("web") == domain_host && exposed(&env, "web").1 == format!("http://{domain_host}")
    })
    .await;

    // Drift: a hand-edited host is put back.
    env.kubectl(&[
        "patch",
        "ingress",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/rules/0/host","value":"evil.example.com"}]"#,
    ]);
    wait_for("host put back", T, || async { host("web") == domain_host }).await;

    // Label moves: internal is exposed, web no longer; exactly one Ingress each time.
    env.kubectl(&["label", "service", "internal", "expose=true"]);
    env.kubectl(&["label", "service", "web", "expose-"]);
    wait_for("Ingress follows the label", T, || async {
        owned(&env, "ingresses", "expose") == strings(&["Ingress/internal"])
    })
    .await;
    wait_for("web no longer exposed", T, || async {
        exposed(&env, "web") == ("False".into(), "not exposed".into())
    })
    .await;
    assert_eq!(
        jsonpath(
            &env,
            "ingress",
            "internal",
            "{.spec.rules[0].http.paths[0].backend.service.port.number}"
        ),
        "5432"
    );

    // Delete: the Service's Ingress goes with it.
    env.kubectl(&["delete", "service", "internal"]);
    wait_for("no Ingress left", T, || async {
        owned(&env, "ingresses", "expose").is_empty()
    })
    .await;
    assert_idle(&env.ns).await;
}
