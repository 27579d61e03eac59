//! End to end: restarts, parents deleted while the operator is down, and a field handed over
//! to another manager on a hot reload. Each scenario asserts that nothing is lost: the exact
//! child set, nothing else deleted, other managers' fields untouched, no finalizer stuck, and
//! no operator write (the API server's audit log) once idle.

mod helpers;
use crate::support;

use std::collections::BTreeSet;

use helpers::*;
use serde_json::Value as Json;
use support::audit::{self, Mark};
use support::operator::{Operator, install_crds, jsonpath, ready, sample};
use support::{TestEnv, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_nothing_changed_writes_nothing_and_records_no_event() {
    install_crds();
    install_roster_crd();
    let env = TestEnv::new("e2e-restart").await;
    let dir = rules_dir(&[
        reference("memcached"),
        reference("podset"),
        reference("etcdcluster"),
        roster_rule(),
    ]);
    let mut op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    for s in ["memcached", "podset", "etcdcluster"] {
        env.apply_yaml(&sample(s));
    }
    env.apply_yaml(&member("ann", "crew"));
    env.apply_yaml(&member("bob", "crew"));
    env.apply_yaml(&roster("crew", 2));
    let parents = [
        ("memcached", "example-memcached"),
        ("podset", "example-podset"),
        ("etcdcluster", "prod-etcd"),
        ("roster", "crew"),
    ];
    wait_for("every parent Ready", T, || async {
        parents
            .iter()
            .all(|(k, n)| ready(&env, resource(k), n).0 == "True")
    })
    .await;
    expect_children(
        &env,
        "memcached",
        &set(&["Deployment/example-memcached", "Service/example-memcached"]),
    )
    .await;
    expect_children(
        &env,
        "etcdcluster",
        &set(&[
            "ConfigMap/prod-etcd-config",
            "CronJob/prod-etcd-backup",
            "Service/prod-etcd",
            "StatefulSet/prod-etcd",
        ]),
    )
    .await;
    expect_children(
        &env,
        "roster",
        &set(&[
            "ConfigMap/crew-seat-0",
            "ConfigMap/crew-seat-1",
            "ConfigMap/crew-summary",
        ]),
    )
    .await;
    wait_for("three pods, listed in podNames", T, || async {
        let pods: BTreeSet<String> = names(&children(&env, "podset"))
            .into_iter()
            .filter_map(|n| n.strip_prefix("Pod/").map(str::to_string))
            .collect();
        let listed: BTreeSet<String> = serde_json::from_str(&jsonpath(
            &env,
            "podset",
            "example-podset",
            "{.status.podNames}",
        ))
        .unwrap_or_default();
        pods.len() == 3 && pods == listed
    })
    .await;
    assert_eq!(
        jsonpath(&env, "configmap", "crew-summary", "{.data.members}"),
        "ann,bob"
    );
    assert_eq!(
        serde_json::from_str::<Json>(&jsonpath(&env, "configmap", "crew-summary", "{.data.spec}"))
            .unwrap(),
        serde_json::json!({"seats": 2, "motto": "it's \"ours\": {yes}"}),
        "tojson in a quoted scalar is the JSON text"
    );
    // A field another manager owns on a child.
    env.kubectl(&["label", "deployment", "example-memcached", "team=ops"]);
    settle(&env).await;
    let before = state(&env, &parents);
    assert!(
        before.iter().all(|(status, _)| status["conditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty())),
        "{before:?}"
    );

    for how in ["SIGTERM", "SIGKILL"] {
        if how == "SIGTERM" {
            op.stop();
        } else {
            op.kill();
        }
        let mark = Mark::now();
        op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
        wait_for(
            &format!("every rule reconciled its parent after {how}"),
            T,
            || async {
                parents.iter().all(|(rule, _)| {
                    op.counter("ruleop_reconciles_total", &format!("rule=\"{rule}\"")) >= 1.0
                })
            },
        )
        .await;
        tokio::time::sleep(IDLE).await;
        let writes = operator_writes(&mark, &env.ns);
        assert!(
            writes.is_empty(),
            "restart after {how} with nothing changed writes nothing, no Event either:\n{}",
            audit::describe(&writes)
        );
        assert_eq!(
            state(&env, &parents),
            before,
            "after {how}: statuses (every lastTransitionTime) and children (same uids) unchanged"
        );
        assert_eq!(
            jsonpath(
                &env,
                "deployment",
                "example-memcached",
                "{.metadata.labels.team}"
            ),
            "ops",
            "another manager's field is untouched"
        );
    }
    // Let the namespace go: nothing is left to run the cleanup once the operator stops.
    op.stop();
    for (kind, name) in [("etcdcluster", "prod-etcd"), (ROSTER, "crew")] {
        env.kubectl(&[
            "patch",
            kind,
            name,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

fn picket(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: lifecycle.test.ruleop.dev/v1\nkind: Picket\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// `(reason, count)` of each Event about `name` (a series' count, 1 without one).
fn event_counts(env: &TestEnv, name: &str) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = events_about(env, name)
        .iter()
        .map(|e| {
            let reason = e["reason"].as_str().unwrap_or_default().to_string();
            (reason, e["series"]["count"].as_i64().unwrap_or(1))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_in_conflict_or_refused_are_announced_once_and_restart_silently() {
    install_roster_crd();
    let env = TestEnv::new("e2e-restart-bad").await;
    let dir = rules_dir(&[picket_rule()]);
    // Holds the name of `held`'s post; ConfigMaps are watched for ruleop's own objects only,
    // so the plan cannot see it: the conflict is found when writing.
    env.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held-post}\ndata: {a: b}\n");
    let mut op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&picket("held", "{size: 1}"));
    env.apply_yaml(&picket("bad", "{colour: red}"));
    let parents = [("picket", "held"), ("picket", "bad")];
    wait_for("held in Conflict, bad refused", T, || async {
        ready(&env, "picket", "held") == ("False".into(), "Conflict".into())
            && ready(&env, "picket", "bad") == ("False".into(), "SizeRequired".into())
    })
    .await;
    settle(&env).await;
    // One occurrence each, one count: the status write that shows it reconciles the parent
    // again, which must not announce it a second time; never ready, so no `Ready` Event.
    assert_eq!(event_counts(&env, "held"), [("Conflict".to_string(), 1)]);
    assert_eq!(event_counts(&env, "bad"), [("SizeRequired".to_string(), 1)]);
    let before = state(&env, &parents);

    for how in ["SIGTERM", "SIGKILL"] {
        if how == "SIGTERM" {
            op.stop();
        } else {
            op.kill();
        }
        let mark = Mark::now();
        op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
        wait_for(
            &format!("both parents reconciled after {how}"),
            T,
            || async { op.counter("ruleop_reconciles_total", "rule=\"picket\"") >= 2.0 },
        )
        .await;
        tokio::time::sleep(IDLE).await;
        let writes = operator_writes(&mark, &env.ns);
        assert!(
            writes.is_empty(),
            "restart after {how} of parents in Conflict or refused writes nothing, no Event either:\n{}",
            audit::describe(&writes)
        );
        assert_eq!(
            state(&env, &parents),
            before,
            "after {how}: statuses (every lastTransitionTime) unchanged"
        );
    }
    op.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_deleted_while_the_operator_is_down_are_cleaned_up_on_restart() {
    install_crds();
    install_roster_crd();
    let env = TestEnv::new("e2e-downdel").await;
    // memcached: no finalizer (garbage collection only); etcdcluster and roster: cleanup.
    let dir = rules_dir(&[
        reference("memcached"),
        reference("etcdcluster"),
        roster_rule(),
    ]);
    let mut op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&sample("memcached"));
    env.apply_yaml(&sample("etcdcluster"));
    env.apply_yaml(&member("ann", "crew"));
    env.apply_yaml(&member("bob", "crew"));
    env.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bystander}\ndata: {a: b}\n");
    env.apply_yaml(&roster("crew", 2));
    let parents = [
        ("memcached", "example-memcached"),
        ("etcdcluster", "prod-etcd"),
        (ROSTER, "crew"),
    ];
    wait_for("every parent Ready", T, || async {
        parents.iter().all(|(k, n)| ready(&env, k, n).0 == "True")
    })
    .await;
    for (kind, name) in &parents[1..] {
        assert!(
            jsonpath(&env, kind, name, "{.metadata.finalizers}").contains("ruleop.dev/cleanup"),
            "{kind}/{name} carries the finalizer"
        );
    }
    expect_children(
        &env,
        "roster",
        &set(&[
            "ConfigMap/crew-seat-0",
            "ConfigMap/crew-seat-1",
            "ConfigMap/crew-summary",
        ]),
    )
    .await;
    let foreign: Vec<(&str, String)> = ["ann", "bob", "bystander"]
        .into_iter()
        .map(|n| (n, uid(&env, "configmap", n)))
        .collect();

    op.kill();
    for (kind, name) in &parents {
        env.kubectl(&["delete", kind, name, "--wait=false"]);
    }
    // Without the operator, garbage collection removes the memcached children; the
    // finalizer holds the other parents.
    wait_for("Memcached and its children gone", T, || async {
        env.get("memcached", "example-memcached").is_none()
            && children(&env, "memcached").is_empty()
    })
    .await;
    for (kind, name) in &parents[1..] {
        let obj = env.get(kind, name).expect("held by the finalizer");
        assert!(!obj["metadata"]["deletionTimestamp"].is_null());
    }

    op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    wait_for("cleanup ran and released both parents", T, || async {
        env.get("etcdcluster", "prod-etcd").is_none() && env.get(ROSTER, "crew").is_none()
    })
    .await;
    for rule in ["etcdcluster", "roster"] {
        expect_children(&env, rule, &BTreeSet::new()).await;
    }
    for (name, before) in &foreign {
        assert_eq!(
            &uid(&env, "configmap", name),
            before,
            "{name}: not ruleop's, never deleted"
        );
    }
    let reasons = env.kubectl(&[
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name}/{.reason}{\"\\n\"}{end}",
    ]);
    for name in ["prod-etcd", "crew"] {
        for reason in ["CleanupStarted", "CleanupDone"] {
            assert!(
                reasons.lines().any(|l| l == format!("{name}/{reason}")),
                "{name}: {reason} recorded:\n{reasons}"
            );
        }
    }
    assert_idle(&env, "after the cleanup").await;
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_handed_over_on_a_hot_reload_keeps_its_value() {
    install_roster_crd();
    let env = TestEnv::new("e2e-handover").await;
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "squad.yaml", &squad_rule(false));
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&roster("crew", 3));
    wait_for("Deployment at 3 and tally 30", T, || async {
        jsonpath(&env, "deployment", "crew-web", "{.spec.replicas}") == "3"
            && jsonpath(&env, "configmap", "crew-tally", "{.data.tally}") == "30"
            && ready(&env, ROSTER, "crew").0 == "True"
    })
    .await;
    let expected = set(&["ConfigMap/crew-tally", "Deployment/crew-web"]);
    expect_children(&env, "squad", &expected).await;
    let uids = children(&env, "squad");
    settle(&env).await;

    publish(dir.path(), "squad.yaml", &squad_rule(true));
    support::wait_for_ok("replicas and tally handed over, values kept", T, || async {
        let with_fields = |what: &str, name: &str| {
            env.try_kubectl(&["get", what, name, "-o", "json", "--show-managed-fields"])
                .ok()
                .map(|s| serde_json::from_str::<Json>(&s).unwrap())
        };
        let (Some(web), Some(tally)) = (
            with_fields("deployment", "crew-web"),
            with_fields("configmap", "crew-tally"),
        ) else {
            panic!("a child disappeared");
        };
        // Checked on every poll: a value lost even briefly fails here.
        assert_eq!(
            web["spec"]["replicas"], 3,
            "handing over never changes the value"
        );
        assert_eq!(
            tally["data"]["tally"], "30",
            "handing over never changes the value"
        );
        let moved = |obj: &Json, path: &[&str]| {
            !applies(obj, "ruleop", path) && applies(obj, "ruleop-handover", path)
        };
        if moved(&web, &["spec", "replicas"]) && moved(&tally, &["data", "tally"]) {
            Ok(())
        } else {
            Err(format!(
                "managedFields:\n{}\n{}\noperator log:\n{}",
                web["metadata"]["managedFields"],
                tally["metadata"]["managedFields"],
                op.log()
            ))
        }
    })
    .await;
    assert_idle(&env, "after the hand-over").await;
    assert_eq!(
        jsonpath(&env, "deployment", "crew-web", "{.spec.replicas}"),
        "3"
    );
    assert_eq!(
        children(&env, "squad"),
        uids,
        "same children, none replaced"
    );

    // The next writer takes the fields; ruleop leaves them and still applies the others.
    env.kubectl(&["scale", "deployment", "crew-web", "--replicas=5"]);
    env.kubectl(&[
        "patch",
        "configmap",
        "crew-tally",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"tally":"99"}}"#,
    ]);
    env.kubectl(&[
        "patch",
        ROSTER,
        "crew",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"motto":"new"}}"#,
    ]);
    wait_for("the motto updated", T, || async {
        jsonpath(&env, "configmap", "crew-tally", "{.data.motto}") == "new"
    })
    .await;
    settle(&env).await;
    assert_eq!(
        jsonpath(&env, "deployment", "crew-web", "{.spec.replicas}"),
        "5"
    );
    assert_eq!(
        jsonpath(&env, "configmap", "crew-tally", "{.data.tally}"),
        "99"
    );
    assert_eq!(
        children(&env, "squad"),
        uids,
        "same children, none replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinal_seats_never_reach_the_count_while_a_lower_one_terminates() {
    install_roster_crd();
    let env = TestEnv::new("e2e-ordinal").await;
    // The roster rule without its finalizer: the namespace goes with the test.
    let text = std::fs::read_to_string(roster_rule()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    publish(
        dir.path(),
        "roster.yaml",
        &text[..text.find("  finalizer:").unwrap()],
    );
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&roster("crew", 3));
    let seats = |n: &[u32]| {
        let mut s: Vec<String> = n
            .iter()
            .map(|i| format!("ConfigMap/crew-seat-{i}"))
            .collect();
        s.push("ConfigMap/crew-summary".into());
        s.into_iter().collect::<BTreeSet<_>>()
    };
    expect_children(&env, "roster", &seats(&[0, 1, 2])).await;
    // Seat 0 is deleted but held terminating by another controller's finalizer.
    env.kubectl(&[
        "patch",
        "configmap",
        "crew-seat-0",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["test.ruleop.dev/hold"]}}"#,
    ]);
    env.kubectl(&["delete", "configmap", "crew-seat-0", "--wait=false"]);
    env.kubectl(&[
        "patch",
        ROSTER,
        "crew",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"seats":2}}"#,
    ]);
    // Index 2 is at the count: it goes although index 0 is still terminating.
    expect_children(&env, "roster", &seats(&[1])).await;
    settle(&env).await;
    assert!(
        env.get("configmap", "crew-seat-3").is_none()
            && env.get("configmap", "crew-seat-2").is_none(),
        "nothing at or above the count"
    );
    assert!(
        !env.get("configmap", "crew-seat-0").unwrap()["metadata"]["deletionTimestamp"].is_null(),
        "seat 0 still terminating"
    );
    // Released, seat 0 comes back under its own index.
    env.kubectl(&[
        "patch",
        "configmap",
        "crew-seat-0",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    expect_children(&env, "roster", &seats(&[0, 1])).await;
    assert_idle(&env, "two seats").await;
}
