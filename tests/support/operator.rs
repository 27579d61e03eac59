//! The `ruleop` binary in end-to-end tests: a `ruleop run` process, one-shot commands, and
//! the reference CRDs it serves.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The repository root.
pub fn root() -> PathBuf {
    super::cli::root()
}

/// Installs the reference CRDs once per test binary.
pub fn install_crds() {
    super::install_crds_at(&root().join("crds"));
}

/// A `ruleop run` process; stopped with SIGTERM when dropped.
pub struct Operator {
    child: Child,
    log: Arc<Mutex<String>>,
    pub metrics_port: u16,
}

/// A TCP port free on the loopback interface now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    pub fn start(ns: &str, extra: &[&str]) -> Operator {
        Self::start_with_rules(ns, &root().join("rules"), extra)
    }

    pub fn start_with_rules(ns: &str, rules: &Path, extra: &[&str]) -> Operator {
        Self::start_as(ns, rules, extra, super::kubeconfig())
    }

    /// Runs the operator with the credentials of `kubeconfig` (e.g. a ServiceAccount token).
    pub fn start_as(ns: &str, rules: &Path, extra: &[&str], kubeconfig: &Path) -> Operator {
        let mut args = vec!["--namespace", ns];
        args.extend_from_slice(extra);
        Self::spawn(rules, None, &args, kubeconfig)
    }

    /// Runs the operator in every namespace (cluster-scoped parents whose children live in
    /// namespaces they create). Its rules must govern kinds no other test uses.
    pub fn start_cluster_wide(rules: &Path, extra: &[&str]) -> Operator {
        Self::spawn(rules, None, extra, super::kubeconfig())
    }

    /// Runs the operator in `cwd`, so a relative `rules` path is resolved against it.
    pub fn start_in(ns: &str, cwd: &Path, rules: &Path, extra: &[&str]) -> Operator {
        let mut args = vec!["--namespace", ns];
        args.extend_from_slice(extra);
        Self::spawn(rules, Some(cwd), &args, super::kubeconfig())
    }

    fn spawn(rules: &Path, cwd: Option<&Path>, extra: &[&str], kubeconfig: &Path) -> Operator {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ruleop"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        // RuleRevisions are cluster-scoped and named by rule: operators of other tests that
        // load the same reference rules would share them. Only tests that ask have them.
        let revisions = extra.iter().any(|a| a.starts_with("--revisions"));
        let mut child = command
            .args(["run", "--rules", rules.to_str().unwrap()])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args((!revisions).then_some("--revisions=false"))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // RULEOP_TEST_LOG overrides the operator's log filter (e.g. `info,kube_runtime=debug`).
            .env(
                "RUST_LOG",
                std::env::var("RULEOP_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ruleop run");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Operator {
            child,
            log,
            metrics_port: port,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether this process sent the audited request: `ruleop run` names its replica in its
    /// User-Agent, ending with its pid (`ruleop/0.1.0 (host-1234)`). For a cluster-wide
    /// operator's cluster-scoped writes, which other tests' operators make too.
    pub fn sent(&self, w: &super::audit::Write) -> bool {
        w.user_agent.ends_with(&format!("-{})", self.child.id()))
    }

    pub fn metrics(&self) -> String {
        self.http_get("/metrics")
    }

    /// The raw HTTP response (status line, headers, body) of `path` on the metrics address.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return String::new();
        };
        let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Sum of a counter's samples whose line contains `filter`.
    pub fn counter(&self, name: &str, filter: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes as in a long GC pause or a frozen VM.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Operator::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        // Already gone (and reaped): its pid may belong to another process by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A reference sample (`samples/<op>.yaml`).
pub fn sample(op: &str) -> String {
    std::fs::read_to_string(root().join(format!("samples/{op}.yaml"))).unwrap()
}

/// `kubectl get WHAT NAME -o jsonpath=PATH` in the test's namespace ("" when absent).
pub fn jsonpath(env: &super::TestEnv, what: &str, name: &str, path: &str) -> String {
    env.try_kubectl(&["get", what, name, "-o", &format!("jsonpath={path}")])
        .unwrap_or_default()
}

/// `(status, reason)` of the object's `Ready` condition ("" when absent).
pub fn ready(env: &super::TestEnv, what: &str, name: &str) -> (String, String) {
    let field = |f: &str| {
        jsonpath(
            env,
            what,
            name,
            &format!("{{.status.conditions[?(@.type==\"Ready\")].{f}}}"),
        )
    };
    (field("status"), field("reason"))
}

/// Runs the `ruleop` binary under test: whether it succeeded, and its stdout then stderr.
pub fn ruleop(args: &[&str]) -> (bool, String) {
    let out = run(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the `ruleop` binary under test and returns its stdout; fails the test, showing
/// stderr, when it fails.
pub fn ruleop_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "ruleop {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(args)
        .output()
        .unwrap()
}
