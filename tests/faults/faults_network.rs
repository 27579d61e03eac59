//! Network faults between ruleop and the API server, injected by `tests/faultproxy`: throttling
//! and server errors, reset, black-holed and frozen connections, conflicts, and resync timers.
//! Each scenario tells its story and then checks that nothing was lost: the exact child set,
//! other managers' fields untouched, statuses converged for the current generation, and no
//! write at all over an idle window (counted from the control plane's audit log).

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::faultproxy::{FaultProxy, Mode};
use support::operator::{Operator, root};
use support::{TestEnv, audit};

/// The rule of these scenarios: a Relay gets a ConfigMap `<name>-routes` and a ServiceAccount
/// `<name>-relay`, both holding `spec.target`.
const RULE: &str = "tests/rules/faults/relay.yaml";
/// The same rule with `resync: 2s`.
const RESYNC_RULE: &str = "tests/rules/faults/resync/relay.yaml";
/// Generous bound for convergence on a loaded 2-core machine.
const T: Duration = Duration::from_secs(90);
/// How long an idle operator is watched for writes.
const IDLE: Duration = Duration::from_secs(8);
/// "Within about a minute" of a dead connection (watches are renewed every 45 s, a silent
/// one is dropped 5 s later, and a request waits at most 55 s for an answer), with slack for
/// a loaded machine.
const DEAD_PEER: Duration = Duration::from_secs(80);

fn install_crd() {
    support::install_crds_at(&root().join("tests/rules/faults/crd"));
}

/// A namespace, a proxy (if any) and the operator reaching the cluster through it.
async fn setup(
    prefix: &str,
    mode: Option<Mode>,
    rule: &str,
    extra: &[&str],
) -> (TestEnv, Option<FaultProxy>, Operator) {
    install_crd();
    let env = TestEnv::new(prefix).await;
    let proxy = mode.map(FaultProxy::start);
    let kubeconfig = proxy.as_ref().map_or_else(
        || support::kubeconfig().to_path_buf(),
        |p| p.kubeconfig().to_path_buf(),
    );
    let rules: PathBuf = root().join(rule);
    let op = Operator::start_as(&env.ns, &rules, extra, &kubeconfig);
    (env, proxy, op)
}

/// Creates or changes the Relay `name` (the test's own writes go straight to the cluster).
fn relay(env: &TestEnv, name: &str, target: &str) {
    env.apply_yaml(&format!(
        "apiVersion: faults.ruleop.test/v1\nkind: Relay\nmetadata: {{name: {name}}}\nspec: {{target: {target}}}\n"
    ));
}

fn get_json(env: &TestEnv, what: &str, name: &str) -> Option<Json> {
    let out = env.try_kubectl(&["get", what, name, "-o", "json"]).ok()?;
    serde_json::from_str(&out).ok()
}

/// The Relay's generation and its Ready condition.
fn ready_of(env: &TestEnv, name: &str) -> Result<(i64, Json, Json), String> {
    let parent = get_json(env, "relay", name).ok_or(format!("relay {name} not found"))?;
    let generation = parent["metadata"]["generation"].as_i64().unwrap_or(0);
    let ready = parent["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .ok_or(format!(
            "relay {name} has no Ready condition: {}",
            parent["status"]
        ))?;
    Ok((generation, ready, parent["status"].clone()))
}

/// The Relay `name` is Ready for its current generation, and its children hold `target`.
fn converged(env: &TestEnv, name: &str, target: &str) -> Result<(), String> {
    let (generation, ready, status) = ready_of(env, name)?;
    let routes = get_json(env, "configmap", &format!("{name}-routes"))
        .ok_or(format!("configmap {name}-routes missing"))?;
    let relay = get_json(env, "serviceaccount", &format!("{name}-relay"))
        .ok_or(format!("serviceaccount {name}-relay missing"))?;
    let observed = status["observedGeneration"].as_i64();
    if ready["status"] != "True"
        || observed != Some(generation)
        || ready["observedGeneration"].as_i64() != Some(generation)
        || status["target"] != target
        || routes["data"]["target"] != target
        || relay["metadata"]["annotations"]["faults.ruleop.test/target"] != target
    {
        return Err(format!(
            "{name}: generation {generation}, status {status}, routes {}",
            routes["data"]
        ));
    }
    Ok(())
}

/// The Relay `name` shows a failure with `reason` for its current generation.
fn failing(env: &TestEnv, name: &str, reason: &str) -> Result<(), String> {
    let (generation, ready, status) = ready_of(env, name)?;
    let shown = ready["status"] == "False"
        && ready["reason"] == reason
        && ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("injected by faultproxy"))
        && ready["observedGeneration"].as_i64() == Some(generation)
        && status["observedGeneration"].as_i64() == Some(generation);
    if shown {
        Ok(())
    } else {
        Err(format!("{name}: generation {generation}, Ready {ready}"))
    }
}

/// Polls `check` until it holds; fails with its last answer and the operator's log tail.
async fn until(
    op: &Operator,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Duration {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return start.elapsed(),
            Err(last) if start.elapsed() >= timeout => {
                let log = op.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{what}: not within {timeout:?}; last: {last}\n--- operator log (tail) ---\n{}",
                    tail.join("\n")
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Names of the objects of `kind` that ruleop manages in the namespace.
fn managed(env: &TestEnv, kind: &str) -> BTreeSet<String> {
    env.kubectl(&[
        "get",
        kind,
        "-l",
        "app.kubernetes.io/managed-by=ruleop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// Exactly the children of `parents`: no extra, none missing.
fn assert_children(env: &TestEnv, parents: &[&str]) {
    let want = |suffix: &str| -> BTreeSet<String> {
        parents.iter().map(|p| format!("{p}-{suffix}")).collect()
    };
    assert_eq!(managed(env, "configmaps"), want("routes"), "ConfigMaps");
    assert_eq!(
        managed(env, "serviceaccounts"),
        want("relay"),
        "ServiceAccounts"
    );
}

/// No finalizer is left on any parent.
fn assert_no_finalizers(env: &TestEnv) {
    let left = env.kubectl(&[
        "get",
        "relays",
        "-o",
        "jsonpath={.items[*].metadata.finalizers}",
    ]);
    assert!(left.trim().is_empty(), "finalizers left: {left}");
}

/// The operator writes nothing over an idle window.
async fn assert_idle(env: &TestEnv) {
    audit::assert_no_writes("idle", IDLE, |w| w.namespace == env.ns).await;
}

/// Another field manager (the test, through kubectl) owns a label on a child.
fn label_child(env: &TestEnv, name: &str) {
    env.kubectl(&["label", "configmap", name, "team=blue", "--overwrite"]);
}

fn assert_label_kept(env: &TestEnv, name: &str) {
    let cm = get_json(env, "configmap", name).unwrap();
    assert_eq!(
        cm["metadata"]["labels"]["team"], "blue",
        "another manager's label on {name} is untouched: {}",
        cm["metadata"]
    );
}

/// The milliseconds between consecutive answers.
fn gaps(times: &[u64]) -> Vec<u64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Throttling (429 with `Retry-After`) and an unavailable server (503) answer the writes of
/// some parents' children. Retries go through the queue, so failing parents do not occupy the
/// two workers: a new parent converges promptly. Each failing parent shows the error on Ready
/// for its current generation, a throttled one is retried no sooner than the server asked,
/// and when the fault lifts all converge: exact children, then no writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_never_starve_healthy_parents() {
    const RETRY_AFTER: u32 = 6;
    let (env, proxy, op) = setup(
        "faults-throttle",
        Some(Mode::Http),
        RULE,
        &["--concurrency", "2"],
    )
    .await;
    let proxy = proxy.unwrap();
    let failing_parents = ["slow-a", "slow-b", "down"];
    for name in failing_parents {
        relay(&env, name, "v1");
    }
    for name in failing_parents {
        until(&op, "parents ready through the proxy", T, || {
            converged(&env, name, "v1")
        })
        .await;
    }

    // The server starts throttling slow-a's and slow-b's ConfigMap writes and failing down's;
    // then their specs change, so their children must be written.
    let cms = format!("/api/v1/namespaces/{}/configmaps", env.ns);
    let slow_a = proxy.fault(
        429,
        "PATCH",
        &format!("{cms}/slow-a-"),
        Some(RETRY_AFTER),
        None,
    );
    let slow_b = proxy.fault(
        429,
        "PATCH",
        &format!("{cms}/slow-b-"),
        Some(RETRY_AFTER),
        None,
    );
    let down = proxy.fault(503, "PATCH", &format!("{cms}/down-"), None, None);
    for name in failing_parents {
        relay(&env, name, "v2");
    }
    for (name, reason) in [
        ("slow-a", "Throttled"),
        ("slow-b", "Throttled"),
        ("down", "ApplyFailed"),
    ] {
        until(
            &op,
            "the failure shown for the current generation",
            T,
            || failing(&env, name, reason),
        )
        .await;
    }

    // A new parent gets its children while both workers could be held by failing parents.
    relay(&env, "fresh", "v1");
    let took = until(
        &op,
        "a healthy parent converges promptly",
        Duration::from_secs(30),
        || converged(&env, "fresh", "v1"),
    )
    .await;
    eprintln!("fresh converged in {took:?} while three parents failed");

    // The throttled parents were retried, but never sooner than Retry-After.
    until(&op, "throttled parents retried", T, || {
        match (proxy.answers(slow_a).len(), proxy.answers(slow_b).len()) {
            (a, b) if a >= 3 && b >= 3 => Ok(()),
            (a, b) => Err(format!("{a} and {b} answers")),
        }
    })
    .await;
    for id in [slow_a, slow_b] {
        let gaps = gaps(&proxy.answers(id));
        assert!(
            gaps.iter()
                .all(|g| *g >= u64::from(RETRY_AFTER) * 1000 - 50),
            "a retry came sooner than Retry-After ({RETRY_AFTER} s): gaps in ms {gaps:?}"
        );
    }
    assert!(proxy.answers(down).len() >= 2, "the 503 parent was retried");
    // The children still hold what was there before: nothing written behind the errors.
    for name in failing_parents {
        let cm = get_json(&env, "configmap", &format!("{name}-routes")).unwrap();
        assert_eq!(cm["data"]["target"], "v1", "{name}");
    }

    // The fault lifts: every parent converges, nothing lost, then quiet.
    proxy.clear();
    for name in failing_parents {
        until(&op, "recovered after the fault", T, || {
            converged(&env, name, "v2")
        })
        .await;
    }
    converged(&env, "fresh", "v1").unwrap();
    assert_children(&env, &["down", "fresh", "slow-a", "slow-b"]);
    assert_no_finalizers(&env);
    assert_idle(&env).await;
}

/// Every connection is reset (RST) while the operator runs; a change made right after is
/// acted on as soon as the watches reconnect. Nothing lost, another manager's label kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_replaced() {
    let (env, proxy, op) = setup("faults-reset", Some(Mode::Tcp), RULE, &[]).await;
    let proxy = proxy.unwrap();
    relay(&env, "a", "v1");
    until(&op, "a ready", T, || converged(&env, "a", "v1")).await;
    label_child(&env, "a-routes");

    proxy.reset();
    relay(&env, "a", "v2");
    relay(&env, "b", "v1");
    let took = until(
        &op,
        "changes after a reset acted on",
        Duration::from_secs(30),
        || converged(&env, "a", "v2").and(converged(&env, "b", "v1")),
    )
    .await;
    eprintln!("acted on {took:?} after the reset");

    assert_children(&env, &["a", "b"]);
    assert_label_kept(&env, "a-routes");
    assert_no_finalizers(&env);
    assert_idle(&env).await;
}

/// The API server vanishes without a reset: every open and new connection swallows all bytes
/// and answers nothing (a black hole). A change made meanwhile cannot be seen; once the path
/// is healthy again it is acted on within about a minute, although the old connections stay
/// silent forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_connections_are_noticed() {
    let (env, proxy, op) = setup("faults-blackhole", Some(Mode::Tcp), RULE, &[]).await;
    let proxy = proxy.unwrap();
    relay(&env, "a", "v1");
    until(&op, "a ready", T, || converged(&env, "a", "v1")).await;
    label_child(&env, "a-routes");

    proxy.blackhole();
    relay(&env, "a", "v2");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cm = get_json(&env, "configmap", "a-routes").unwrap();
    assert_eq!(
        cm["data"]["target"], "v1",
        "no path to the server: nothing acted on"
    );

    proxy.pass();
    let took = until(
        &op,
        "the change acted on after the path healed",
        DEAD_PEER,
        || converged(&env, "a", "v2"),
    )
    .await;
    eprintln!("acted on {took:?} after the black hole ended");
    relay(&env, "b", "v1");
    until(&op, "a new parent converges", T, || {
        converged(&env, "b", "v1")
    })
    .await;

    assert_children(&env, &["a", "b"]);
    assert_label_kept(&env, "a-routes");
    assert_no_finalizers(&env);
    assert_idle(&env).await;
}

/// Every open connection freezes for good (a half-open connection: nothing moves, nothing
/// closes) while new connections work. The operator notices within about a minute of the
/// freeze and acts on a change made right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_connections_are_replaced() {
    let (env, proxy, op) = setup("faults-freeze", Some(Mode::Tcp), RULE, &[]).await;
    let proxy = proxy.unwrap();
    relay(&env, "a", "v1");
    until(&op, "a ready", T, || converged(&env, "a", "v1")).await;
    label_child(&env, "a-routes");

    proxy.freeze();
    relay(&env, "a", "v2");
    let took = until(
        &op,
        "the change acted on after the freeze",
        DEAD_PEER,
        || converged(&env, "a", "v2"),
    )
    .await;
    eprintln!("acted on {took:?} after the freeze");

    assert_children(&env, &["a"]);
    assert_label_kept(&env, "a-routes");
    assert_no_finalizers(&env);
    assert_idle(&env).await;
}

/// Conflicts (409) answered for chosen writes — the updates of both children of a parent and
/// of its status — are retried without harm while another parent is created: the children
/// end as the rule says, another manager's label stays, the statuses converge and nothing
/// more is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_retried_without_harm() {
    let (env, proxy, op) = setup("faults-conflict", Some(Mode::Http), RULE, &[]).await;
    let proxy = proxy.unwrap();
    relay(&env, "a", "v1");
    until(&op, "a ready", T, || converged(&env, "a", "v1")).await;
    label_child(&env, "a-routes");

    let ns = &env.ns;
    let faults = [
        proxy.fault(
            409,
            "PATCH",
            &format!("/api/v1/namespaces/{ns}/configmaps/a-routes"),
            None,
            Some(3),
        ),
        proxy.fault(
            409,
            "PATCH",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/a-relay"),
            None,
            Some(2),
        ),
        proxy.fault(
            409,
            "PATCH",
            &format!("/apis/faults.ruleop.test/v1/namespaces/{ns}/relays/a/status"),
            None,
            Some(2),
        ),
    ];
    relay(&env, "a", "v2");
    relay(&env, "b", "v1");
    until(&op, "both converge despite the conflicts", T, || {
        converged(&env, "a", "v2").and(converged(&env, "b", "v1"))
    })
    .await;
    let answered: Vec<usize> = faults.iter().map(|id| proxy.answers(*id).len()).collect();
    assert_eq!(answered, [3, 2, 2], "every chosen write met its conflicts");

    assert_children(&env, &["a", "b"]);
    assert_label_kept(&env, "a-routes");
    assert_no_finalizers(&env);
    assert_idle(&env).await;
}

/// With `resync: 2s` every parent is reconciled about once per period when nothing changes,
/// however many changes came before (each used to leave another timer behind), and a resync
/// that finds nothing to do writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_runs_once_per_period_per_parent() {
    const PERIOD: u64 = 2;
    const WINDOW: u64 = 20;
    let (env, _proxy, op) = setup("faults-resync", None, RESYNC_RULE, &[]).await;
    let parents = ["a", "b", "c"];
    for name in parents {
        relay(&env, name, "v1");
    }
    // Several changes each, so several reconciles that each asked for a resync.
    for target in ["v2", "v3"] {
        for name in parents {
            relay(&env, name, target);
        }
        for name in parents {
            until(&op, "converged", T, || converged(&env, name, target)).await;
        }
    }

    let reconciles = || op.counter("ruleop_reconciles_total", "rule=\"relay-resync\"");
    let before = reconciles();
    let mark = audit::Mark::now();
    tokio::time::sleep(Duration::from_secs(WINDOW)).await;
    let count = reconciles() - before;
    let writes = mark.operator_writes(&env.ns);
    let expected = (parents.len() as u64 * WINDOW / PERIOD) as f64;
    assert!(
        count >= expected * 0.6 && count <= expected * 1.4,
        "{count} reconciles in {WINDOW} s for {} parents at a {PERIOD} s resync (about {expected})",
        parents.len()
    );
    assert!(
        writes.is_empty(),
        "resyncs that change nothing write nothing:\n{}",
        audit::describe(&writes)
    );
    assert_children(&env, &parents);
}
