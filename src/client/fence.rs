//! The write fence of an elected leader: a gate in the API client that lets writes through
//! only while this replica's leadership is certainly still valid.
//!
//! A leader renews its Lease every [`RETRY`]. A standby takes over no earlier
//! than [`LEASE_DURATION`] after it *observed* the last renewal, which it cannot
//! observe before the leader *started* that renewal. So the leader may write until
//! `renewal start + VALIDITY`, with `VALIDITY` = [`RENEW_DEADLINE`] =
//! `LEASE_DURATION - FENCE_MARGIN`. Both the monotonic clock and the wall clock must agree
//! that the deadline is ahead: a process paused (SIGSTOP, GC, frozen VM) wakes up with either
//! clock moved on and finds the gate shut before it sends anything.
//!
//! The gate is checked when a write is issued, on every poll of its response future, and
//! at the socket: writes travel on connections of their own ([`FencedConnector`]), and
//! every write of bytes to those connections' sockets ([`FencedIo`]) is refused once the gate
//! is shut. So a request handed to the HTTP client's connection task before the gate shut,
//! but not yet written when the process stopped running it (a long synchronous render, a
//! SIGSTOP), never reaches the API server after: its connection fails, and a request whose
//! bytes are cut short is incomplete, which the server never executes. The limits: a
//! process stopped between the check and its system call (a few instructions), bytes the
//! kernel accepted before the gate shut but sends later, and a request delayed in the
//! network for longer than [`FENCE_MARGIN`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Request, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tower::{BoxError, Layer, Service};

// The Lease timing lives here, with the fence it bounds; `leader` renews on it.
/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long after the start of its last successful renewal the leader may act.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Time between the leader's last possible write and the earliest takeover.
pub const FENCE_MARGIN: Duration =
    Duration::from_secs(LEASE_DURATION.as_secs() - RENEW_DEADLINE.as_secs());
/// How often to try to acquire or renew.
pub const RETRY: Duration = Duration::from_secs(2);
/// How long after a renewal *started* the leader may still write.
pub const VALIDITY: Duration = RENEW_DEADLINE;

/// How often a waiting [`Fence::expired`] looks at the wall clock, which has no timers.
const WALL_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No leader election: every write passes.
    Open,
    /// Not (yet) the leader: writes are refused until a renewal extends the fence.
    Shut,
    /// Leader until both deadlines.
    Until { mono: Instant, wall: SystemTime },
    /// Leadership lost or expired: writes are refused for good.
    Revoked,
}

/// A shared write gate; clones share the state.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<State>>);

/// A write refused by the fence.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica is not (or no longer certainly) the leader")]
pub struct Refused;

impl Fence {
    /// A fence that never closes (leader election off).
    pub fn open() -> Self {
        Self(Arc::new(Mutex::new(State::Open)))
    }

    /// A fence shut until the first successful acquisition.
    pub fn shut() -> Self {
        Self(Arc::new(Mutex::new(State::Shut)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a successful acquisition or renewal whose request started at `mono`/`wall`.
    /// A revoked fence stays revoked; an earlier start never shortens the deadline.
    pub fn extend(&self, mono: Instant, wall: SystemTime) {
        let (mono, wall) = (mono + VALIDITY, wall + VALIDITY);
        let mut state = self.state();
        *state = match *state {
            State::Open => State::Open,
            State::Revoked => State::Revoked,
            State::Shut => State::Until { mono, wall },
            State::Until { mono: m, wall: w } => State::Until {
                mono: m.max(mono),
                wall: w.max(wall),
            },
        };
    }

    /// Shuts the fence for good (leadership lost).
    pub fn revoke(&self) {
        let mut state = self.state();
        if *state != State::Open {
            *state = State::Revoked;
        }
    }

    /// Whether a write may be sent now.
    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now(), SystemTime::now())
    }

    fn is_open_at(&self, mono: Instant, wall: SystemTime) -> bool {
        match *self.state() {
            State::Open => true,
            State::Shut | State::Revoked => false,
            State::Until { mono: m, wall: w } => mono < m && wall < w,
        }
    }

    /// Resolves once writes are refused after having been allowed (never for an open fence,
    /// and not while still waiting for the first acquisition).
    pub async fn expired(&self) {
        loop {
            let wait = match *self.state() {
                State::Open | State::Shut => None,
                State::Revoked => return,
                State::Until { mono, .. } => Some(mono),
            };
            match wait {
                None => tokio::time::sleep(WALL_CHECK).await,
                Some(_) if !self.is_open() => return,
                Some(mono) => {
                    let until = mono.min(Instant::now() + WALL_CHECK);
                    tokio::time::sleep_until(until.into()).await;
                }
            }
        }
    }
}

/// Whether a request changes something on the server.
pub fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// A tower layer putting the fence in front of every write of a client.
#[derive(Debug, Clone)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// The service behind [`FenceLayer`].
#[derive(Debug, Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let write = is_write(request.method());
        if write && !self.fence.is_open() {
            return Box::pin(std::future::ready(Err(Refused.into())));
        }
        let inner = self.inner.call(request);
        if !write {
            return Box::pin(async move { inner.await.map_err(Into::into) });
        }
        Box::pin(Gated {
            inner: Box::pin(inner),
            fence: self.fence.clone(),
        })
    }
}

/// A write's response future that checks the fence before every poll.
struct Gated<F> {
    inner: Pin<Box<F>>,
    fence: Fence,
}

impl<F, T, E> Future for Gated<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // After a pause the first thing a pending write does is look at the gate.
        if !self.fence.is_open() {
            return Poll::Ready(Err(Refused.into()));
        }
        self.inner.as_mut().poll(cx).map_err(Into::into)
    }
}

/// A connector whose connections refuse to write once the fence is shut: for connections
/// that carry only writes (see the module documentation).
#[derive(Debug, Clone)]
pub struct FencedConnector<C> {
    inner: C,
    fence: Fence,
}

impl<C> FencedConnector<C> {
    /// Connects through `inner`, fencing what is written to its connections.
    pub fn new(inner: C, fence: Fence) -> Self {
        Self { inner, fence }
    }
}

impl<C> Service<Uri> for FencedConnector<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    C::Response: Send + 'static,
{
    type Response = FencedIo<C::Response>;
    type Error = BoxError;
    type Future = BoxFuture<FencedIo<C::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connecting, fence) = (self.inner.call(uri), self.fence.clone());
        Box::pin(async move {
            let inner = connecting.await.map_err(Into::into)?;
            Ok(FencedIo { inner, fence })
        })
    }
}

/// A connection whose every write (TLS handshake included) first asks the fence.
#[derive(Debug)]
pub struct FencedIo<T> {
    inner: T,
    fence: Fence,
}

impl<T> FencedIo<T> {
    fn refused(&self) -> Option<std::io::Error> {
        (!self.fence.is_open())
            .then(|| std::io::Error::new(std::io::ErrorKind::PermissionDenied, Refused))
    }
}

impl<T: Read + Unpin> Read for FencedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for FencedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(refused) = self.refused() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for FencedIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn open_and_shut() {
        assert!(Fence::open().is_open());
        assert!(!Fence::shut().is_open());
        let open = Fence::open();
        open.revoke();
        assert!(open.is_open(), "without leader election nothing is fenced");
    }

    #[test]
    fn valid_until_renewal_start_plus_validity_on_both_clocks() {
        let fence = Fence::shut();
        let (mono, wall) = (Instant::now(), SystemTime::now());
        fence.extend(mono, wall);
        let almost = VALIDITY - Duration::from_millis(1);
        assert!(fence.is_open_at(mono + almost, wall + almost));
        assert!(!fence.is_open_at(mono + VALIDITY, wall));
        assert!(
            !fence.is_open_at(mono, wall + VALIDITY),
            "a wall clock that moved on (frozen VM) shuts the gate too"
        );
        // A later renewal moves the deadline; an older one never shortens it.
        fence.extend(mono + Duration::from_secs(2), wall + Duration::from_secs(2));
        fence.extend(mono, wall);
        assert!(fence.is_open_at(mono + VALIDITY, wall + VALIDITY));
    }

    #[test]
    fn revoked_is_final() {
        let fence = Fence::shut();
        fence.extend(Instant::now(), SystemTime::now());
        fence.revoke();
        fence.extend(Instant::now(), SystemTime::now());
        assert!(!fence.is_open());
    }

    #[tokio::test]
    async fn expired_resolves_at_the_deadline() {
        let fence = Fence::shut();
        let start = Instant::now();
        fence.extend(
            start - VALIDITY + Duration::from_millis(100),
            SystemTime::now() - VALIDITY + Duration::from_secs(5),
        );
        tokio::time::timeout(Duration::from_secs(2), fence.expired())
            .await
            .expect("expired within the monotonic deadline");
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    /// A service counting the requests that reached it, answering after `delay`.
    fn counting(
        delay: Duration,
    ) -> (
        Arc<AtomicUsize>,
        impl Service<
            Request<()>,
            Response = (),
            Error = BoxError,
            Future = impl Future<Output = Result<(), BoxError>> + Send + 'static,
        >,
    ) {
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        let service = tower::service_fn(move |_req: Request<()>| {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(delay).await;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        });
        (reached, service)
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/x/pods/y")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn writes_are_refused_and_reads_pass_when_shut() {
        let fence = Fence::shut();
        let (reached, inner) = counting(Duration::ZERO);
        let mut svc = FenceLayer(fence.clone()).layer(inner);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let err = svc.call(request(method)).await.unwrap_err();
            assert!(err.is::<Refused>(), "{err}");
        }
        assert_eq!(reached.load(Ordering::SeqCst), 0);
        svc.call(request(Method::GET)).await.unwrap();
        assert_eq!(reached.load(Ordering::SeqCst), 1);
        fence.extend(Instant::now(), SystemTime::now());
        svc.call(request(Method::PATCH)).await.unwrap();
        assert_eq!(reached.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pending_write_is_dropped_once_the_fence_shuts() {
        let fence = Fence::shut();
        fence.extend(Instant::now(), SystemTime::now());
        let (reached, inner) = counting(Duration::from_millis(200));
        let mut svc = FenceLayer(fence.clone()).layer(inner);
        let pending = svc.call(request(Method::DELETE));
        fence.revoke();
        let err = pending.await.unwrap_err();
        assert!(err.is::<Refused>(), "{err}");
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }
}

#[cfg(test)]
mod socket_tests {
    //! The fence at the socket, through the client stack `ruleop run` uses.
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use tower::ServiceExt;

    /// A plain HTTP server on a thread of its own, answering every request with 201 and
    /// recording the request lines it received.
    fn server() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut stream, seen) = (stream.unwrap(), seen.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + length);
                        seen.lock()
                            .unwrap()
                            .push(head.lines().next().unwrap_or_default().to_string());
                        let answer = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, received)
    }

    fn post(path: &str) -> Request<kube::client::Body> {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(
                b"{\"kind\":\"ConfigMap\"}".to_vec(),
            ))
            .unwrap()
    }

    /// The case of a write issued just before a long synchronous render: handed to its
    /// connection, then the thread is held past the fence's deadline, and the connection task
    /// runs before the write's own future looks at the gate again.
    #[tokio::test]
    async fn a_write_handed_to_its_connection_before_the_fence_shut_is_not_sent_after() {
        let (url, received) = server();
        let fence = Fence::shut();
        fence.extend(Instant::now(), SystemTime::now());
        let config = kube::Config::new(url.parse().unwrap());
        let mut svc = crate::client::kubeclient::stack(&config, Some(&fence)).unwrap();
        // A first write leaves an open connection in the writes' pool.
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(post("/api/v1/namespaces/a/configmaps"));
        let answer = first.await.unwrap();
        assert_eq!(answer.status(), 201);
        http_body_util::BodyExt::collect(answer.into_body())
            .await
            .unwrap();
        // The connection goes back to the pool once its answer is read.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut pending = svc
            .ready()
            .await
            .unwrap()
            .call(post("/api/v1/namespaces/b/configmaps"));
        // One poll: the fence is open, the request goes to the connection's queue.
        assert!(futures::poll!(&mut pending).is_pending());
        fence.revoke();
        // The connection task runs; the write's future is not polled meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Err(err) = pending.await else {
            panic!("the write was answered");
        };
        assert!(err.to_string().contains("refused"), "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            *received.lock().unwrap(),
            vec!["POST /api/v1/namespaces/a/configmaps HTTP/1.1".to_string()],
            "the second write never reached the server"
        );
    }

    #[tokio::test]
    async fn reads_pass_a_shut_fence() {
        let (url, received) = server();
        let fence = Fence::shut();
        let config = kube::Config::new(url.parse().unwrap());
        let mut svc = crate::client::kubeclient::stack(&config, Some(&fence)).unwrap();
        let get = Request::builder()
            .uri("/api/v1/namespaces/a/configmaps")
            .body(kube::client::Body::empty())
            .unwrap();
        assert_eq!(
            svc.ready().await.unwrap().call(get).await.unwrap().status(),
            201
        );
        assert_eq!(received.lock().unwrap().len(), 1);
    }
}
