//! Process faults against the local control plane, each asserting "nothing lost": the exact
//! child set, no unintended deletion, other managers' fields untouched, no finalizer stuck,
//! statuses converged, and afterwards zero operator writes over an idle window (audit log).
//!
//! - SIGKILL during a burst of creates and scale steps;
//! - SIGKILL during finalizer cleanup;
//! - SIGSTOP/SIGCONT of a leader with two replicas: the resumed leader writes nothing;
//! - a rule whose templates keep a core busy, beside an ordinary one, with two replicas:
//!   leadership never changes hands and the ordinary rule's parents are served meanwhile;
//! - hostile parents (huge, template-like and unicode values, names at the length limits);
//! - a random schedule of all of these and more, from one seed (`soak`).

mod slow;
mod soak;
mod soak_model;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::operator::{Operator, install_crds, jsonpath, ready, root, sample};
use support::{
    Scope, TestEnv, audit, install_crds_at, is_live, live_objects, wait_for, wait_for_ok,
};

const T: Duration = Duration::from_secs(120);
/// Quiet time after convergence in which the operator must write nothing.
const IDLE: Duration = Duration::from_secs(6);

/// `kubectl get WHAT -l SELECTOR -o json` items.
fn items(env: &TestEnv, what: &str, selector: &str) -> Vec<Json> {
    let out = env.kubectl(&["get", what, "-l", selector, "-o", "json"]);
    let list: Json = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(obj: &Json) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn uid(obj: &Json) -> String {
    obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts the operator writes nothing in the namespace for [`IDLE`] (Events included).
async fn assert_idle(env: &TestEnv, what: &str) {
    audit::assert_no_writes_or_events(what, IDLE, |w| w.namespace == env.ns).await;
}

fn status_list(env: &TestEnv, what: &str, name: &str, field: &str) -> Vec<String> {
    serde_json::from_str(&jsonpath(env, what, name, &format!("{{.status.{field}}}")))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// SIGKILL during a burst

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_of_creates_and_scale_steps_converges_exactly() {
    install_crds();
    let env = TestEnv::new("fault-burst").await;
    let mut op = Operator::start(&env.ns, &[]);
    let mut yaml = String::new();
    let podset = |name: &str, replicas: usize| {
        format!(
            "---\napiVersion: app.example.com/v1alpha1\nkind: PodSet\nmetadata: {{name: {name}}}\nspec: {{replicas: {replicas}}}\n"
        )
    };
    for i in 0..6 {
        yaml += &podset(&format!("ps{i}"), 15);
    }
    for i in 0..3 {
        yaml += &format!(
            "---\napiVersion: cache.example.com/v1alpha1\nkind: Memcached\nmetadata: {{name: mc{i}}}\nspec: {{size: 2}}\n"
        );
    }
    env.apply_yaml(&yaml);
    let pods = || {
        live_objects(
            Scope::Namespace(&env.ns),
            "pods",
            Some("ruleop.dev/rule=podset"),
        )
    };
    wait_for("the burst under way", T, || async { pods().len() >= 3 }).await;
    // Scale steps in flight too: one PodSet up, one down; then the kill, at once.
    env.apply_yaml(&(podset("ps0", 20) + &podset("ps1", 3)));
    op.kill();
    let at_kill = pods();
    let targets: BTreeMap<String, usize> = (0..6)
        .map(|i| (format!("ps{i}"), [20, 3, 15, 15, 15, 15][i]))
        .collect();
    let total: usize = targets.values().sum();
    assert!(
        at_kill.len() < total,
        "killed mid-way: {} of {total} pods",
        at_kill.len()
    );

    let parents: BTreeMap<String, String> = targets
        .keys()
        .map(|p| (jsonpath(&env, "podset", p, "{.metadata.uid}"), p.clone()))
        .collect();
    // A field another manager owns on a child that stays (its PodSet is not scaled down).
    let marked = at_kill
        .iter()
        .find(|o| {
            let owner = o["metadata"]["labels"]["ruleop.dev/owner"].as_str();
            owner
                .and_then(|u| parents.get(u))
                .is_some_and(|p| p != "ps1")
        })
        .map(name)
        .expect("a pod of a PodSet that only grows");
    env.kubectl(&["annotate", "pod", &marked, "example.com/note=kept"]);
    let _op = Operator::start(&env.ns, &[]);
    let per_parent = |objs: &mut dyn Iterator<Item = &Json>| {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for o in objs {
            let owner = o["metadata"]["labels"]["ruleop.dev/owner"]
                .as_str()
                .unwrap_or_default();
            let parent = parents.get(owner).cloned().unwrap_or(format!("?{owner}"));
            by.entry(parent).or_default().push(name(o));
        }
        for names in by.values_mut() {
            names.sort();
        }
        by
    };
    wait_for_ok("every PodSet and Memcached converged", T, || async {
        let all = items(&env, "pods", "ruleop.dev/rule=podset");
        let by = per_parent(&mut all.iter().filter(|o| is_live(o)));
        for (p, n) in &targets {
            let names = by.get(p).cloned().unwrap_or_default();
            if names.len() != *n {
                return Err(format!("{p}: {} pods, want {n}", names.len()));
            }
            if status_list(&env, "podset", p, "podNames") != names {
                return Err(format!("{p}: status.podNames behind"));
            }
            if ready(&env, "podset", p).0 != "True" {
                return Err(format!("{p}: not Ready"));
            }
        }
        if all.len() != total {
            return Err(format!(
                "{} pods incl. terminating, want {total}",
                all.len()
            ));
        }
        for i in 0..3 {
            let mc = format!("mc{i}");
            if jsonpath(&env, "deployment", &mc, "{.spec.replicas}") != "2"
                || jsonpath(&env, "memcached", &mc, "{.status.readyReplicas}") != "2"
                || ready(&env, "memcached", &mc).0 != "True"
            {
                return Err(format!("{mc} not converged"));
            }
        }
        Ok(())
    })
    .await;

    // The exact child set: nothing extra of any kind.
    let deployments: Vec<String> = items(&env, "deployments", "ruleop.dev/rule")
        .iter()
        .map(name)
        .collect();
    let services: Vec<String> = items(&env, "services", "ruleop.dev/rule")
        .iter()
        .map(name)
        .collect();
    assert_eq!(deployments, ["mc0", "mc1", "mc2"]);
    assert_eq!(services, ["mc0", "mc1", "mc2"]);
    let now: BTreeMap<String, String> = pods().iter().map(|p| (name(p), uid(p))).collect();
    // No unintended deletion: pods of parents that only grew are all still there, the same.
    let by_at_kill = per_parent(&mut at_kill.iter());
    for p in ["ps0", "ps2", "ps3", "ps4", "ps5"] {
        for pod in by_at_kill.get(p).into_iter().flatten() {
            let before = at_kill.iter().find(|o| &name(o) == pod).map(uid);
            assert_eq!(
                now.get(pod),
                before.as_ref(),
                "{p}'s pod {pod} replaced or lost"
            );
        }
    }
    if now.contains_key(&marked) {
        assert_eq!(
            jsonpath(
                &env,
                "pod",
                &marked,
                "{.metadata.annotations.example\\.com/note}"
            ),
            "kept",
            "another manager's annotation untouched"
        );
    }
    assert_idle(&env, "after the restart converged").await;
}

// ---------------------------------------------------------------------------------------
// SIGKILL during finalizer cleanup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_finalizer_cleanup_completes_after_restart() {
    install_crds();
    let env = TestEnv::new("fault-final").await;
    let mut op = Operator::start(&env.ns, &[]);
    env.apply_yaml(&sample("etcdcluster").replace("replicas: 3", "replicas: 1"));
    wait_for("EtcdCluster Ready", T, || async {
        ready(&env, "etcdcluster", "prod-etcd").0 == "True"
    })
    .await;
    let children = |env: &TestEnv| -> BTreeSet<String> {
        env.kubectl(&[
            "get",
            "statefulsets,configmaps,services,cronjobs,jobs",
            "-l",
            "ruleop.dev/rule=etcdcluster",
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    };
    let expected: BTreeSet<String> = [
        "configmap/prod-etcd-config",
        "cronjob.batch/prod-etcd-backup",
        "service/prod-etcd",
        "statefulset.apps/prod-etcd",
    ]
    .map(String::from)
    .into();
    assert_eq!(children(&env), expected);

    env.kubectl(&["delete", "etcdcluster", "prod-etcd", "--wait=false"]);
    wait_for("cleanup Job created", T, || async {
        !jsonpath(&env, "job", "prod-etcd-final-backup", "{.metadata.uid}").is_empty()
    })
    .await;
    op.kill();
    let job_uid = jsonpath(&env, "job", "prod-etcd-final-backup", "{.metadata.uid}");
    // While the operator is down the cleanup Job finishes; the parent waits, children stay.
    wait_for("cleanup Job succeeded", T, || async {
        jsonpath(&env, "job", "prod-etcd-final-backup", "{.status.succeeded}") == "1"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "etcdcluster", "prod-etcd", "{.metadata.finalizers}"),
        r#"["ruleop.dev/cleanup"]"#,
        "the parent waits for its cleanup"
    );
    let mut with_job = expected.clone();
    with_job.insert("job.batch/prod-etcd-final-backup".into());
    assert_eq!(children(&env), with_job, "nothing deleted while down");

    let mark = audit::Mark::now();
    let _op = Operator::start(&env.ns, &[]);
    wait_for("EtcdCluster gone", T, || async {
        env.try_kubectl(&["get", "etcdcluster", "prod-etcd"])
            .is_err()
    })
    .await;
    wait_for("no child left", T, || async {
        children(&env).is_empty() && items(&env, "pods", "ruleop.dev/rule=etcdcluster").is_empty()
    })
    .await;
    let writes = mark.operator_writes(&env.ns);
    let recreated: Vec<_> = writes
        .iter()
        .filter(|w| w.resource == "jobs" && w.verb != "delete")
        .collect();
    assert!(
        recreated.is_empty(),
        "the finished cleanup step is not run again (Job {job_uid}):\n{}",
        audit::describe(&writes)
    );
    let events = env.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("CleanupDone"), "{events}");
    assert_idle(&env, "after the cleanup").await;
}

// ---------------------------------------------------------------------------------------
// SIGSTOP/SIGCONT of a leader

fn install_shelf_crd() {
    install_crds_at(&root().join("tests/rules/process/crds/shelf.yaml"));
}

fn shelf(name: &str, slots: usize, label: &str) -> String {
    format!(
        "apiVersion: process.ruleop.test/v1\nkind: Shelf\nmetadata: {{name: {name}}}\nspec: {{slots: {slots}, label: {label}}}\n"
    )
}

/// The shelf's ConfigMaps by name, with uid and label.
fn slots(env: &TestEnv) -> BTreeMap<String, (String, String)> {
    items(env, "configmaps", "ruleop.dev/rule=shelf")
        .iter()
        .map(|c| {
            let label = c["data"]["label"].as_str().unwrap_or_default().to_string();
            (name(c), (uid(c), label))
        })
        .collect()
}

/// Exactly `books-slot-0..n`, all labelled `label`, with the status saying so.
fn shelf_converged(env: &TestEnv, n: usize, label: &str) -> Result<(), String> {
    let have = slots(env);
    let want: BTreeSet<String> = (0..n).map(|i| format!("books-slot-{i}")).collect();
    let names: BTreeSet<String> = have.keys().cloned().collect();
    if names != want {
        return Err(format!("slots {names:?}"));
    }
    if let Some((n, _)) = have.iter().find(|(_, (_, l))| l != label) {
        return Err(format!("{n} not relabelled"));
    }
    let listed: BTreeSet<String> = status_list(env, "shelf", "books", "slots")
        .into_iter()
        .collect();
    if listed != want || jsonpath(env, "shelf", "books", "{.status.label}") != label {
        return Err("status behind".into());
    }
    if ready(env, "shelf", "books").0 != "True" {
        return Err("not Ready".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_writes_nothing_after_it_resumes() {
    install_shelf_crd();
    let env = TestEnv::new("fault-pause").await;
    let rules = root().join("tests/rules/process");
    let lease = [
        "--leader-elect",
        "--leader-elect-namespace",
        env.ns.as_str(),
    ];
    let mut a = Operator::start_with_rules(&env.ns, &rules, &lease);
    wait_for("a leads", T, || async { a.log().contains("became leader") }).await;
    let b = Operator::start_with_rules(&env.ns, &rules, &lease);
    wait_for("b stands by", T, || async {
        b.log().contains("waiting for leadership")
    })
    .await;
    env.apply_yaml(&shelf("books", 60, "old"));
    wait_for("the scale under way", T, || async {
        slots(&env).len() >= 5
    })
    .await;
    a.pause();
    let paused = Instant::now();
    let at_pause = slots(&env).len();
    assert!(at_pause < 60, "paused mid-way ({at_pause} slots)");
    env.apply_yaml(&shelf("books", 12, "new"));

    wait_for("b takes over", T, || async {
        b.log().contains("became leader")
    })
    .await;
    assert!(
        paused.elapsed() > Duration::from_secs(10),
        "b waited for the lease to expire ({:?})",
        paused.elapsed()
    );
    wait_for_ok("b converged", T, || async {
        shelf_converged(&env, 12, "new")
    })
    .await;
    let before = slots(&env);

    let mark = audit::Mark::now();
    a.resume();
    let status = a.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the resumed leader stops with an error:\n{}",
        a.log()
    );
    assert!(a.log().contains("lost leadership"), "{}", a.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = mark.operator_writes_and_events_where(|w| w.namespace == env.ns);
    assert!(
        writes.is_empty(),
        "after resuming, the old leader wrote (or made the new one repair):\n{}",
        audit::describe(&writes)
    );
    assert_eq!(slots(&env), before, "every slot as the new leader left it");

    // Everything converges under the new leader.
    env.apply_yaml(&shelf("books", 8, "newer"));
    wait_for_ok("b converged again", T, || async {
        shelf_converged(&env, 8, "newer")
    })
    .await;
    assert_idle(&env, "under the new leader").await;
    assert!(!b.log().contains("lost leadership"));
}

// ---------------------------------------------------------------------------------------
// Hostile parents

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parents_get_clear_conditions_and_others_are_fine() {
    install_crds();
    let env = TestEnv::new("fault-hostile").await;
    let op = Operator::start(&env.ns, &[]);
    // 200 KiB of unicode, template syntax, YAML structure and quotes in one value (within
    // the rule's 256 KiB output limit), and 300 KiB of it (over the limit: refused).
    let unit = "🐳 ünïcødé {{ parent }} {% if x %} ---\nkind: Secret\n: - [x] # \"'\\ ";
    let message = unit.repeat(200 * 1024 / unit.len());
    for (name, message) in [
        ("big", message.clone()),
        ("huge", unit.repeat(300 * 1024 / unit.len())),
    ] {
        let parent = serde_json::json!({
            "apiVersion": "devsectim.io/v1alpha1", "kind": "WhaleSay",
            "metadata": {"name": name}, "spec": {"message": message}
        });
        // `create`: `apply` would copy it into an annotation, which is capped at 256 KiB.
        support::kubectl_with_input(
            &["-n", &env.ns, "create", "-f", "-"],
            Some(&serde_json::to_string(&parent).unwrap()),
        );
    }
    // Names at the limits: a WhaleSay whose Job name would pass 253 characters, a Memcached
    // whose Service name and label would pass 63, and a MyApp at exactly 63.
    let long_ws = format!("w{}", "x".repeat(252));
    let long_mc = format!("m{}", "x".repeat(63));
    let max_app = format!("a{}", "x".repeat(62));
    env.apply_yaml(&format!(
        "apiVersion: devsectim.io/v1alpha1\nkind: WhaleSay\nmetadata: {{name: {long_ws}}}\nspec: {{message: hi}}\n---\n\
         apiVersion: cache.example.com/v1alpha1\nkind: Memcached\nmetadata: {{name: {long_mc}}}\nspec: {{size: 1}}\n---\n\
         apiVersion: example.com/v1\nkind: MyApp\nmetadata: {{name: {max_app}}}\nspec: {{replicas: 1, image: 'nginx:1.27'}}\n---\n\
         apiVersion: web.example.com/v1\nkind: NginxServer\nmetadata: {{name: unicode}}\nspec: {{replicas: 1, image: 'ngïnx/wébsérvér🐳'}}\n---\n\
         apiVersion: cache.example.com/v1alpha1\nkind: Memcached\nmetadata: {{name: fine}}\nspec: {{size: 2}}\n"
    ));

    let refused = |what: &'static str, name: String, reason: &'static str| {
        let env = &env;
        async move {
            wait_for(
                &format!("{what} {name:.20}… Ready=False {reason}"),
                T,
                || async { ready(env, what, &name) == ("False".into(), reason.into()) },
            )
            .await;
            jsonpath(
                env,
                what,
                &name,
                "{.status.conditions[?(@.type==\"Ready\")].message}",
            )
        }
    };
    let why = refused("whalesay", long_ws.clone(), "Invalid").await;
    assert!(why.contains("Invalid value"), "{why}");
    let why = refused("memcached", long_mc.clone(), "Invalid").await;
    assert!(why.contains("63"), "{why}");
    let why = refused("nginxserver", "unicode".into(), "ImageTagRequired").await;
    assert!(why.contains("ngïnx/wébsérvér🐳"), "{why}");
    let why = refused("whalesay", "huge".into(), "RenderFailed").await;
    assert!(why.contains("limit"), "{why}");
    for (what, name) in [
        ("whalesay", "big"),
        ("myapp", max_app.as_str()),
        ("memcached", "fine"),
    ] {
        wait_for(&format!("{what} {name:.20}… Ready"), T, || async {
            ready(&env, what, name).0 == "True"
        })
        .await;
    }
    let command = jsonpath(
        &env,
        "job",
        "big-job",
        "{.spec.template.spec.containers[0].command[1]}",
    );
    assert!(command == message, "the message is passed byte for byte");

    // The exact child set: only the valid parents have children.
    let mut children: Vec<String> = env
        .kubectl(&[
            "get",
            "jobs,deployments,services,configmaps",
            "-l",
            "app.kubernetes.io/managed-by=ruleop",
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_string)
        .collect();
    children.sort();
    let mut want = vec![
        "deployment.apps/fine".to_string(),
        format!("deployment.apps/{max_app}"),
        "job.batch/big-job".into(),
        "service/fine".into(),
    ];
    want.sort();
    assert_eq!(children, want);
    assert!(!op.log().contains("panicked"), "{}", op.log());
    assert!(op.http_get("/healthz").starts_with("HTTP/1.1 200"));
    assert_idle(&env, "with failing parents").await;
}
