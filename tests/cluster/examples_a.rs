//! End to end: the operators in `examples/` (first half: sample-controller, cronjob, tenant,
//! replicator) against the local control plane, each checking its original's behaviours.

use crate::support;

use std::time::Duration;

use serde_json::Value as Json;
use support::concerns::Concerns;
use support::examples::{assert_passes_offline, example, read};
use support::operator::{Operator, jsonpath, ready};
use support::{
    Scope, TestEnv, audit, install_crds_at, kubectl, live_names, try_kubectl, unique_suffix,
    wait_for,
};

const T: Duration = Duration::from_secs(90);
/// The replicator example's parent resource.
const REPLICATION: &str = "replications.replicator.example.com";
/// How long the operator must stay silent once a parent has converged.
const IDLE: Duration = Duration::from_secs(6);

/// Installs an example's CRD and waits until it is served.
fn install_crd(name: &str) {
    install_crds_at(&example(name).join("crd.yaml"));
}

/// Starts the operator on the example's rule file, scoped to the test's namespace.
fn start(env: &TestEnv, name: &str) -> Operator {
    Operator::start_with_rules(&env.ns, &example(name).join("rule.yaml"), &[])
}

fn sample(name: &str) -> String {
    read(name, "sample.yaml")
}

/// A field of an object in `ns` (`None`: cluster-scoped) by JSONPath; "" when absent.
fn field(ns: Option<&str>, what: &str, name: &str, path: &str) -> String {
    let path = format!("jsonpath={path}");
    let mut args = vec!["get", what, name, "-o", &path];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    try_kubectl(&args, None).unwrap_or_default()
}

/// Sorted names of the live (not terminating) objects of `what` in the namespace.
fn names(env: &TestEnv, what: &str, selector: Option<&str>) -> Vec<String> {
    live_names(Scope::Namespace(&env.ns), what, selector)
}

fn merge_patch(env: &TestEnv, what: &str, name: &str, patch: &str) {
    env.kubectl(&["patch", what, name, "--type", "merge", "-p", patch]);
}

/// Asserts the operator writes nothing to `namespace` over an idle window.
async fn assert_idle(namespace: &str) {
    assert_idle_where(|w| w.namespace == namespace).await;
}

/// Asserts the operator makes none of the writes `keep` selects over an idle window.
async fn assert_idle_where(keep: impl Fn(&audit::Write) -> bool) {
    audit::assert_no_writes("idle", IDLE, keep).await;
}

/// Every example of this half passes its offline checks.
#[test]
fn examples_check_and_test_offline() {
    for name in EXAMPLES {
        assert_passes_offline(name);
    }
}

/// The examples of this half, in order.
const EXAMPLES: &[&str] = &["sample-controller", "cronjob", "tenant", "replicator"];

/// sample-controller: Foo → Deployment `spec.deploymentName` with `spec.replicas`,
/// `status.availableReplicas`; a foreign Deployment of that name is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_controller_foo_keeps_its_deployment() {
    install_crd("sample-controller");
    let env = TestEnv::new("ex-foo").await;
    let _op = start(&env, "sample-controller");
    env.apply_yaml(&sample("sample-controller"));
    wait_for("Foo Ready with 1 available replica", T, || async {
        ready(&env, "foo", "example-foo").0 == "True"
            && jsonpath(&env, "foo", "example-foo", "{.status.availableReplicas}") == "1"
    })
    .await;
    assert_eq!(names(&env, "deployments", None), ["example-foo"]);
    let dep = env.get("deployment", "example-foo").unwrap();
    assert_eq!(dep["metadata"]["ownerReferences"][0]["kind"], "Foo");
    assert_eq!(dep["metadata"]["labels"]["controller"], "example-foo");
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:latest"
    );
    assert_idle(&env.ns).await;

    // Change: replicas follow the Foo, and so does availableReplicas.
    merge_patch(&env, "foo", "example-foo", r#"{"spec":{"replicas":3}}"#);
    wait_for("3 replicas available", T, || async {
        jsonpath(&env, "deployment", "example-foo", "{.spec.replicas}") == "3"
            && jsonpath(&env, "foo", "example-foo", "{.status.availableReplicas}") == "3"
    })
    .await;

    // Drift: a hand-scaled or re-imaged Deployment is put back.
    env.kubectl(&["scale", "deployment", "example-foo", "--replicas=7"]);
    env.kubectl(&["set", "image", "deployment/example-foo", "nginx=nginx:1.0"]);
    wait_for("hand edits put back", T, || async {
        jsonpath(&env, "deployment", "example-foo", "{.spec.replicas}") == "3"
            && jsonpath(
                &env,
                "deployment",
                "example-foo",
                "{.spec.template.spec.containers[0].image}",
            ) == "nginx:latest"
    })
    .await;

    // A Deployment of that name the Foo does not own is never taken over.
    env.kubectl(&[
        "create",
        "deployment",
        "taken",
        "--image=busybox",
        "--replicas=2",
    ]);
    env.apply_yaml(
        "apiVersion: samplecontroller.example.com/v1alpha1\nkind: Foo\nmetadata: {name: second}\n\
         spec: {deploymentName: taken, replicas: 1}\n",
    );
    wait_for("second Foo reports the conflict", T, || async {
        ready(&env, "foo", "second") == ("False".to_string(), "Conflict".to_string())
    })
    .await;
    let taken = env.get("deployment", "taken").unwrap();
    assert!(taken["metadata"]["ownerReferences"].is_null());
    assert_eq!(taken["spec"]["replicas"], 2);
    assert_eq!(
        taken["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    assert_eq!(names(&env, "deployments", None), ["example-foo", "taken"]);

    // Delete: the Foo's Deployment goes with it; the foreign one stays.
    env.kubectl(&["delete", "foo", "example-foo", "second"]);
    wait_for("only the foreign Deployment left", T, || async {
        names(&env, "deployments", None) == ["taken"]
    })
    .await;
}

/// The tutorial CronJob as a kind (`kubectl get cronjob` means the built-in one).
const TUTORIAL: &str = "cronjobs.batch.tutorial.kubebuilder.io";
const BUILTIN: &str = "cronjobs.batch";

/// cronjob: the Kubebuilder tutorial CronJob → a built-in CronJob that schedules the Jobs;
/// `status.active` lists its unfinished Jobs. Scheduled runs themselves are the built-in
/// controller's and are not waited for here (the sample's schedule is moved to once a year so
/// no run interferes with the exact Job set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_tutorial_delegates_to_a_builtin_cronjob() {
    install_crd("cronjob");
    let env = TestEnv::new("ex-cron").await;
    let _op = start(&env, "cronjob");
    env.apply_yaml(&sample("cronjob").replace("*/1 * * * *", "0 0 1 1 *"));
    wait_for("tutorial CronJob Ready", T, || async {
        ready(&env, TUTORIAL, "cronjob-sample").0 == "True"
    })
    .await;
    assert_eq!(names(&env, BUILTIN, None), ["cronjob-sample"]);
    let cj = env.get(BUILTIN, "cronjob-sample").unwrap();
    assert_eq!(cj["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(cj["spec"]["schedule"], "0 0 1 1 *");
    assert_eq!(cj["spec"]["startingDeadlineSeconds"], 60);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3, "CRD default");
    assert_eq!(cj["spec"]["suspend"], false);

    // A Job of the CronJob (made here as the CronJob controller makes them: from its
    // template, owned by it; suspended so it stays unfinished) is listed in status.active,
    // and no longer once it has finished.
    let cj_uid = cj["metadata"]["uid"].as_str().unwrap();
    env.apply_yaml(&format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: held\n  labels: {{cronjob.tutorial.kubebuilder.io/name: cronjob-sample}}\n  \
         ownerReferences: [{{apiVersion: batch/v1, kind: CronJob, name: cronjob-sample, uid: {cj_uid}, controller: true}}]\n\
         spec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: OnFailure\n      \
         containers: [{{name: hello, image: busybox}}]\n"
    ));
    wait_for("status.active lists the unfinished Job", T, || async {
        jsonpath(&env, TUTORIAL, "cronjob-sample", "{.status.active}") == r#"["held"]"#
    })
    .await;
    merge_patch(&env, "job", "held", r#"{"spec":{"suspend":false}}"#);
    wait_for("the Job completes and leaves status.active", T, || async {
        jsonpath(&env, "job", "held", "{.status.succeeded}") == "1"
            && jsonpath(&env, TUTORIAL, "cronjob-sample", "{.status.active}") == "[]"
    })
    .await;
    assert_eq!(names(&env, "jobs", None), ["held"]);
    assert_idle(&env.ns).await;

    // Change: suspend and a new schedule reach the built-in CronJob.
    merge_patch(
        &env,
        TUTORIAL,
        "cronjob-sample",
        r#"{"spec":{"suspend":true,"schedule":"30 2 * * *"}}"#,
    );
    wait_for("built-in CronJob updated", T, || async {
        jsonpath(
            &env,
            BUILTIN,
            "cronjob-sample",
            "{.spec.suspend}/{.spec.schedule}",
        ) == "true/30 2 * * *"
    })
    .await;

    // Drift: a hand edit of the built-in CronJob is put back.
    merge_patch(
        &env,
        BUILTIN,
        "cronjob-sample",
        r#"{"spec":{"suspend":false,"concurrencyPolicy":"Forbid"}}"#,
    );
    wait_for("hand edit put back", T, || async {
        jsonpath(
            &env,
            BUILTIN,
            "cronjob-sample",
            "{.spec.suspend}/{.spec.concurrencyPolicy}",
        ) == "true/Allow"
    })
    .await;
    assert_eq!(names(&env, BUILTIN, None), ["cronjob-sample"]);

    // Delete: the built-in CronJob (and so its Jobs) goes with the tutorial CronJob.
    env.kubectl(&[
        "create",
        "job",
        "second",
        "--from=cronjob.batch/cronjob-sample",
    ]);
    env.kubectl(&["delete", TUTORIAL, "cronjob-sample"]);
    wait_for("no CronJob and no Job left", T, || async {
        names(&env, BUILTIN, None).is_empty() && names(&env, "jobs", None).is_empty()
    })
    .await;
}

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
