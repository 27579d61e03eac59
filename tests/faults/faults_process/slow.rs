//! Slow templates: a rule whose renders keep a core busy for seconds, beside an ordinary rule,
//! with two leader-elected replicas. Plans run off the runtime's thread, so lease renewal,
//! probes and the API client's I/O go on: leadership never changes hands, the ordinary rule's
//! parents are served meanwhile, and every write is inside the leader's term.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::soak_model::writes_outside_terms;
use super::{T, install_shelf_crd, items, name, shelf, shelf_converged};
use crate::support::operator::{Operator, ready, root};
use crate::support::{TestEnv, audit, install_crds_at, wait_for, wait_for_ok};

/// The leader Lease's holder and transitions.
fn lease(env: &TestEnv) -> (String, i64) {
    let lease: Json =
        serde_json::from_str(&env.kubectl(&["get", "lease", "ruleop-leader", "-o", "json"]))
            .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    let transitions = lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0);
    (holder.to_string(), transitions)
}

/// The kiln's loads (ConfigMaps) created so far.
fn fired(env: &TestEnv, kiln: &str) -> usize {
    items(env, "configmaps", "ruleop.dev/rule=kiln")
        .iter()
        .filter(|c| name(c).starts_with(&format!("{kiln}-load-")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_templates_never_cost_leadership_or_other_rules_service() {
    install_shelf_crd();
    install_crds_at(&root().join("tests/rules/process/crds/kiln.yaml"));
    let env = TestEnv::new("fault-slow").await;
    let kilns = root().join("tests/rules/process/slow");
    let shelf_rule = root().join("tests/rules/process/shelf.yaml");
    let args = [
        "--rules",
        shelf_rule.to_str().unwrap(),
        "--leader-elect",
        "--leader-elect-namespace",
        env.ns.as_str(),
    ];
    // From before the first replica starts: the term check needs the lease's first write.
    let mark = audit::Mark::now();
    let a = Operator::start_with_rules(&env.ns, &kilns, &args);
    wait_for("a leads", T, || async { a.log().contains("became leader") }).await;
    let b = Operator::start_with_rules(&env.ns, &kilns, &args);
    wait_for("b stands by", T, || async {
        b.log().contains("waiting for leadership")
    })
    .await;
    let term = lease(&env);

    // Three kilns of 50 loads, each load's render a fraction of a second: each plan holds a
    // core for seconds (the runtime's renewal timer and lease deadline are 2 s and 10 s).
    let started = Instant::now();
    let kiln = |name: &str| {
        format!(
            "---\napiVersion: process.ruleop.test/v1\nkind: Kiln\nmetadata: {{name: {name}}}\nspec: {{loads: {LOADS}, heat: {HEAT}}}\n"
        )
    };
    env.apply_yaml(&(kiln("k0") + &kiln("k1") + &kiln("k2")));
    wait_for("the first plans under way", T, || async {
        a.log().contains("reconciling") || started.elapsed() > Duration::from_secs(3)
    })
    .await;
    env.apply_yaml(&shelf("books", 4, "plain"));
    wait_for_ok("the shelf served while the kilns fire", T, || async {
        shelf_converged(&env, 4, "plain")
    })
    .await;
    let kilns_done = || (0..3).all(|i| fired(&env, &format!("k{i}")) == LOADS);
    assert!(
        !kilns_done(),
        "the shelf converged while kilns were still firing ({:?} in)",
        started.elapsed()
    );
    wait_for_ok("every kiln fired", Duration::from_secs(600), || async {
        let now = lease(&env);
        if now != term {
            panic!(
                "leadership changed while the leader lived: {term:?} -> {now:?}\na:\n{}\nb:\n{}",
                a.log(),
                b.log()
            );
        }
        for i in 0..3 {
            let (n, want) = (fired(&env, &format!("k{i}")), LOADS);
            if n != want {
                return Err(format!("k{i}: {n} of {want} loads"));
            }
            if ready(&env, "kiln", &format!("k{i}")).0 != "True" {
                return Err(format!("k{i} not Ready"));
            }
        }
        Ok(())
    })
    .await;
    let took = started.elapsed();
    // A few more renewals with everything converged.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        lease(&env),
        term,
        "the same holder and transitions over the whole run"
    );
    assert!(!a.log().contains("lost leadership"), "{}", a.log());
    assert!(!b.log().contains("became leader"), "{}", b.log());
    // One term throughout (the Lease says so), and every write ruleop made in the namespace
    // inside the leader's term (the audit log, replicas told apart by their User-Agent).
    let writes = mark.writes();
    let refused: Vec<_> = writes
        .iter()
        .filter(|w| w.by_operator() && w.resource == "leases" && !w.succeeded())
        .filter(|w| w.namespace == env.ns)
        .cloned()
        .collect();
    assert!(
        refused.is_empty(),
        "lease writes refused (a contested term):\n{}",
        audit::describe(&refused)
    );
    let outside = writes_outside_terms(&writes, &env.ns);
    assert!(
        outside.is_empty(),
        "writes outside the leader's term:\n{}",
        outside.join("\n")
    );
    assert!(
        took > Duration::from_secs(10),
        "the kilns were heavy enough to have held a thread past the lease deadline ({took:?})"
    );
    drop((a, b));
}

/// Loads per kiln, and the steps of arithmetic (× 100) each load's render runs.
const LOADS: usize = 50;
const HEAT: usize = 300;
