//! End to end: the operators in `examples/` (first half: sample-controller, cronjob, tenant,
//! replicator) against the local control plane, each checking its original's behaviours.
//! The cluster-wide ones (tenant, replicator) are in `cluster_wide`.

use crate::support;

use std::time::Duration;

use serde_json::Value as Json;
use support::examples::{assert_passes_offline, example, read};
use support::operator::{Operator, jsonpath, ready};
use support::{
    Scope, TestEnv, audit, install_crds_at, kubectl, live_names, try_kubectl, unique_suffix,
    wait_for,
};

mod cluster_wide;

const T: Duration = Duration::from_secs(90);
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
