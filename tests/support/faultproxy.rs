//! The fault-injection proxy (`tests/faultproxy`, built by `make controlplane`) between an
//! operator under test and the shared control plane, driven by commands on its stdin.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// How the proxy stands in the path.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Forwards TCP (TLS passes through): `reset`, `blackhole`, `freeze`, `pass`.
    Tcp,
    /// Terminates TLS and answers chosen requests itself: [`FaultProxy::fault`].
    Http,
}

/// A running proxy; it exits when dropped (its stdin closes).
pub struct FaultProxy {
    child: Child,
    io: Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
    kubeconfig: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

/// Path of the proxy binary built by `make controlplane`.
pub fn binary() -> PathBuf {
    super::cli::root().join("target/controlplane/faultproxy")
}

impl FaultProxy {
    /// Starts a proxy to the shared control plane.
    pub fn start(mode: Mode) -> FaultProxy {
        Self::start_to(mode, super::kubeconfig())
    }

    /// Starts a proxy to the server of `upstream` (e.g. another proxy's kubeconfig, to chain
    /// a TCP proxy in front of an HTTP one).
    pub fn start_to(mode: Mode, upstream: &Path) -> FaultProxy {
        let bin = binary();
        assert!(
            bin.exists(),
            "{} is missing: run `make controlplane`",
            bin.display()
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let kubeconfig = dir.join(format!(
            "faultproxy-{}-{}.kubeconfig",
            std::process::id(),
            super::unique_suffix()
        ));
        let mode_arg = match mode {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        };
        let mut child = Command::new(&bin)
            .arg(mode_arg)
            .arg("--kubeconfig")
            .arg(upstream)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("faultproxy printed {first:?} instead of `listening ADDR`"))
            .to_string();
        FaultProxy {
            child,
            io: Mutex::new((stdin, lines)),
            kubeconfig,
            addr,
        }
    }

    /// The kubeconfig that reaches the cluster through the proxy.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Sends one command and returns what follows `ok`; fails the test on `error`.
    pub fn command(&self, line: &str) -> String {
        let mut io = self.io.lock().unwrap();
        writeln!(io.0, "{line}").unwrap();
        io.0.flush().unwrap();
        let answer = io.1.next().and_then(Result::ok).unwrap_or_default();
        match answer.strip_prefix("ok") {
            Some(rest) => rest.trim().to_string(),
            None => panic!("faultproxy `{line}`: {answer}"),
        }
    }

    /// TCP: every open connection is reset; new ones pass.
    pub fn reset(&self) {
        self.command("reset");
    }

    /// TCP: every open and new connection swallows everything, until [`FaultProxy::pass`].
    pub fn blackhole(&self) {
        self.command("blackhole");
    }

    /// TCP: every open connection stops moving bytes for good; new ones pass.
    pub fn freeze(&self) {
        self.command("freeze");
    }

    /// TCP: new connections are forwarded again.
    pub fn pass(&self) {
        self.command("pass");
    }

    /// HTTP: answers `method` requests whose path starts with `prefix` with `code` (and a
    /// `Retry-After` header when given), `times` times or forever. Returns the fault's id.
    pub fn fault(
        &self,
        code: u16,
        method: &str,
        prefix: &str,
        retry_after: Option<u32>,
        times: Option<u32>,
    ) -> u32 {
        let mut line = format!("fault {code} {method} {prefix}");
        if let Some(s) = retry_after {
            line.push_str(&format!(" retry-after={s}"));
        }
        if let Some(n) = times {
            line.push_str(&format!(" times={n}"));
        }
        self.command(&line).parse().unwrap()
    }

    /// HTTP: the times (ms since the epoch) at which fault `id` answered, in order.
    pub fn answers(&self, id: u32) -> Vec<u64> {
        self.command(&format!("times {id}"))
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    }

    /// HTTP: no fault answers any more.
    pub fn clear(&self) {
        self.command("clear");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}
