//! Test support for cluster tests: one local control plane per test binary.
//!
//! A test binary declares it in its `main.rs` (`#[path = "../support/mod.rs"] mod support;`)
//! and its test files use it with `use crate::support;`. The first call to
//! [`TestEnv::new`] (or [`kubeconfig`]) starts `target/controlplane/controlplane`
//! (build it with `make controlplane`) unless `RULEOP_TEST_KUBECONFIG` names
//! the kubeconfig of a cluster that is already running. The control plane is
//! shared by every test of the binary and stops when the binary exits: it
//! watches its stdin pipe and its parent process. Each test gets its own
//! namespace from [`TestEnv::new`], deleted when the `TestEnv` is dropped.
#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod audit;
pub mod cli;
pub mod concerns;
pub mod examples;
pub mod faultproxy;
mod objects;
pub mod operator;
pub mod proxy;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use objects::{Scope, install_crds_at, is_live, live_names, live_objects, live_uids};

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// How long to wait for the control plane to print `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(120);

struct ControlPlane {
    kubeconfig: PathBuf,
    /// The kube-apiserver's audit log (mutating requests), when known.
    audit_log: Option<PathBuf>,
    // Held for the life of the process: when the test binary exits the pipe
    // closes and the control plane (run with --exit-on-stdin-eof) stops.
    _stdin: Option<Mutex<ChildStdin>>,
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// Path of the control plane binary built by `make controlplane`.
pub fn controlplane_binary() -> PathBuf {
    cli::root().join("target/controlplane/controlplane")
}

fn start_control_plane() -> Result<ControlPlane, String> {
    if let Ok(path) = std::env::var("RULEOP_TEST_KUBECONFIG")
        && !path.is_empty()
    {
        return Ok(ControlPlane {
            kubeconfig: PathBuf::from(path),
            audit_log: std::env::var_os("RULEOP_TEST_AUDIT_LOG").map(PathBuf::from),
            _stdin: None,
        });
    }
    let bin = controlplane_binary();
    if !bin.exists() {
        return Err(format!(
            "control plane binary {} is missing: run `make controlplane` first \
             (or set RULEOP_TEST_KUBECONFIG to the kubeconfig of a running cluster)",
            bin.display()
        ));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    remove_stale_files(&dir);
    let kubeconfig = dir.join(format!("controlplane-{}.kubeconfig", std::process::id()));
    let audit_log = kubeconfig.with_extension("audit.jsonl");

    let mut child = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--exit-with-parent")
        .arg("--exit-on-stdin-eof")
        .arg("--audit-log")
        .arg(&audit_log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");

    // The control plane's stderr (errors only, unless it fails) goes to a log
    // file next to the kubeconfig; its tail is kept for the error message.
    let log_path = kubeconfig.with_extension("log");
    let mut log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let tail = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let tail2 = tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            let mut t = tail2.lock().unwrap();
            t.push(line);
            if t.len() > 40 {
                t.remove(0);
            }
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let started = Instant::now();
    let res = rx.recv_timeout(START_TIMEOUT);
    let mut fail = |msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "{msg}\n--- control plane stderr (tail) ---\n{}",
            tail.lock().unwrap().join("\n")
        ))
    };
    match res {
        Ok(Some(Ok(line))) if line.starts_with("ready ") => {
            eprintln!(
                "[controlplane] ready in {:.1}s, kubeconfig {}, log {}",
                started.elapsed().as_secs_f64(),
                kubeconfig.display(),
                log_path.display()
            );
            // `child` is not waited for: it exits with this process.
            Ok(ControlPlane {
                kubeconfig,
                audit_log: Some(audit_log),
                _stdin: stdin.map(Mutex::new),
            })
        }
        Ok(Some(Ok(line))) => fail(format!(
            "control plane printed {line:?} instead of `ready PATH`"
        )),
        Ok(_) => fail("control plane exited before it was ready".to_string()),
        Err(_) => fail(format!("control plane not ready within {START_TIMEOUT:?}")),
    }
}

/// Removes the kubeconfig and log files of earlier test processes that are gone.
fn remove_stale_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("controlplane-")
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn control_plane() -> &'static ControlPlane {
    match CONTROL_PLANE.get_or_init(start_control_plane) {
        Ok(cp) => cp,
        Err(e) => panic!("{e}"),
    }
}

/// The kube-apiserver's audit log of the shared test cluster, if it has one.
pub fn audit_log() -> Option<&'static Path> {
    control_plane().audit_log.as_deref()
}

/// The admin kubeconfig of the shared test cluster (starting it if needed).
pub fn kubeconfig() -> &'static Path {
    &control_plane().kubeconfig
}

/// A `kube::Client` (cluster admin) for the shared test cluster. Create one
/// per test: a client is tied to the tokio runtime it was created on.
pub async fn client() -> Client {
    Client::try_from(admin_config().await).expect("kube client")
}

/// The admin `kube::Config` of the shared test cluster.
pub async fn admin_config() -> Config {
    let kc = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config from kubeconfig")
}

/// A client that authenticates with a bearer token (for example a service
/// account token) instead of the admin certificate.
pub async fn client_with_token(token: &str) -> Client {
    let mut config = admin_config().await;
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
        .expect("auth info with token");
    Client::try_from(config).expect("kube client with token")
}

/// Runs kubectl against the shared cluster and returns its stdout; fails the
/// test, showing stderr, if kubectl fails.
pub fn kubectl(args: &[&str]) -> String {
    kubectl_with_input(args, None)
}

/// Like [`kubectl`], feeding `input` to kubectl's stdin (for `-f -`).
pub fn kubectl_with_input(args: &[&str], input: Option<&str>) -> String {
    match try_kubectl(args, input) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// Runs kubectl; `Err` carries the command line, exit status and stderr.
pub fn try_kubectl(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run kubectl (is it installed?): {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing kubectl stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`kubectl {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Polls `check` every 250 ms until it returns true; fails the test after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_ok(what, timeout, || {
        let fut = check();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await
}

/// Polls `check` every 250 ms until it returns `Ok(value)`, and returns the
/// value; fails the test after `timeout`, showing the last `Err` message.
pub async fn wait_for_ok<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A short suffix unique within this machine and run: pid, clock and counter.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}{:x}{n}",
        std::process::id() % 0x10000,
        nanos % 0x100000
    )
}

/// How the tests of a binary share its control plane: every [`TestEnv`] holds a share, and
/// a test whose operator acts on every namespace (a rule whose parent is the Namespace kind
/// writes each one's status) holds it alone ([`TestEnv::alone`]). Shares never wait for a test
/// that waits to be alone, so a test may hold several `TestEnv`s at once; the one alone starts
/// when no share is held (at the latest when the others are done).
struct Gate {
    shares: usize,
    alone: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    shares: 0,
    alone: false,
});
static GATE_OPENED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A share of the control plane, or the whole of it; given back when dropped.
struct Hold {
    alone: bool,
}

impl Hold {
    async fn take(alone: bool) -> Hold {
        loop {
            let opened = GATE_OPENED.notified();
            tokio::pin!(opened);
            // Registered before the check, so a release between the two is not missed.
            opened.as_mut().enable();
            {
                let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
                if !gate.alone && (!alone || gate.shares == 0) {
                    if alone {
                        gate.alone = true;
                    } else {
                        gate.shares += 1;
                    }
                    return Hold { alone };
                }
            }
            opened.await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
        if self.alone {
            gate.alone = false;
        } else {
            gate.shares -= 1;
        }
        drop(gate);
        GATE_OPENED.notify_waiters();
    }
}

/// One test's view of the cluster: an admin client and a fresh namespace,
/// deleted (with everything in it) when the `TestEnv` is dropped.
pub struct TestEnv {
    pub client: Client,
    pub ns: String,
    cleanup: Mutex<Vec<Vec<String>>>,
    // Last, so it is given back after the namespace is deleted (`Drop for TestEnv` runs first).
    _hold: Hold,
}

impl TestEnv {
    /// Creates the namespace `<prefix>-<unique suffix>`, sharing the cluster with other tests.
    pub async fn new(prefix: &str) -> TestEnv {
        Self::create(prefix, Hold::take(false).await).await
    }

    /// Like [`TestEnv::new`], but waits until no other test holds a `TestEnv` and keeps
    /// the others out until dropped: for an operator that acts on every namespace.
    pub async fn alone(prefix: &str) -> TestEnv {
        Self::create(prefix, Hold::take(true).await).await
    }

    async fn create(prefix: &str, hold: Hold) -> TestEnv {
        let ns = format!("{prefix}-{}", unique_suffix());
        let client = client().await;
        let api: Api<Namespace> = Api::all(client.clone());
        let mut obj = Namespace::default();
        obj.metadata.name = Some(ns.clone());
        obj.metadata.labels = Some([("ruleop.test/owner".to_string(), "tests".to_string())].into());
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create namespace {ns}: {e}"));
        TestEnv {
            client,
            ns,
            cleanup: Mutex::new(Vec::new()),
            _hold: hold,
        }
    }

    /// A namespaced `Api<K>` in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// kubectl in this test's namespace (`-n <ns>` is added).
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.ns];
        full.extend_from_slice(args);
        kubectl(&full)
    }

    /// Like [`TestEnv::kubectl`] but returns kubectl's failure instead of panicking.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", &self.ns];
        full.extend_from_slice(args);
        try_kubectl(&full, None)
    }

    /// The object `what`/`name` of this namespace as JSON, `None` when kubectl cannot get it.
    pub fn get(&self, what: &str, name: &str) -> Option<serde_json::Value> {
        self.try_kubectl(&["get", what, name, "-o", "json"])
            .ok()
            .map(|s| serde_json::from_str(&s).unwrap())
    }

    /// `kubectl apply -f -` of a YAML document (or several) in this namespace.
    pub fn apply_yaml(&self, yaml: &str) -> String {
        kubectl_with_input(&["-n", &self.ns, "apply", "-f", "-"], Some(yaml))
    }

    /// Deletes a cluster-scoped object (e.g. a CRD) when the `TestEnv` drops.
    pub fn delete_on_drop(&self, resource: &str, name: &str) {
        self.cleanup
            .lock()
            .unwrap()
            .push(vec![resource.to_string(), name.to_string()]);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // kubectl is synchronous and independent of the (maybe finished) runtime.
        let mut items = std::mem::take(&mut *self.cleanup.lock().unwrap());
        items.push(vec!["namespace".to_string(), self.ns.clone()]);
        for item in items {
            let _ = try_kubectl(
                &[
                    "delete",
                    &item[0],
                    &item[1],
                    "--wait=false",
                    "--ignore-not-found",
                ],
                None,
            );
        }
    }
}
