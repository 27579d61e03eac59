//! End to end: staged rollouts (`spec.rollout.strategy: Staged`). A rule change moves the
//! canaries first, then exact shares of the rest, each step only once the parents moved so
//! far are Ready on the new revision; a change that fails halts after the canary step with
//! `RolloutHalted` and an Event naming the parents, and a revert moves only the canaries
//! back. Progress survives a SIGKILL of the operator. Writes are counted from the audit log.
//!
//! The first test runs the issue's 200 parents (10 canaries; about two minutes here); the
//! halt and leader tests use 20 (10 canaries), their assertions do not depend on the count.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::operator::{Operator, root, ruleop, ruleop_ok};
use support::{TestEnv, audit, kubectl, try_kubectl, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(90);
const IDLE: Duration = Duration::from_secs(8);
const HIVES: &str = "hives.rollout.test.ruleop.dev";

fn save(file: &Path, content: &str) {
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn name(i: usize) -> String {
    format!("h{i:03}")
}

/// Ten canaries among `n` parents, spread evenly.
fn is_canary(n: usize, i: usize) -> bool {
    i.is_multiple_of(n / 10)
}

/// Creates `n` Hives, ten of them labelled `tier: canary`.
fn create_hives(env: &TestEnv, n: usize) {
    let docs: Vec<String> = (0..n)
        .map(|i| {
            let labels = if is_canary(n, i) {
                "{tier: canary}"
            } else {
                "{tier: main}"
            };
            format!(
                "apiVersion: rollout.test.ruleop.dev/v1\nkind: Hive\nmetadata: {{name: {}, labels: {labels}}}\nspec: {{size: 1}}\n",
                name(i)
            )
        })
        .collect();
    env.apply_yaml(&docs.join("---\n"));
}

/// Each Hive's `ruleop.dev/revision` label ("" when none).
fn labels(env: &TestEnv) -> BTreeMap<String, String> {
    let out = env.kubectl(&[
        "get",
        HIVES,
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.ruleop\.dev/revision}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn on(labels: &BTreeMap<String, String>, revision: &str) -> Vec<String> {
    labels
        .iter()
        .filter(|(_, v)| v.as_str() == revision)
        .map(|(k, _)| k.clone())
        .collect()
}

fn edition(env: &TestEnv, hive: &str) -> String {
    try_kubectl(
        &[
            "-n",
            &env.ns,
            "get",
            "configmap",
            &format!("{hive}-comb"),
            "-o",
            "jsonpath={.data.edition}",
        ],
        None,
    )
    .unwrap_or_default()
}

fn revision(name: &str) -> serde_json::Value {
    try_kubectl(
        &["get", "rulerevisions.ruleop.dev", name, "-o", "json"],
        None,
    )
    .ok()
    .map(|s| serde_json::from_str(&s).unwrap())
    .unwrap_or_default()
}

fn condition(rev: &serde_json::Value, type_: &str) -> serde_json::Value {
    rev["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default()
}

/// The Hives (by name) the operator wrote since `mark`: the parent or one of its children.
fn written(mark: &audit::Mark, env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = mark
        .operator_writes_where(|w| w.namespace == env.ns && !w.name.is_empty())
        .iter()
        .map(|w| w.name.split('-').next().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn args(env: &TestEnv, lease: bool) -> Vec<&str> {
    let mut args = vec!["--revisions=true"];
    if lease {
        args.extend([
            "--leader-elect",
            "--leader-elect-namespace",
            env.ns.as_str(),
        ]);
    }
    args
}

fn ack(env: &TestEnv, hives: &[String]) {
    for h in hives {
        env.kubectl(&[
            "patch",
            HIVES,
            h,
            "--type=merge",
            "-p",
            r#"{"spec":{"ack":"yes"}}"#,
        ]);
    }
}

struct Setup {
    env: TestEnv,
    rule: String,
    v1: String,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(prefix: &str, n: usize) -> (Setup, Operator) {
    setup_with(prefix, n, false).await
}

/// `lease`: the operator runs with `--leader-elect` (its lease in the test's namespace).
async fn setup_with(prefix: &str, n: usize, lease: bool) -> (Setup, Operator) {
    support::install_crds_at(&root().join("crds/ruleop.dev_rulerevisions.yaml"));
    support::install_crds_at(&root().join("tests/rules/rollout/crds"));
    let env = TestEnv::new(prefix).await;
    let rule = format!("hive-{}", unique_suffix());
    let v1 = std::fs::read_to_string(root().join("tests/rules/rollout/hive.yaml"))
        .unwrap()
        .replace("name: hive\n", &format!("name: {rule}\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hive.yaml");
    save(&file, &v1);
    let op = Operator::start_with_rules(&env.ns, dir.path(), &args(&env, lease));
    create_hives(&env, n);
    wait_for("every parent on revision 1", T, || async {
        let l = labels(&env);
        l.len() == n && on(&l, "1").len() == n
    })
    .await;
    (
        Setup {
            env,
            rule,
            v1,
            file,
            _dir: dir,
        },
        op,
    )
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &[
                "delete",
                "rulerevisions.ruleop.dev",
                "-l",
                &format!("ruleop.dev/rule={}", self.rule),
                "--wait=false",
            ],
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_change_moves_canaries_then_shares_and_survives_sigkill() {
    const N: usize = 200;
    let (s, mut op) = setup("e2e-rollout", N).await;
    let env = &s.env;
    let canaries: Vec<String> = (0..N).filter(|i| is_canary(N, *i)).map(name).collect();
    let r2 = format!("{}-2", s.rule);

    // The change: a new edition, Ready only once the parent is acknowledged.
    let mark = audit::Mark::now();
    let v2 = s.v1.replace("edition: \"1\"", "edition: \"2\"").replace(
        "when: children.comb is defined",
        "when: children.comb is defined and parent.spec.ack == \"yes\"",
    );
    // `ruleop diff` shows the first step's parents, and only them.
    let proposed = tempfile::tempdir().unwrap();
    let proposed = proposed.path().join("hive.yaml");
    std::fs::write(&proposed, &v2).unwrap();
    let (_, shown) = ruleop(&[
        "diff",
        "--rule",
        proposed.to_str().unwrap(),
        "-n",
        &env.ns,
        "--kubeconfig",
        support::kubeconfig().to_str().unwrap(),
    ]);
    assert!(
        shown.contains(&format!("the first step moves 10 of {N} parents")),
        "{shown}"
    );
    for i in 0..N {
        assert_eq!(
            shown.contains(&format!("{}-comb", name(i))),
            is_canary(N, i),
            "{}: {shown}",
            name(i)
        );
    }
    save(&s.file, &v2);
    wait_for("the canaries on revision 2", T, || async {
        on(&labels(env), "2") == canaries && canaries.iter().all(|c| edition(env, c) == "2")
    })
    .await;
    tokio::time::sleep(IDLE).await;
    // The canaries are not Ready: nothing else moved, nothing else was written.
    assert_eq!(on(&labels(env), "2"), canaries);
    assert_eq!(
        written(&mark, env),
        canaries,
        "only the canaries are written"
    );
    assert_eq!(revision(&r2)["status"]["rollout"]["step"], 0);
    assert_eq!(revision(&r2)["status"]["rollout"]["from"], 1);
    assert_eq!(condition(&revision(&r2), "Progressing")["status"], "True");

    // SIGKILL mid-rollout: the restarted operator continues at the same step; no parent is
    // planned with a revision it was not moved to (nothing written outside the canaries).
    op.kill();
    let mark = audit::Mark::now();
    let op = Operator::start_with_rules(&env.ns, s._dir.path(), &["--revisions=true"]);
    wait_for("restarted operator ready", T, || async {
        op.http_get("/readyz").contains("200 OK") && op.log().contains("staged rollout continues")
    })
    .await;
    tokio::time::sleep(IDLE).await;
    assert_eq!(on(&labels(env), "2"), canaries);
    assert!(
        written(&mark, env).is_empty(),
        "nothing written after the restart: {:?}",
        written(&mark, env)
    );
    assert_eq!(revision(&r2)["status"]["rollout"]["step"], 0);
    assert!(canaries.iter().all(|c| edition(env, c) == "2"));
    assert!(
        (0..N)
            .filter(|i| !is_canary(N, *i))
            .all(|i| edition(env, &name(i)) == "1")
    );

    // The canaries Ready: the next step moves exactly 25 % of the others, and only them.
    let mark = audit::Mark::now();
    ack(env, &canaries);
    let share = (N - canaries.len()).div_ceil(4);
    wait_for("step 2 moved its share", T, || async {
        on(&labels(env), "2").len() == canaries.len() + share
    })
    .await;
    tokio::time::sleep(IDLE).await;
    let moved = on(&labels(env), "2");
    assert_eq!(moved.len(), canaries.len() + share, "{moved:?}");
    let step2: Vec<String> = moved
        .iter()
        .filter(|m| !canaries.contains(m))
        .cloned()
        .collect();
    let mut expected = canaries.clone();
    expected.extend(step2.iter().cloned());
    expected.sort();
    assert_eq!(
        written(&mark, env),
        expected,
        "the canaries' status and step 2"
    );
    assert_eq!(revision(&r2)["status"]["rollout"]["step"], 1);

    // Step 2 Ready: the rest move; then the rollout is complete and nothing is written.
    let rest: Vec<String> = (0..N).map(name).collect();
    ack(env, &rest);
    wait_for(
        "every parent on revision 2, rollout complete",
        T,
        || async {
            on(&labels(env), "2").len() == N
                && revision(&r2)["status"]["rollout"]["phase"] == "Complete"
                && (0..N).all(|i| edition(env, &name(i)) == "2")
        },
    )
    .await;
    audit::assert_no_writes("after the last step", IDLE, |w| w.namespace == env.ns).await;
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_change_halts_after_the_canaries_and_a_revert_rolls_back() {
    const N: usize = 20;
    let (s, op) = setup("e2e-rollout-halt", N).await;
    let env = &s.env;
    let canaries: Vec<String> = (0..N).filter(|i| is_canary(N, *i)).map(name).collect();
    let r2 = format!("{}-2", s.rule);

    // A key the API server refuses in a ConfigMap: every moved parent fails.
    let mark = audit::Mark::now();
    let bad = s.v1.replace(
        "edition: \"1\"",
        "edition: \"2\"\n          \"bad key!\": \"x\"",
    );
    save(&s.file, &bad);
    wait_for("the rollout halted", T, || async {
        condition(&revision(&r2), "RolloutHalted")["status"] == "True"
    })
    .await;
    let rev = revision(&r2);
    let message = condition(&rev, "RolloutHalted")["message"]
        .as_str()
        .unwrap()
        .to_string();
    for c in &canaries {
        assert!(message.contains(&format!("{}/{c}", env.ns)), "{message}");
    }
    assert_eq!(rev["status"]["rollout"]["phase"], "Halted");
    assert_eq!(rev["status"]["rollout"]["step"], 0);
    wait_for("a RolloutHalted Event naming the canaries", T, || async {
        let events = kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("involvedObject.name={r2},reason=RolloutHalted"),
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        canaries
            .iter()
            .all(|c| events.contains(&format!("{}/{c}", env.ns)))
    })
    .await;
    tokio::time::sleep(IDLE).await;
    assert_eq!(
        written(&mark, env),
        canaries,
        "0 writes to parents outside the canary step"
    );
    let kubeconfig = support::kubeconfig().to_str().unwrap().to_string();
    let status = ruleop_ok(&["rollout", "status", &s.rule, "--kubeconfig", &kubeconfig]);
    assert!(status.contains("Halted, step 1 of 3"), "{status}");
    assert!(
        status.contains(&format!("{}/{}", env.ns, canaries[0])),
        "{status}"
    );
    assert_eq!(on(&labels(env), "2"), canaries);
    assert!((0..N).all(|i| edition(env, &name(i)) == "1"));

    // The revert is a rollback: the canaries go back to revision 1, nothing else is written.
    let mark = audit::Mark::now();
    save(&s.file, &s.v1);
    wait_for("every parent back on revision 1", T, || async {
        on(&labels(env), "1").len() == N
    })
    .await;
    tokio::time::sleep(IDLE).await;
    assert_eq!(written(&mark, env), canaries, "only the canaries move back");
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_continues_the_rollout_and_pause_resume_undo_steer_it() {
    const N: usize = 20;
    let (s, mut a) = setup_with("e2e-rollout-leader", N, true).await;
    let env = &s.env;
    let kubeconfig = support::kubeconfig().to_str().unwrap().to_string();
    let cli = |verb: &str| ruleop_ok(&["rollout", verb, &s.rule, "--kubeconfig", &kubeconfig]);
    assert!(a.log().contains("became leader"));
    let b = Operator::start_with_rules(&env.ns, s._dir.path(), &args(env, true));
    wait_for("b stands by", T, || async {
        b.log().contains("waiting for leadership")
    })
    .await;
    let canaries: Vec<String> = (0..N).filter(|i| is_canary(N, *i)).map(name).collect();
    let v2 = s.v1.replace("edition: \"1\"", "edition: \"2\"").replace(
        "when: children.comb is defined",
        "when: children.comb is defined and parent.spec.ack == \"yes\"",
    );
    save(&s.file, &v2);
    wait_for("the canaries on revision 2", T, || async {
        on(&labels(env), "2") == canaries && canaries.iter().all(|c| edition(env, c) == "2")
    })
    .await;
    assert!(cli("pause").contains("rollout paused"));

    // The leader dies mid-rollout: the new one continues at the same step, paused, and
    // plans no parent with a revision it was not moved to (nothing written).
    a.kill();
    let mark = audit::Mark::now();
    wait_for("b leads and continues the rollout", T, || async {
        b.log().contains("became leader") && b.log().contains("staged rollout continues")
    })
    .await;
    ack(env, &canaries);
    tokio::time::sleep(IDLE).await;
    let moved = on(&labels(env), "2");
    assert_eq!(
        moved, canaries,
        "paused: the canaries Ready, nothing more moves"
    );
    assert_eq!(
        written(&mark, env),
        canaries,
        "only the canaries' status (Ready) is written"
    );
    let status = cli("status");
    assert!(
        status.contains("Progressing (paused), step 1 of 3"),
        "{status}"
    );

    // Resumed: the next step moves 25 % of the others.
    assert!(cli("resume").contains("rollout resumed"));
    wait_for("step 2 moved its share", T, || async {
        on(&labels(env), "2").len() == canaries.len() + (N - canaries.len()).div_ceil(4)
    })
    .await;
    // A parent created during the rollout starts on the newest revision.
    env.apply_yaml(
        "apiVersion: rollout.test.ruleop.dev/v1\nkind: Hive\nmetadata: {name: hnew, labels: {tier: main}}\nspec: {size: 1}\n",
    );
    wait_for("the new parent on revision 2", T, || async {
        labels(env).get("hnew").map(String::as_str) == Some("2") && edition(env, "hnew") == "2"
    })
    .await;
    let moved = on(&labels(env), "2");

    // Undone: exactly the moved parents go back to revision 1.
    let mark = audit::Mark::now();
    assert!(cli("undo").contains("rollout undone"));
    wait_for("every parent back on revision 1", T, || async {
        on(&labels(env), "1").len() == N + 1
            && (0..N).all(|i| edition(env, &name(i)) == "1")
            && edition(env, "hnew") == "1"
    })
    .await;
    tokio::time::sleep(IDLE).await;
    assert_eq!(written(&mark, env), moved, "only the moved parents go back");
    drop(b);
}
