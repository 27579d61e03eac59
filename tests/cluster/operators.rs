//! End to end: the six reference operators against the local control plane, with `ruleop run`
//! as a real process (scoped to the test's namespace), driven only through kubectl and the API.

use crate::support;

use std::time::Duration;

use support::operator::{Operator, install_crds, jsonpath, ready, sample};
use support::{Scope, TestEnv, audit, live_names, wait_for};

const T: Duration = Duration::from_secs(90);

async fn setup(prefix: &str) -> (TestEnv, Operator) {
    setup_with(prefix, &[]).await
}

async fn setup_with(prefix: &str, extra: &[&str]) -> (TestEnv, Operator) {
    install_crds();
    let env = TestEnv::new(prefix).await;
    let op = Operator::start(&env.ns, extra);
    (env, op)
}

/// Sorted names of the live pods matching `selector`.
fn pods(env: &TestEnv, selector: &str) -> Vec<String> {
    live_names(Scope::Namespace(&env.ns), "pods", Some(selector))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whalesay_job_completes_and_a_new_message_replaces_it() {
    let (env, _op) = setup("e2e-whalesay").await;
    env.apply_yaml(&sample("whalesay"));
    wait_for("WhaleSay Ready", T, || async {
        ready(&env, "whalesay", "example-whalesay").0 == "True"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "whalesay", "example-whalesay", "{.status.phase}"),
        "Succeeded"
    );
    let job = env.get("job", "example-whalesay-job").unwrap();
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"][1],
        "Hello from Kubernetes Operator!"
    );
    env.kubectl(&[
        "patch",
        "whalesay",
        "example-whalesay",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"message":"moo"}}"#,
    ]);
    wait_for("Job recreated with the new message", T, || async {
        jsonpath(
            &env,
            "job",
            "example-whalesay-job",
            "{.spec.template.spec.containers[0].command[1]}",
        ) == "moo"
    })
    .await;
    wait_for("WhaleSay Ready again", T, || async {
        ready(&env, "whalesay", "example-whalesay").0 == "True"
            && jsonpath(
                &env,
                "whalesay",
                "example-whalesay",
                "{.status.observedGeneration}",
            ) == "2"
    })
    .await;
}

/// Scales the PodSet to `target` and waits until its pods and `status.podNames` agree.
async fn scale_podset(env: &TestEnv, target: usize) {
    env.kubectl(&[
        "patch",
        "podset",
        "example-podset",
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"spec":{{"replicas":{target}}}}}"#),
    ]);
    wait_for(
        &format!("PodSet at {target} with podNames right"),
        T,
        || async {
            let names: Vec<String> = serde_json::from_str(&jsonpath(
                env,
                "podset",
                "example-podset",
                "{.status.podNames}",
            ))
            .unwrap_or_default();
            let live = pods(env, "app=example-podset");
            live.len() == target && names == live
        },
    )
    .await;
}

/// The per-reconcile `apply=N delete=M` counts the operator logged for the PodSet.
fn podset_steps(log: &str) -> Vec<(usize, usize)> {
    let mut plain = String::new();
    let mut in_escape = false;
    for c in log.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    let field = |line: &str, key: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    plain
        .lines()
        .filter(|l| l.contains("reconciling") && l.contains("parent=podset:"))
        .map(|l| (field(l, "apply="), field(l, "delete=")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podset_scales_one_pod_per_step_and_replaces_deleted_pods() {
    let (env, op) = setup("e2e-podset").await;
    env.apply_yaml(&sample("podset").replace("replicas: 3", "replicas: 0"));
    wait_for("PodSet reconciled", T, || async {
        ready(&env, "podset", "example-podset").0 == "True"
    })
    .await;
    scale_podset(&env, 3).await;
    let three = pods(&env, "app=example-podset");
    scale_podset(&env, 5).await;
    let five = pods(&env, "app=example-podset");
    assert!(three.iter().all(|p| five.contains(p)));
    // Newest first: the two pods left are among the first three.
    scale_podset(&env, 2).await;
    let two = pods(&env, "app=example-podset");
    assert!(
        two.iter().all(|p| three.contains(p)),
        "kept {two:?}, first three were {three:?}"
    );
    for p in &two {
        assert!(p.starts_with("example-podset-pod"));
        assert_eq!(
            jsonpath(&env, "pod", p, "{.metadata.labels.version}"),
            "v0.1"
        );
    }
    // One pod per step: every reconcile created or deleted at most one pod. (A step repeated
    // on a stale cache names the same pod again, so the totals may exceed 5 and 3.)
    let steps = podset_steps(&op.log());
    assert!(
        steps.iter().all(|&(apply, delete)| apply + delete <= 1),
        "a step touched several pods: {steps:?}"
    );
    assert!(steps.iter().map(|s| s.0).sum::<usize>() >= 5, "{steps:?}");
    assert!(steps.iter().map(|s| s.1).sum::<usize>() >= 3, "{steps:?}");
    let victim = two[0].clone();
    let uid = jsonpath(&env, "pod", &victim, "{.metadata.uid}");
    env.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    wait_for("deleted pod replaced", T, || async {
        let now = pods(&env, "app=example-podset");
        now.len() == 2
            && now
                .iter()
                .all(|p| jsonpath(&env, "pod", p, "{.metadata.uid}") != uid)
    })
    .await;
    wait_for("podNames right", T, || async {
        let names: Vec<String> = serde_json::from_str(&jsonpath(
            &env,
            "podset",
            "example-podset",
            "{.status.podNames}",
        ))
        .unwrap_or_default();
        names == pods(&env, "app=example-podset")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podset_scale_resumes_after_an_operator_restart() {
    install_crds();
    let env = TestEnv::new("e2e-restart").await;
    let mut op = Operator::start(&env.ns, &[]);
    env.apply_yaml(&sample("podset").replace("replicas: 3", "replicas: 40"));
    wait_for("two pods", T, || async {
        pods(&env, "app=example-podset").len() >= 2
    })
    .await;
    op.stop();
    let during = pods(&env, "app=example-podset").len();
    assert!(
        during < 40,
        "the scale was still in progress ({during} pods)"
    );
    let _op = Operator::start(&env.ns, &[]);
    let start = std::time::Instant::now();
    loop {
        let n = pods(&env, "app=example-podset").len();
        assert!(n <= 40, "extra pods after restart: {n}");
        if n == 40 {
            break;
        }
        assert!(start.elapsed() < T, "did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pods(&env, "app=example-podset").len(),
        40,
        "no extra pods once settled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_scales_peers_and_statefulset_together_and_cleans_up_on_delete() {
    let (env, _op) = setup("e2e-etcd").await;
    env.apply_yaml(&sample("etcdcluster"));
    wait_for("EtcdCluster Ready", T, || async {
        ready(&env, "etcdcluster", "prod-etcd").0 == "True"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "etcdcluster", "prod-etcd", "{.status.readyMembers}"),
        "3"
    );
    assert_eq!(
        jsonpath(
            &env,
            "etcdcluster",
            "prod-etcd",
            "{.status.observedVersion}"
        ),
        "3.5.9"
    );
    assert_eq!(
        jsonpath(&env, "pvc", "data-prod-etcd-2", "{.status.phase}"),
        "Bound"
    );
    assert_eq!(
        jsonpath(&env, "cronjob", "prod-etcd-backup", "{.spec.schedule}"),
        "0 2 * * *"
    );
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "prod-etcd",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":5,"backupSchedule":null}}"#,
    ]);
    wait_for("peer list and StatefulSet at five", T, || async {
        let peers = jsonpath(
            &env,
            "configmap",
            "prod-etcd-config",
            "{.data.ETCD_INITIAL_CLUSTER}",
        );
        peers.split(',').count() == 5
            && peers.contains(&format!(
                "prod-etcd-4=http://prod-etcd-4.prod-etcd.{}.svc:2380",
                env.ns
            ))
            && jsonpath(&env, "statefulset", "prod-etcd", "{.spec.replicas}") == "5"
    })
    .await;
    wait_for("backup CronJob removed", T, || async {
        env.get("cronjob", "prod-etcd-backup").is_none()
    })
    .await;
    wait_for("five members ready", T, || async {
        jsonpath(&env, "etcdcluster", "prod-etcd", "{.status.readyMembers}") == "5"
    })
    .await;

    env.kubectl(&["delete", "etcdcluster", "prod-etcd", "--wait=false"]);
    wait_for("final backup Job created", T, || async {
        env.get("job", "prod-etcd-final-backup").is_some()
    })
    .await;
    assert!(
        env.get("etcdcluster", "prod-etcd").is_some(),
        "the parent waits for its cleanup"
    );
    wait_for("EtcdCluster gone", T, || async {
        env.get("etcdcluster", "prod-etcd").is_none()
    })
    .await;
    wait_for("children gone", T, || async {
        env.kubectl(&[
            "get",
            "statefulset,configmap,service,job,pods",
            "-l",
            "ruleop.dev/rule=etcdcluster",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    })
    .await;
    let events = env.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(
        events.contains("CleanupStarted") && events.contains("CleanupDone"),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_status_drift_and_cascade_deletion() {
    // On a thread pool: every other test runs the default single thread.
    let (env, op) = setup_with("e2e-memcached", &["--threads", "2"]).await;
    env.apply_yaml(&sample("memcached"));
    wait_for("Memcached Ready", T, || async {
        ready(&env, "memcached", "example-memcached").0 == "True"
    })
    .await;
    wait_for("status.nodes lists its pods", T, || async {
        let nodes: Vec<String> = serde_json::from_str(&jsonpath(
            &env,
            "memcached",
            "example-memcached",
            "{.status.nodes}",
        ))
        .unwrap_or_default();
        nodes.len() == 3 && nodes == pods(&env, "app=memcached,memcached_cr=example-memcached")
    })
    .await;
    // Idle: no writes once converged, by the operator's own count and by the API server's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !audit::Mark::start().operator_writes(&env.ns).is_empty(),
        "the audit log attributes the operator's writes to it"
    );
    let before = op.counter("ruleop_api_writes_total", "");
    audit::assert_no_writes("memcached", Duration::from_secs(8), |w| {
        w.namespace == env.ns
    })
    .await;
    assert_eq!(
        op.counter("ruleop_api_writes_total", ""),
        before,
        "an idle operator writes nothing"
    );

    env.kubectl(&["scale", "deployment", "example-memcached", "--replicas=7"]);
    wait_for("hand-scaled Deployment restored", T, || async {
        jsonpath(&env, "deployment", "example-memcached", "{.spec.replicas}") == "3"
    })
    .await;
    env.kubectl(&["delete", "service", "example-memcached"]);
    wait_for("deleted Service recreated", T, || async {
        env.get("service", "example-memcached").is_some()
    })
    .await;
    env.kubectl(&[
        "patch",
        "memcached",
        "example-memcached",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    wait_for("size 5 in place", T, || async {
        jsonpath(
            &env,
            "memcached",
            "example-memcached",
            "{.status.readyReplicas}",
        ) == "5"
    })
    .await;
    env.kubectl(&["delete", "memcached", "example-memcached"]);
    wait_for("cascade deletion leaves nothing", T, || async {
        env.kubectl(&[
            "get",
            "deployment,service,replicaset,pods",
            "-l",
            "app=memcached",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
            && env.get("deployment", "example-memcached").is_none()
            && env.get("service", "example-memcached").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myapp_updates_in_place_and_never_adopts_a_foreign_object() {
    let (env, _op) = setup("e2e-myapp").await;
    env.apply_yaml(&sample("myapp"));
    wait_for("MyApp Ready", T, || async {
        ready(&env, "myapp", "myapp-sample").0 == "True"
    })
    .await;
    let uid = jsonpath(&env, "deployment", "myapp-sample", "{.metadata.uid}");
    env.kubectl(&[
        "patch",
        "myapp",
        "myapp-sample",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":3,"image":"nginxinc/nginx-unprivileged:1.28"}}"#,
    ]);
    wait_for("Deployment updated in place", T, || async {
        jsonpath(
            &env,
            "deployment",
            "myapp-sample",
            "{.spec.template.spec.containers[0].image}",
        ) == "nginxinc/nginx-unprivileged:1.28"
            && jsonpath(&env, "myapp", "myapp-sample", "{.status.availableReplicas}") == "3"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "deployment", "myapp-sample", "{.metadata.uid}"),
        uid,
        "same object, updated in place"
    );

    // A Deployment of the same name that this MyApp does not own.
    env.kubectl(&[
        "create",
        "deployment",
        "other",
        "--image=busybox:1.36",
        "--replicas=1",
    ]);
    env.apply_yaml("apiVersion: example.com/v1\nkind: MyApp\nmetadata: {name: other}\nspec: {replicas: 2, image: 'x:1'}\n");
    wait_for("Conflict reported", T, || async {
        ready(&env, "myapp", "other") == ("False".into(), "Conflict".into())
    })
    .await;
    assert_eq!(
        jsonpath(&env, "deployment", "other", "{.spec.replicas}"),
        "1",
        "never overwritten"
    );
    assert_eq!(
        jsonpath(&env, "deployment", "other", "{.metadata.ownerReferences}"),
        "",
        "never adopted"
    );
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=other",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Conflict"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_validation_failure_creates_nothing() {
    let (env, _op) = setup("e2e-nginx").await;
    env.apply_yaml(&sample("nginxserver").replace("image: nginx:1.27", "image: nginx"));
    wait_for("Ready=False ImageTagRequired", T, || async {
        ready(&env, "nginxserver", "example-nginx") == ("False".into(), "ImageTagRequired".into())
    })
    .await;
    assert!(
        env.get("deployment", "example-nginx").is_none(),
        "nothing created"
    );
    let events = env.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("ImageTagRequired"), "{events}");
    env.kubectl(&[
        "patch",
        "nginxserver",
        "example-nginx",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"image":"nginx:1.27"}}"#,
    ]);
    wait_for("fixed CR becomes Ready", T, || async {
        ready(&env, "nginxserver", "example-nginx").0 == "True"
    })
    .await;
    wait_for("podNames and availableReplicas", T, || async {
        let names: Vec<String> = serde_json::from_str(&jsonpath(
            &env,
            "nginxserver",
            "example-nginx",
            "{.status.podNames}",
        ))
        .unwrap_or_default();
        names.len() == 2
            && jsonpath(
                &env,
                "nginxserver",
                "example-nginx",
                "{.status.availableReplicas}",
            ) == "2"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_leader_election_never_both_act() {
    install_crds();
    let env = TestEnv::new("e2e-leader").await;
    let lease_args = [
        "--leader-elect",
        "--leader-elect-namespace",
        env.ns.as_str(),
    ];
    let mut a = Operator::start(&env.ns, &lease_args);
    wait_for("first replica leads", T, || async {
        a.log().contains("became leader")
    })
    .await;
    let b = Operator::start(&env.ns, &lease_args);
    env.apply_yaml(&sample("myapp"));
    wait_for("MyApp Ready", T, || async {
        ready(&env, "myapp", "myapp-sample").0 == "True"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !b.log().contains("became leader"),
        "standby must not lead while the leader lives"
    );
    assert!(!b.log().contains("reconciling"), "standby must not act");
    assert_eq!(b.counter("ruleop_api_writes_total", ""), 0.0);
    let readyz = b.http_get("/readyz");
    assert!(
        readyz.starts_with("HTTP/1.1 200"),
        "a standby is ready to take over: {readyz}"
    );
    // Sync is re-evaluated every few seconds: wait for it rather than race it.
    wait_for("the leader is ready once synced", T, || async {
        a.http_get("/readyz").starts_with("HTTP/1.1 200")
    })
    .await;
    a.stop();
    wait_for("standby takes over", T, || async {
        b.log().contains("became leader")
    })
    .await;
    env.kubectl(&[
        "patch",
        "myapp",
        "myapp-sample",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    wait_for("new leader acts", T, || async {
        jsonpath(&env, "deployment", "myapp-sample", "{.spec.replicas}") == "1"
    })
    .await;
}
