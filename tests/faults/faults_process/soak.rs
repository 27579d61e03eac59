//! A seeded random fault schedule (in the style of Sieve and Acto): two leader-elected
//! replicas, each behind its own fault proxies, run five differently shaped rules (a reference
//! rule, collections, ordinal replicas, a built-in parent, a slow template) over many parents
//! while a schedule drawn from one seed kills, pauses and cuts them off, throttles their
//! requests, edits and deletes children by hand, changes parents and reloads rules. At the end
//! the faults heal and the test asserts the exact child set, statuses that tell the truth, no
//! write by a replica outside its term (audit log) and zero writes over an idle window.
//!
//! `make test` runs a short schedule with a fixed seed; `make soak SEED=… MINUTES=…` a long one.
//! The seed and every step are printed (and printed again on failure) so a run can be replayed.

use std::path::Path;
use std::time::{Duration, Instant};

use super::soak_model::{
    Model, REV, Rng, SOAK_RULES, children_match, podsets_match, statuses_match,
    writes_outside_terms,
};
use crate::support::audit::{self, Write};
use crate::support::faultproxy::{FaultProxy, Mode};
use crate::support::operator::{Operator, install_crds, root};
use crate::support::{TestEnv, install_crds_at, wait_for, wait_for_ok};

/// The seed of the short run in `make test`.
const DEFAULT_SEED: u64 = 20_261_207;
/// How long the short run's schedule lasts.
const DEFAULT_SCHEDULE: Duration = Duration::from_secs(75);
/// Parents of each kind in the short run (the long run scales them with `RULEOP_SOAK_PARENTS`).
const DEFAULT_PARENTS: usize = 24;
/// How long convergence may take once every fault has healed.
const CONVERGE: Duration = Duration::from_secs(300);
/// Quiet time after convergence in which neither replica may write.
const IDLE: Duration = Duration::from_secs(10);

/// One replica: a `ruleop run` process behind a TCP proxy (resets, black holes, frozen
/// connections) chained to an HTTP proxy (429/503 answers), restarted when it exits as a
/// Deployment's pod would be.
struct Replica {
    name: &'static str,
    op: Option<Operator>,
    tcp: FaultProxy,
    http: FaultProxy,
    paused_until: Option<Instant>,
    blackholed_until: Option<Instant>,
}

impl Replica {
    fn new(name: &'static str) -> Replica {
        let http = FaultProxy::start(Mode::Http);
        let tcp = FaultProxy::start_to(Mode::Tcp, http.kubeconfig());
        Replica {
            name,
            op: None,
            tcp,
            http,
            paused_until: None,
            blackholed_until: None,
        }
    }

    fn start(&mut self, env: &TestEnv, rules: &Path) {
        let args = [
            "--leader-elect",
            "--leader-elect-namespace",
            env.ns.as_str(),
        ];
        self.op = Some(Operator::start_as(
            &env.ns,
            rules,
            &args,
            self.tcp.kubeconfig(),
        ));
    }

    /// Restarts the process if it exited (a lost lease ends it on purpose).
    fn supervise(&mut self, env: &TestEnv, rules: &Path, log: &mut Schedule) {
        let exited = self
            .op
            .as_mut()
            .is_none_or(|op| op.wait_exit(Duration::ZERO).is_some());
        if exited && self.paused_until.is_none() {
            log.note(format!("{} exited; restarted", self.name));
            self.start(env, rules);
        }
    }

    fn heal(&mut self, now: Instant, all: bool) {
        if self.paused_until.is_some_and(|t| all || t <= now) {
            if let Some(op) = &self.op {
                op.resume();
            }
            self.paused_until = None;
        }
        if self.blackholed_until.is_some_and(|t| all || t <= now) {
            self.tcp.pass();
            self.blackholed_until = None;
        }
        if all {
            self.tcp.pass();
            self.http.clear();
        }
    }
}

/// The steps taken, with their time: printed at the start of each step and again on failure.
struct Schedule {
    seed: u64,
    start: Instant,
    steps: Vec<String>,
}

impl Schedule {
    fn note(&mut self, step: String) {
        let line = format!("{:>7.1}s {step}", self.start.elapsed().as_secs_f64());
        eprintln!("soak: {line}");
        self.steps.push(line);
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "soak FAILED with seed {} (replay: make soak SEED={}); schedule:\n{}",
                self.seed,
                self.seed,
                self.steps.join("\n")
            );
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Writes a rule file the way an editor's save lands: a new file renamed over the old one.
fn write_rule(dir: &Path, name: &str, rev: u32) {
    let source = root().join(format!("tests/rules/soak/{name}.yaml"));
    let text = std::fs::read_to_string(&source).unwrap();
    let text = text.replace(&format!("{REV}: \"1\""), &format!("{REV}: \"{rev}\""));
    let tmp = dir.join(format!(".{name}.yaml.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.yaml"))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_fault_schedule_loses_nothing() {
    let seed = env_number("RULEOP_SOAK_SEED").unwrap_or(DEFAULT_SEED);
    let schedule = env_number("RULEOP_SOAK_MINUTES")
        .map(|m| Duration::from_secs(m * 60))
        .unwrap_or(DEFAULT_SCHEDULE);
    let parents = env_number("RULEOP_SOAK_PARENTS").map_or(DEFAULT_PARENTS, |n| n as usize);
    eprintln!("soak: seed {seed}, schedule {schedule:?}, {parents} parents of each kind");
    let mut rng = Rng(seed);
    let mut log = Schedule {
        seed,
        start: Instant::now(),
        steps: Vec::new(),
    };

    install_crds();
    install_crds_at(&root().join("tests/rules/soak/crds"));
    let env = TestEnv::new("soak").await;
    let rules = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("rules/podset.yaml"),
        rules.path().join("podset.yaml"),
    )
    .unwrap();
    let mut model = Model::default();
    for name in SOAK_RULES {
        write_rule(rules.path(), name, 1);
        model.revs.insert(name, 1);
    }
    for _ in 0..parents {
        let n = model.name("c");
        let spec = (rng.below(4), format!("l{}", rng.below(9)));
        model.crates.insert(n, spec);
        let n = model.name("b");
        let spec = (Model::items(&mut rng), format!("t{}", rng.below(9)));
        model.bundles.insert(n, spec);
        let n = model.name("d");
        model.deployments.insert(n, rng.below(2));
    }
    for _ in 0..parents.div_ceil(6) {
        let n = model.name("p");
        model.podsets.insert(n, rng.below(3));
    }
    for _ in 0..2 {
        let n = model.name("f");
        model.furnaces.insert(n, 3 + rng.below(4));
    }
    env.apply_yaml(&model.all_yaml());

    // From before the first replica starts: the term check needs the lease's first write.
    let mark = audit::Mark::now();
    let mut replicas = [Replica::new("a"), Replica::new("b")];
    for r in &mut replicas {
        r.start(&env, rules.path());
    }
    wait_for("a leader", Duration::from_secs(60), || async {
        replicas.iter().any(|r| {
            r.op.as_ref()
                .is_some_and(|op| op.log().contains("became leader"))
        })
    })
    .await;

    let begin = Instant::now();
    while begin.elapsed() < schedule {
        let now = Instant::now();
        for r in &mut replicas {
            r.heal(now, false);
            r.supervise(&env, rules.path(), &mut log);
        }
        let which = rng.below(2);
        match rng.below(16) {
            0 => {
                let r = &mut replicas[which];
                if r.paused_until.is_none()
                    && let Some(op) = &mut r.op
                {
                    log.note(format!("SIGKILL {}", r.name));
                    op.kill();
                    r.op = None;
                }
            }
            1 => {
                let r = &mut replicas[which];
                if r.paused_until.is_none()
                    && let Some(op) = &r.op
                {
                    let d = rng.secs(3, 20);
                    log.note(format!("SIGSTOP {} for {d:?}", r.name));
                    op.pause();
                    r.paused_until = Some(now + d);
                }
            }
            2 => {
                log.note(format!("reset {}'s connections", replicas[which].name));
                replicas[which].tcp.reset();
            }
            3 => {
                let r = &mut replicas[which];
                if r.blackholed_until.is_none() {
                    let d = rng.secs(2, 12);
                    log.note(format!("black-hole {} for {d:?}", r.name));
                    r.tcp.blackhole();
                    r.blackholed_until = Some(now + d);
                }
            }
            4 => {
                log.note(format!(
                    "freeze {}'s open connections",
                    replicas[which].name
                ));
                replicas[which].tcp.freeze();
            }
            5 => {
                let code = if rng.below(2) == 0 { 429 } else { 503 };
                let method = *rng.pick(&["*", "PATCH", "POST", "GET"]).unwrap();
                let times = 5 + rng.below(30) as u32;
                log.note(format!(
                    "{code} x{times} for {method} to {}",
                    replicas[which].name
                ));
                replicas[which]
                    .http
                    .fault(code, method, "/", Some(1), Some(times));
            }
            6 | 7 => {
                let names: Vec<String> = model
                    .expected()
                    .into_keys()
                    .filter(|k| k.starts_with("configmap/"))
                    .collect();
                if let Some(key) = rng.pick(&names) {
                    let name = key.trim_start_matches("configmap/");
                    log.note(format!("hand edit of configmap {name}"));
                    let _ = env.try_kubectl(&["patch", "configmap", name, "--type", "merge", "-p", r#"{"data":{"label":"hand","tag":"hand","replicas":"hand"},"metadata":{"labels":{"soak.ruleop.test/rev":"hand"}}}"#]);
                }
            }
            8 => {
                let names: Vec<String> = model.expected().into_keys().collect();
                if let Some(key) = rng.pick(&names) {
                    log.note(format!("delete {key}"));
                    let _ = env.try_kubectl(&["delete", key, "--wait=false"]);
                }
            }
            9 | 10 => {
                let yaml = match rng.below(5) {
                    0 => {
                        let names: Vec<String> = model.crates.keys().cloned().collect();
                        let Some(n) = rng.pick(&names).cloned() else {
                            continue;
                        };
                        let spec = (rng.below(5), format!("l{}", rng.below(9)));
                        let yaml = Model::crate_yaml(&n, &spec);
                        model.crates.insert(n, spec);
                        yaml
                    }
                    1 => {
                        let names: Vec<String> = model.bundles.keys().cloned().collect();
                        let Some(n) = rng.pick(&names).cloned() else {
                            continue;
                        };
                        let spec = (Model::items(&mut rng), format!("t{}", rng.below(9)));
                        let yaml = Model::bundle_yaml(&n, &spec);
                        model.bundles.insert(n, spec);
                        yaml
                    }
                    2 => {
                        let names: Vec<String> = model.deployments.keys().cloned().collect();
                        let Some(n) = rng.pick(&names).cloned() else {
                            continue;
                        };
                        let r = rng.below(3);
                        model.deployments.insert(n.clone(), r);
                        Model::deployment_yaml(&n, r)
                    }
                    3 => {
                        let names: Vec<String> = model.podsets.keys().cloned().collect();
                        let Some(n) = rng.pick(&names).cloned() else {
                            continue;
                        };
                        let r = rng.below(4);
                        model.podsets.insert(n.clone(), r);
                        Model::podset_yaml(&n, r)
                    }
                    _ => {
                        let names: Vec<String> = model.furnaces.keys().cloned().collect();
                        let Some(n) = rng.pick(&names).cloned() else {
                            continue;
                        };
                        let h = 2 + rng.below(5);
                        model.furnaces.insert(n.clone(), h);
                        Model::furnace_yaml(&n, h)
                    }
                };
                log.note(format!(
                    "change {}",
                    yaml.lines().nth(3).unwrap_or_default()
                ));
                env.apply_yaml(&yaml);
            }
            11 => {
                if rng.below(2) == 0 {
                    let n = model.name("c");
                    let spec = (rng.below(4), format!("l{}", rng.below(9)));
                    log.note(format!("create crate {n}"));
                    env.apply_yaml(&Model::crate_yaml(&n, &spec));
                    model.crates.insert(n, spec);
                } else {
                    let n = model.name("b");
                    let spec = (Model::items(&mut rng), format!("t{}", rng.below(9)));
                    log.note(format!("create bundle {n}"));
                    env.apply_yaml(&Model::bundle_yaml(&n, &spec));
                    model.bundles.insert(n, spec);
                }
            }
            12 => {
                if rng.below(2) == 0 {
                    let names: Vec<String> = model.crates.keys().cloned().collect();
                    if let Some(n) = rng.pick(&names).cloned() {
                        log.note(format!("delete crate {n}"));
                        env.kubectl(&["delete", "crate", &n, "--wait=false"]);
                        model.crates.remove(&n);
                    }
                } else {
                    let names: Vec<String> = model.deployments.keys().cloned().collect();
                    if let Some(n) = rng.pick(&names).cloned() {
                        log.note(format!("delete deployment {n}"));
                        env.kubectl(&["delete", "deployment", &n, "--wait=false"]);
                        model.deployments.remove(&n);
                    }
                }
            }
            13 => {
                let name = *rng.pick(&SOAK_RULES).unwrap();
                let rev = model.revs[name] + 1;
                log.note(format!("reload: {name}.yaml at revision {rev}"));
                write_rule(rules.path(), name, rev);
                model.revs.insert(name, rev);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200) as u64)).await;
    }

    log.note("heal every fault".into());
    for r in &mut replicas {
        r.heal(Instant::now(), true);
        r.supervise(&env, rules.path(), &mut log);
    }
    // Replicas that exit meanwhile are restarted, so this is a loop rather than `wait_for_ok`.
    let healed = Instant::now();
    loop {
        for r in &mut replicas {
            r.supervise(&env, rules.path(), &mut log);
        }
        let state = children_match(&env, &model)
            .and_then(|()| podsets_match(&env, &model))
            .and_then(|()| statuses_match(&env, &model));
        match state {
            Ok(()) => break,
            Err(e) if healed.elapsed() > CONVERGE => {
                panic!("not converged {CONVERGE:?} after healing: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    log.note("converged".into());
    // Deleted parents are gone (no finalizer stuck).
    wait_for_ok("deleted parents gone", CONVERGE, || async {
        let crates = env.kubectl(&["get", "crate", "-o", "name"]);
        let have = crates.lines().count();
        (have == model.crates.len())
            .then_some(())
            .ok_or(format!("{have} crates, want {}", model.crates.len()))
    })
    .await;

    let writes = mark.writes();
    // Refusals of what ruleop sent (invalid, or a patch the schema cannot hold: 500 from
    // server-side apply). The proxies' injected 429/503 answers never reach the audit log.
    let refused: Vec<Write> = writes
        .iter()
        .filter(|w| w.by_operator() && w.namespace == env.ns && [400, 422, 500].contains(&w.code))
        .cloned()
        .collect();
    assert!(
        refused.is_empty(),
        "the API server refused ruleop's writes:\n{}",
        audit::describe(&refused)
    );
    let outside = writes_outside_terms(&writes, &env.ns);
    assert!(
        outside.is_empty(),
        "writes outside their replica's term:\n{}",
        outside.join("\n")
    );

    audit::assert_no_writes_or_events("after the soak", IDLE, |w| w.namespace == env.ns).await;
    log.note("idle: no writes".into());
}
