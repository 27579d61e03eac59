//! End to end: the cluster-wide examples of the first half, `tenant` and `replicator`:
//! cluster-scoped parents whose children live in namespaces they create or select. Their
//! operators run in every namespace, so each test counts only the writes that concern its
//! parent ([`Concerns`]).

use super::*;
use crate::support::concerns::Concerns;

/// The replicator example's parent resource.
const REPLICATION: &str = "replications.replicator.example.com";

/// The live namespaces of tenant `t`.
fn tenant_namespaces(t: &str) -> Vec<String> {
    let selector = format!("capsule.clastix.io/tenant={t}");
    live_names(Scope::Cluster, "namespaces", Some(&selector))
}

/// A write as the audit log records it, for [`Concerns`]'s own test.
fn write(resource: &str, namespace: &str, name: &str) -> audit::Write {
    audit::Write {
        verb: "patch".into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
        user_agent: "ruleop/test".into(),
        code: 200,
        received: String::new(),
        impersonated_user: String::new(),
    }
}

/// Cluster-scoped children and everything inside the namespaces among them count; another
/// test's writes do not.
#[test]
fn concerns_counts_cluster_scoped_children_and_their_namespaces() {
    let c = Concerns {
        parent: ("tenants".into(), "oil".into()),
        children: [
            ("namespaces".into(), String::new(), "oil-dev".into()),
            ("clusterroles".into(), String::new(), "oil-admin".into()),
        ]
        .into(),
        namespaces: ["oil-dev".to_string(), "test-ns".to_string()].into(),
    };
    for w in [
        write("tenants", "", "oil"),
        write("namespaces", "", "oil-dev"),
        write("clusterroles", "", "oil-admin"),
        write("resourcequotas", "oil-dev", "capsule-oil-0"),
        write("configmaps", "test-ns", "anything"),
    ] {
        assert!(c.contains(&w), "{w}");
    }
    for w in [
        write("tenants", "", "gas"),
        write("namespaces", "", "gas-dev"),
        write("clusterroles", "", "gas-admin"),
        write("configmaps", "other-test", "oil"),
    ] {
        assert!(!c.contains(&w), "{w}");
    }
}

/// The exact objects inside one tenant namespace, by kind.
fn tenant_contents(ns: &str) -> Vec<Vec<String>> {
    [
        "resourcequotas",
        "limitranges",
        "networkpolicies",
        "rolebindings",
    ]
    .iter()
    .map(|k| live_names(Scope::Namespace(ns), k, None))
    .collect()
}

/// tenant: a cluster-scoped Tenant (Capsule's shape) → its Namespaces, each with a
/// ResourceQuota, LimitRange, NetworkPolicy and the owners' RoleBinding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_owns_its_namespaces_and_their_policies() {
    install_crd("tenant");
    let env = TestEnv::new("ex-tenant").await;
    let t = format!("oil{}", unique_suffix());
    env.delete_on_drop("tenants.capsule.example.com", &t);
    let _op = Operator::start_cluster_wide(&example("tenant").join("rule.yaml"), &[]);
    env.apply_yaml(&sample("tenant").replace("name: oil", &format!("name: {t}")));
    let tenant = |path: &str| field(None, "tenants.capsule.example.com", &t, path);
    let (dev, prod, test) = (format!("{t}-dev"), format!("{t}-prod"), format!("{t}-test"));
    let quota = format!("capsule-{t}-0");
    let inside = |ns: &str| {
        vec![
            vec![format!("capsule-{t}-0")],
            vec![format!("capsule-{t}-0")],
            vec![format!("capsule-{t}-0")],
            vec!["namespace-admin".to_string()],
        ]
        .into_iter()
        .zip(tenant_contents(ns))
        .all(|(want, got)| want == got)
    };
    wait_for("Tenant Ready with two namespaces", T, || async {
        tenant("{.status.conditions[?(@.type==\"Ready\")].status}") == "True"
            && tenant("{.status.size}") == "2"
    })
    .await;
    assert_eq!(tenant_namespaces(&t), [dev.clone(), prod.clone()]);
    assert!(inside(&dev) && inside(&prod), "{:?}", tenant_contents(&dev));
    let rb: Json = serde_json::from_str(&kubectl(&[
        "-n",
        &dev,
        "get",
        "rolebinding",
        "namespace-admin",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(rb["roleRef"]["name"], "admin");
    assert_eq!(rb["subjects"][0]["name"], "alice");
    assert_eq!(rb["subjects"][1]["kind"], "Group");
    let concerns = Concerns::of(
        "tenants.capsule.example.com",
        &t,
        &[
            "namespaces",
            "resourcequotas",
            "limitranges",
            "networkpolicies",
            "rolebindings",
        ],
        &[&env.ns],
    );
    assert_eq!(concerns.created_namespaces(), [&dev, &prod], "{concerns:?}");
    assert_idle_where(|w| concerns.contains(w)).await;

    // Drift: a raised quota is put back, a deleted RoleBinding comes back.
    kubectl(&[
        "-n",
        &prod,
        "patch",
        "resourcequota",
        &quota,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"99"}}}"#,
    ]);
    kubectl(&["-n", &dev, "delete", "rolebinding", "namespace-admin"]);
    wait_for("hand edits put back", T, || async {
        live_names(Scope::Namespace(&dev), "rolebindings", None) == ["namespace-admin"]
            && field(Some(&prod), "resourcequota", &quota, "{.spec.hard.pods}") == "10"
    })
    .await;

    // Change: a namespace added, one removed (with everything in it), a new quota everywhere.
    kubectl(&[
        "patch",
        "tenants.capsule.example.com",
        &t,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"namespaces":["prod","test"],"resourceQuotas":[{"hard":{"pods":"20"}}]}}"#,
    ]);
    wait_for("namespaces prod and test, quota 20", T, || async {
        tenant_namespaces(&t) == [prod.clone(), test.clone()]
            && inside(&test)
            && tenant("{.status.namespaces}") == format!(r#"["{prod}","{test}"]"#)
            && [&prod, &test]
                .iter()
                .all(|ns| field(Some(ns), "resourcequota", &quota, "{.spec.hard.pods}") == "20")
    })
    .await;

    // Over the namespace quota: refused, nothing created or deleted.
    kubectl(&[
        "patch",
        "tenants.capsule.example.com",
        &t,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"namespaces":["prod","test","a","b"]}}"#,
    ]);
    wait_for("quota exceeded reported", T, || async {
        tenant("{.status.conditions[?(@.type==\"Ready\")].reason}") == "NamespaceQuotaExceeded"
    })
    .await;
    assert_eq!(tenant_namespaces(&t), [prod.clone(), test.clone()]);

    // Delete: the tenant's namespaces go with it.
    kubectl(&["delete", "tenants.capsule.example.com", &t, "--wait=false"]);
    wait_for("no namespace of the tenant left", T, || async {
        tenant_namespaces(&t).is_empty()
    })
    .await;
}

/// `data.token` of Secret `name` in `ns`, decoded ("" when absent).
fn secret_token(ns: &str, name: &str) -> String {
    try_kubectl(
        &[
            "-n",
            ns,
            "get",
            "secret",
            name,
            "-o",
            "go-template={{.data.token | base64decode}}",
        ],
        None,
    )
    .unwrap_or_default()
}

/// replicator: a Secret copied into every opted-in namespace whose labels match; copies follow
/// the source, namespaces that start or stop matching gain or lose theirs, and deleting the
/// source deletes every copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicator_copies_a_secret_into_matching_namespaces() {
    install_crd("replicator");
    let env = TestEnv::new("ex-repl").await;
    let rep = format!("rep{}", unique_suffix());
    env.delete_on_drop(REPLICATION, &rep);
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|x| format!("{}-{x}", env.ns));
    for (ns, team, opted_in) in [
        (&a, "blue", true),
        (&b, "blue", true),
        (&c, "red", true),
        (&d, "blue", false),
    ] {
        env.delete_on_drop("namespace", ns);
        kubectl(&["create", "namespace", ns]);
        let mut labels = vec![format!("team={team}")];
        if opted_in {
            labels.push("replicator.example.com/enabled=true".into());
        }
        let mut args = vec!["label", "namespace", ns.as_str()];
        args.extend(labels.iter().map(String::as_str));
        kubectl(&args);
    }
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "registry-credentials",
        "--from-literal=token=one",
    ]);
    let _op = Operator::start_cluster_wide(&example("replicator").join("rule.yaml"), &[]);
    env.apply_yaml(
        &sample("replicator")
            .replace(
                "name: registry-credentials\nspec",
                &format!("name: {rep}\nspec"),
            )
            .replace("namespace: default", &format!("namespace: {}", env.ns)),
    );
    let copies = || {
        let mut v: Vec<String> = [&env.ns, &a, &b, &c, &d]
            .into_iter()
            .filter(|ns| {
                live_names(Scope::Namespace(ns), "secrets", None)
                    .contains(&"registry-credentials".to_string())
            })
            .cloned()
            .collect();
        v.sort();
        v
    };
    let status = || field(None, REPLICATION, &rep, "{.status.namespaces}");
    wait_for("copies in the blue namespaces only", T, || async {
        copies() == [env.ns.clone(), a.clone(), b.clone()]
            && status() == format!(r#"["{a}","{b}"]"#)
            && secret_token(&a, "registry-credentials") == "one"
    })
    .await;
    let concerns = Concerns::of(
        REPLICATION,
        &rep,
        &["secrets", "configmaps"],
        &[&env.ns, &a, &b, &c, &d],
    );
    // The exact child set: a copy in each blue namespace, nothing else anywhere.
    let copy = |ns: &str| {
        (
            "secrets".to_string(),
            ns.to_string(),
            "registry-credentials".into(),
        )
    };
    assert_eq!(
        concerns.children,
        [copy(&a), copy(&b)].into(),
        "{concerns:?}"
    );
    assert_idle_where(|w| concerns.contains(w)).await;

    // Change of the source: every copy follows.
    env.kubectl(&[
        "patch",
        "secret",
        "registry-credentials",
        "-p",
        r#"{"stringData":{"token":"two"}}"#,
    ]);
    wait_for("copies follow the source", T, || async {
        secret_token(&a, "registry-credentials") == "two"
            && secret_token(&b, "registry-credentials") == "two"
    })
    .await;

    // Drift: an edited copy is put back, a deleted one comes back.
    kubectl(&[
        "-n",
        &a,
        "patch",
        "secret",
        "registry-credentials",
        "-p",
        r#"{"stringData":{"token":"hacked"}}"#,
    ]);
    kubectl(&["-n", &b, "delete", "secret", "registry-credentials"]);
    wait_for("hand edits put back", T, || async {
        secret_token(&a, "registry-credentials") == "two"
            && secret_token(&b, "registry-credentials") == "two"
    })
    .await;

    // Namespaces that start and stop matching.
    kubectl(&["label", "namespace", &c, "team=blue", "--overwrite"]);
    kubectl(&["label", "namespace", &a, "team=red", "--overwrite"]);
    wait_for("copy moved from a to c", T, || async {
        copies() == [env.ns.clone(), b.clone(), c.clone()]
            && status() == format!(r#"["{b}","{c}"]"#)
    })
    .await;

    // Deleting the source deletes every copy; the Replication says why.
    env.kubectl(&["delete", "secret", "registry-credentials"]);
    wait_for("no copy left", T, || async {
        copies().is_empty()
            && field(
                None,
                REPLICATION,
                &rep,
                "{.status.conditions[?(@.type==\"SourceFound\")].reason}",
            ) == "SourceMissing"
    })
    .await;

    // A source again, then the Replication deleted: its copies go with it.
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "registry-credentials",
        "--from-literal=token=three",
    ]);
    wait_for("copies back", T, || async {
        copies() == [env.ns.clone(), b.clone(), c.clone()]
    })
    .await;
    kubectl(&["delete", REPLICATION, &rep]);
    wait_for("copies gone with the Replication", T, || async {
        copies() == [env.ns.clone()]
    })
    .await;
}
