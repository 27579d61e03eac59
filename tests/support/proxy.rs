//! A TCP proxy in front of the test API server, so a test can take the API server away from
//! one `ruleop run` process (cut every connection, or freeze them) and give it back.
//! TLS passes through untouched: the server certificate is valid for 127.0.0.1 on any port.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FORWARD: u8 = 0;
const FROZEN: u8 = 1;
const CUT: u8 = 2;
const STOPPED: u8 = 3;

/// A proxy to the API server of the shared test cluster.
pub struct Proxy {
    mode: Arc<AtomicU8>,
    pub port: u16,
    kubeconfig: PathBuf,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

fn upstream_address(kubeconfig: &str) -> String {
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("a server in the kubeconfig")
        .trim();
    server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

impl Proxy {
    /// Starts forwarding; [`Proxy::kubeconfig`] points a client at it.
    pub fn start() -> Proxy {
        let admin = std::fs::read_to_string(super::kubeconfig()).unwrap();
        let upstream = upstream_address(&admin);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let kubeconfig = dir.join(format!("proxy-{}-{port}.kubeconfig", std::process::id()));
        std::fs::write(
            &kubeconfig,
            admin.replace(&upstream, &format!("127.0.0.1:{port}")),
        )
        .unwrap();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (m, st) = (mode.clone(), streams.clone());
        std::thread::spawn(move || accept(listener, &upstream, &m, &st));
        Proxy {
            mode,
            port,
            kubeconfig,
            streams,
        }
    }

    /// A kubeconfig whose server is this proxy.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Closes every connection and refuses new ones until [`Proxy::forward`].
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Stops moving bytes (connections stay open, requests hang) until [`Proxy::forward`].
    pub fn freeze(&self) {
        self.mode.store(FROZEN, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn forward(&self) {
        self.mode.store(FORWARD, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.mode.store(STOPPED, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn accept(
    listener: TcpListener,
    upstream: &str,
    mode: &Arc<AtomicU8>,
    streams: &Mutex<Vec<TcpStream>>,
) {
    loop {
        let current = mode.load(Ordering::SeqCst);
        if current == STOPPED {
            return;
        }
        match listener.accept() {
            Ok((client, _)) if current == CUT => drop(client),
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let mut all = streams.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                let (c, s, m) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    mode.clone(),
                );
                std::thread::spawn(move || pipe(c, s, &m));
                let m = mode.clone();
                std::thread::spawn(move || pipe(server, client, &m));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Copies `from` to `to` while forwarding; holds bytes while frozen; stops when cut.
fn pipe(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        match mode.load(Ordering::SeqCst) {
            FORWARD => {}
            FROZEN => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            _ => break,
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
