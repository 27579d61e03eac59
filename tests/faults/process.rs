//! The `ruleop run` process itself: signals stop it with stderr a closed or stuck pipe, a
//! second signal forces the exit, a metrics address in use fails the start, connection errors
//! name the address tried, and `/readyz` follows rules, caches and the API server.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::operator::{free_port, install_crds, root};
use support::proxy::Proxy;
use support::{TestEnv, kubeconfig, wait_for};

const T: Duration = Duration::from_secs(60);

/// `ruleop run` on the reference rules with `kubeconfig`, metrics on `port`, stderr to `stderr`.
fn spawn(kubeconfig: &Path, port: u16, extra: &[&str], log: &str, stderr: Stdio) -> Child {
    // RuleRevisions (cluster-scoped, named by rule) would be shared by every test here.
    let revisions = extra.iter().any(|a| a.starts_with("--revisions"));
    Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(["run", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args((!revisions).then_some("--revisions=false"))
        .args(extra)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start ruleop run")
}

fn rules_args(ns: &str) -> Vec<String> {
    let rules = root().join("rules");
    vec![
        "--rules".into(),
        rules.to_str().unwrap().into(),
        "--namespace".into(),
        ns.into(),
    ]
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Stops a process a failed assertion left behind.
struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stderr until a line contains `pattern`, then closes the pipe; returns
/// the lines read. The receiver gets them once the pattern was seen (or stderr ended).
fn read_until_then_close(child: &mut Child, pattern: &'static str) -> mpsc::Receiver<String> {
    read_until(child, pattern, true)
}

/// Like [`read_until_then_close`], but keeps draining stderr (`close` false).
fn read_until(child: &mut Child, pattern: &'static str, close: bool) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(pattern) {
                break;
            }
        }
        let _ = tx.send(seen);
        if !close {
            lines.for_each(drop);
        }
        // Dropping the reader closes the pipe, like `| tee` ended by Ctrl-C.
    });
    rx
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A kubeconfig whose server is `127.0.0.1:port`, where nothing listens.
fn unreachable_kubeconfig(port: u16) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "unreachable-{}-{port}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_it_when_stderr_is_a_closed_pipe() {
    install_crds();
    let env = TestEnv::new("proc-pipe").await;
    for name in ["TERM", "INT"] {
        let port = free_port();
        let args = rules_args(&env.ns);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(kubeconfig(), port, &args, "info", Stdio::piped());
        let lines = read_until_then_close(&mut child, "rule active");
        let seen = lines.recv_timeout(T).expect("the operator started");
        assert!(seen.contains("rule active"), "{seen}");
        // Something to log into the closed pipe before the signal, and the signal's own line.
        env.apply_yaml(
            &support::operator::sample("myapp")
                .replace("myapp-sample", &format!("app-{}", name.to_lowercase())),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut child = Reaper(child);
        signal(&child.0, name);
        let status = wait_exit(&mut child.0, Duration::from_secs(10));
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "SIG{name} with stderr closed: a clean exit within 10s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_stderr_does_not_hold_up_the_stop() {
    install_crds();
    let env = TestEnv::new("proc-stuck").await;
    let port = free_port();
    let args = rules_args(&env.ns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // stderr is a pipe nobody reads: trace logging fills it within moments.
    let child = spawn(kubeconfig(), port, &args, "trace", Stdio::piped());
    let mut child = Reaper(child);
    wait_for("metrics endpoint up", T, || async {
        http_get(port, "/healthz").starts_with("HTTP/1.1 200")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        http_get(port, "/healthz").starts_with("HTTP/1.1 200"),
        "the process keeps serving while its stderr is full"
    );
    signal(&child.0, "TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    install_crds();
    let env = TestEnv::new("proc-second").await;
    let proxy = Proxy::start();
    let port = free_port();
    let mut args = rules_args(&env.ns);
    args.extend([
        "--leader-elect".into(),
        "--leader-elect-namespace".into(),
        env.ns.clone(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = spawn(proxy.kubeconfig(), port, &args, "info", Stdio::piped());
    let seen = read_until(&mut child, "became leader", false)
        .recv_timeout(T)
        .unwrap();
    assert!(seen.contains("became leader"), "{seen}");
    let mut child = Reaper(child);
    // Requests now hang: releasing the lease on the way out waits for its bound (5s).
    proxy.freeze();
    signal(&child.0, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "still stopping");
    let second = Instant::now();
    signal(&child.0, "INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert_eq!(status.map(|s| s.code()), Some(Some(130)));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "exited {:?} after the second signal",
        second.elapsed()
    );
}

#[test]
fn a_metrics_address_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let kubeconfig = unreachable_kubeconfig(free_port());
    let rules = root().join("rules");
    let child = spawn(
        &kubeconfig,
        port,
        &["--rules", rules.to_str().unwrap()],
        "info",
        Stdio::piped(),
    );
    let mut child = Reaper(child);
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.0.kill();
    }
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.map(|s| s.code()), Some(Some(1)), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --metrics-addr 127.0.0.1:{port}"))
            && stderr.contains("in use"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_named_and_not_ready() {
    let api_port = free_port();
    let kubeconfig = unreachable_kubeconfig(api_port);
    let port = free_port();
    let rules = root().join("rules");
    let child = spawn(
        &kubeconfig,
        port,
        &["--rules", rules.to_str().unwrap()],
        "info",
        Stdio::piped(),
    );
    let mut child = Reaper(child);
    let address = format!("https://127.0.0.1:{api_port}");
    let log = read_until_then_close(&mut child.0, "cannot reach the API server at")
        .recv_timeout(T)
        .unwrap();
    assert!(log.contains(&address), "the log names {address}:\n{log}");
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    let readyz = http_get(port, "/readyz");
    assert!(
        readyz.starts_with("HTTP/1.1 503") && readyz.contains(&address),
        "{readyz}"
    );
    signal(&child.0, "TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_rules_and_follows_the_api_server() {
    install_crds();
    let env = TestEnv::new("proc-ready").await;
    let proxy = Proxy::start();
    let port = free_port();
    let cm = format!("{}/rules", env.ns);
    let child = spawn(
        proxy.kubeconfig(),
        port,
        &["--rules-configmap", &cm, "--namespace", &env.ns],
        "info",
        Stdio::null(),
    );
    let _child = Reaper(child);
    let readyz = || http_get(port, "/readyz");
    wait_for("/readyz answers", T, || async { !readyz().is_empty() }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = readyz();
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("rules not loaded"),
        "no rules ConfigMap yet: {answer}"
    );
    let rule = std::fs::read_to_string(root().join("rules/memcached.yaml")).unwrap();
    env.kubectl(&[
        "create",
        "configmap",
        "rules",
        "--from-literal",
        &format!("memcached.yaml={rule}"),
    ]);
    wait_for("ready once rules are loaded and synced", T, || async {
        readyz().starts_with("HTTP/1.1 200")
    })
    .await;
    proxy.cut();
    wait_for(
        "not ready while the API server is unreachable",
        T,
        || async {
            let answer = readyz();
            answer.starts_with("HTTP/1.1 503")
                && answer.contains(&format!("127.0.0.1:{}", proxy.port))
        },
    )
    .await;
    proxy.forward();
    wait_for("ready again", T, || async {
        readyz().starts_with("HTTP/1.1 200")
    })
    .await;
}
