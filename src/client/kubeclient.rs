//! The API client's fault handling: no retries inside a request, timeouts that notice a
//! dead peer, and the server's `Retry-After` carried into the error the queue sees.
//!
//! Retrying inside a request (kube's default retry layer) holds the worker for as long as the
//! server keeps throttling, so a few throttled parents starve every other parent; retries
//! belong to the per-parent queue instead. A connection whose peer vanished without a reset
//! would block a request or a watch forever: every answer has a deadline, watches are renewed
//! by the server often enough that a silent one is known to be dead, idle connections are
//! reused only while fresh (a pooled connection that died silently would hold the next
//! request until its deadline), and TCP keepalive drops connections to a vanished host.
//! kube's own builder exposes neither the pool nor keepalive, so the stack is built here from
//! kube's public layers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{ConfigExt, DynBody};
use serde_json::{Value as Json, json};
use tower::{BoxError, Layer, Service, ServiceBuilder};

use crate::client::fence::{Fence, FenceLayer, FencedConnector, is_write};
use crate::client::transport::NameAddressLayer;

/// How long the server keeps a watch open (`timeoutSeconds`); it then ends it and the
/// watcher resumes from its last resource version. A watch silent for longer than this plus
/// a few seconds is taken for dead (kube's watcher idle timeout): watches have no
/// [`ANSWER_TIMEOUT`].
pub const WATCH_TIMEOUT_SECS: u32 = 45;

/// The longest wait for a whole answer (but a watch's), counted from the request: a request
/// to a vanished peer fails then, instead of holding its worker forever. Watches are kube's
/// watcher's: it drops one silent for longer than [`WATCH_TIMEOUT_SECS`] and a margin.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(55);

/// The longest wait to send a request.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait for a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle connection older than this is not reused: one that died silently can then delay
/// only requests made within this time of its death.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive: probes after this much silence, every [`KEEPALIVE_INTERVAL`], and the
/// connection is dropped after [`KEEPALIVE_RETRIES`] unanswered ones (a vanished host).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// See [`KEEPALIVE_IDLE`].
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_IDLE`].
pub const KEEPALIVE_RETRIES: u32 = 3;

/// A watcher configuration with ruleop's watch timeout.
pub fn watcher_config() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

/// A client for `config` with ruleop's fault handling (see the module documentation). The
/// configuration's TLS, credentials and headers are used; its retry and timeout settings are
/// replaced by the ones above.
/// Transport errors name the API server's address; with `fence`, every write must pass the
/// leader's write fence.
pub fn build(config: kube::Config, fence: Option<&Fence>) -> Result<kube::Client, kube::Error> {
    let namespace = config.default_namespace.clone();
    Ok(kube::Client::new(stack(&config, fence)?, namespace))
}

/// A whole answer of the client stack.
type Answer = Result<Response<Box<DynBody>>, BoxError>;

/// The service under [`build`]'s client. With `fence`, writes travel on connections of their
/// own whose sockets refuse bytes once the fence is shut ([`crate::client::fence::FencedConnector`]).
pub(crate) fn stack(
    config: &kube::Config,
    fence: Option<&Fence>,
) -> Result<
    impl Service<
        Request<kube::client::Body>,
        Response = Response<Box<DynBody>>,
        Error = BoxError,
        Future = impl Future<Output = Answer> + Send + 'static,
    > + Clone
    + Send
    + 'static,
    kube::Error,
> {
    let address: std::sync::Arc<str> = config.cluster_url.to_string().into();
    // Refused rather than silently bypassed (kube is built without proxy support either).
    if let Some(proxy_url) = &config.proxy_url {
        return Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy_url.clone()),
        });
    }
    let reads = http_client(config, tcp())?;
    let http = match fence {
        None => ByMethod {
            reads,
            writes: None,
        },
        Some(fence) => ByMethod {
            reads,
            writes: Some(http_client(
                config,
                FencedConnector::new(tcp(), fence.clone()),
            )?),
        },
    };
    Ok(ServiceBuilder::new()
        .option_layer(fence.map(|f| FenceLayer(f.clone())))
        .layer(NameAddressLayer(address))
        .layer(RetryAfterLayer)
        .layer(DeadlineLayer(ANSWER_TIMEOUT))
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http))
}

/// A TCP connector with ruleop's timeouts and keepalive.
fn tcp() -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_keepalive(Some(KEEPALIVE_IDLE));
    tcp.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    tcp.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    tcp
}

/// An HTTP client (TLS, pool) over `tcp`.
fn http_client<C>(
    config: &kube::Config,
    tcp: C,
) -> Result<
    impl Service<
        Request<kube::client::Body>,
        Response = Response<hyper::body::Incoming>,
        Error = hyper_util::client::legacy::Error,
        Future = hyper_util::client::legacy::ResponseFuture,
    > + Clone
    + Send
    + Sync
    + 'static,
    kube::Error,
>
where
    C: Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin
        + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    let mut connector = TimeoutConnector::new(config.rustls_https_connector_with_connector(tcp)?);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // No read timeout here: it re-arms a timer on every read that waits and wakes the
    // connection again on every read that completes, a tenth of the CPU of a small request.
    // One deadline per request ([`DeadlineLayer`]) instead.
    connector.set_write_timeout(Some(WRITE_TIMEOUT));
    Ok(HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// Sends writes through `writes` when there is one, everything else through `reads`.
#[derive(Debug, Clone)]
struct ByMethod<R, W> {
    reads: R,
    writes: Option<W>,
}

impl<R, W, B> Service<Request<B>> for ByMethod<R, W>
where
    R: Service<Request<B>>,
    W: Service<Request<B>, Response = R::Response, Error = R::Error, Future = R::Future>,
{
    type Response = R::Response;
    type Error = R::Error;
    type Future = R::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), R::Error>> {
        if let Some(writes) = &mut self.writes
            && writes.poll_ready(cx)?.is_pending()
        {
            return Poll::Pending;
        }
        self.reads.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match &mut self.writes {
            Some(writes) if is_write(request.method()) => writes.call(request),
            _ => self.reads.call(request),
        }
    }
}

/// Copies a throttling answer's `Retry-After` header into its `Status` body
/// (`details.retryAfterSeconds`), the only part of an answer kube's errors keep.
#[derive(Debug, Clone, Copy)]
pub struct RetryAfterLayer;

impl<S> Layer<S> for RetryAfterLayer {
    type Service = RetryAfter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryAfter(inner)
    }
}

/// The service of [`RetryAfterLayer`].
#[derive(Debug, Clone)]
pub struct RetryAfter<S>(S);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Req, B> Service<Request<Req>> for RetryAfter<S>
where
    S: Service<Request<Req>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let Some(seconds) = retry_after_seconds(&response) else {
                return Ok(
                    response.map(|body| -> Box<DynBody> { Box::new(body.map_err(Into::into)) })
                );
            };
            let (parts, body) = response.into_parts();
            let text = body.collect().await.map_err(Into::into)?.to_bytes();
            let patched = with_retry_after(parts.status, &text, seconds);
            let body: Box<DynBody> = Box::new(Full::new(patched).map_err(|never| match never {}));
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// Fails a request whose whole answer (status, headers and body) has not arrived within the
/// given time of the request; a watch (`watch=true`) is left to the watcher's idle timeout.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer(pub Duration);

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.0,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

/// The error of an answer that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("no complete answer within {0:?} of the request")]
pub struct AnswerTimedOut(Duration);

impl<S, Req, B> Service<Request<Req>> for Deadline<S>
where
    S: Service<Request<Req>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<DeadlineBody<B>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let limit = self.limit;
        let mut deadline = (!is_watch(request.uri())).then(|| Box::pin(tokio::time::sleep(limit)));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match deadline.as_mut() {
                None => answer.await?,
                Some(deadline) => tokio::select! {
                    response = answer => response?,
                    () = deadline => return Err(AnswerTimedOut(limit).into()),
                },
            };
            Ok(response.map(|body| DeadlineBody {
                body,
                deadline,
                limit,
            }))
        })
    }
}

/// Whether a request is a watch (its answer streams for as long as the server keeps it open).
fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// An answer's body that fails once the request's deadline (none for a watch) has passed.
pub struct DeadlineBody<B> {
    body: B,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Some(Err(AnswerTimedOut(this.limit).into()))),
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The `Retry-After` seconds of an error answer that may carry one (429, 503).
fn retry_after_seconds<B>(response: &Response<B>) -> Option<u32> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    // Only the delay-seconds form: API servers do not send HTTP dates.
    response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The answer's body as a `Status` with `details.retryAfterSeconds` set (kept when the
/// server already set it); a body that is not a `Status` becomes its message.
fn with_retry_after(code: StatusCode, body: &[u8], seconds: u32) -> Bytes {
    let mut status = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(map)) if map.get("kind").and_then(Json::as_str) == Some("Status") => {
            Json::Object(map)
        }
        _ => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": String::from_utf8_lossy(body).trim(),
            "code": code.as_u16(),
        }),
    };
    let details = status
        .as_object_mut()
        .map(|m| m.entry("details").or_insert_with(|| json!({})));
    if let Some(Json::Object(details)) = details {
        let set = details
            .get("retryAfterSeconds")
            .and_then(Json::as_u64)
            .is_some_and(|s| s > 0);
        if !set {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
    }
    Bytes::from(serde_json::to_vec(&status).unwrap_or_else(|_| body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use tower::util::BoxCloneService;

    fn status_of(bytes: &Bytes) -> kube::core::Status {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn header_is_carried_into_the_status() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"slow down","reason":"TooManyRequests","code":429}"#;
        let s = status_of(&with_retry_after(StatusCode::TOO_MANY_REQUESTS, body, 7));
        assert_eq!(s.code, 429);
        assert_eq!(s.message, "slow down");
        assert_eq!(s.details.unwrap().retry_after_seconds, 7);
    }

    #[test]
    fn the_servers_own_detail_wins() {
        let body = br#"{"kind":"Status","code":429,"details":{"retryAfterSeconds":3}}"#;
        let s = status_of(&with_retry_after(StatusCode::TOO_MANY_REQUESTS, body, 9));
        assert_eq!(s.details.unwrap().retry_after_seconds, 3);
    }

    #[test]
    fn plain_text_becomes_a_status() {
        let body = b"Too many requests, please try again later.\n";
        let s = status_of(&with_retry_after(StatusCode::TOO_MANY_REQUESTS, body, 1));
        assert_eq!(s.code, 429);
        assert_eq!(s.message, "Too many requests, please try again later.");
        assert_eq!(s.details.unwrap().retry_after_seconds, 1);
    }

    #[test]
    fn only_throttling_answers_with_a_delay_are_touched() {
        let answer = |code: u16, header: Option<&str>| {
            let mut b = Response::builder().status(code);
            if let Some(h) = header {
                b = b.header("Retry-After", h);
            }
            b.body(()).unwrap()
        };
        assert_eq!(retry_after_seconds(&answer(429, Some("5"))), Some(5));
        assert_eq!(retry_after_seconds(&answer(503, Some(" 2 "))), Some(2));
        assert_eq!(retry_after_seconds(&answer(429, None)), None);
        assert_eq!(retry_after_seconds(&answer(409, Some("5"))), None);
        assert_eq!(
            retry_after_seconds(&answer(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
    }

    /// A server that answers after `headers` (never when `None`) with a body that never ends.
    fn silent(
        headers: Option<Duration>,
    ) -> BoxCloneService<Request<()>, Response<Box<DynBody>>, BoxError> {
        BoxCloneService::new(tower::service_fn(
            move |_: Request<()>| -> BoxFuture<Result<Response<Box<DynBody>>, BoxError>> {
                Box::pin(async move {
                    match headers {
                        Some(after) => tokio::time::sleep(after).await,
                        None => std::future::pending::<()>().await,
                    }
                    let never =
                        futures::stream::pending::<Result<http_body::Frame<Bytes>, BoxError>>();
                    let body: Box<DynBody> = Box::new(StreamBody::new(never));
                    Ok(Response::new(body))
                })
            },
        ))
    }

    fn request(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_never_comes_fails_at_the_deadline() {
        let mut svc = DeadlineLayer(Duration::from_secs(55)).layer(silent(None));
        let start = tokio::time::Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(3600), svc.call(request("/api/v1/pods")));
        let err = answer.await.expect("cut by the deadline").err().unwrap();
        assert!(err.is::<AnswerTimedOut>(), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(55));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_the_same_deadline() {
        let mut svc =
            DeadlineLayer(Duration::from_secs(55)).layer(silent(Some(Duration::from_secs(10))));
        let start = tokio::time::Instant::now();
        let response = svc.call(request("/api/v1/pods")).await.unwrap();
        let body = tokio::time::timeout(Duration::from_secs(3600), response.into_body().collect());
        let err = body.await.expect("cut by the deadline").err().unwrap();
        assert!(err.is::<AnswerTimedOut>(), "{err}");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(55),
            "counted from the request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_is_left_to_the_watcher() {
        let mut svc = DeadlineLayer(Duration::from_secs(55)).layer(silent(Some(Duration::ZERO)));
        let response = svc
            .call(request("/api/v1/pods?watch=true&timeoutSeconds=45"))
            .await
            .unwrap();
        let body = response.into_body().collect();
        let waited = tokio::time::timeout(Duration::from_secs(3600), body).await;
        assert!(waited.is_err(), "a silent watch is not cut by the deadline");
    }

    #[test]
    fn watches_are_known_by_their_query() {
        let watch = |u: &str| is_watch(&u.parse().unwrap());
        assert!(watch("/api/v1/pods?watch=true"));
        assert!(watch(
            "/apis/x/v1/ys?allowWatchBookmarks=true&watch=1&resourceVersion=5"
        ));
        assert!(!watch("/api/v1/pods?labelSelector=watch%3Dtrue"));
        assert!(!watch("/api/v1/pods"));
    }

    #[tokio::test]
    async fn a_client_error_carries_the_delay() {
        // A server that throttles every request with a bare Retry-After.
        let server = tower::service_fn(|_: Request<kube::client::Body>| async {
            let body: Box<DynBody> = Box::new(
                Full::new(Bytes::from_static(b"throttled")).map_err(|never| match never {}),
            );
            let answer = Response::builder()
                .status(429)
                .header("Retry-After", "4")
                .body(body)?;
            Ok::<_, BoxError>(answer)
        });
        let client = kube::client::ClientBuilder::new(server, "default")
            .with_layer(&RetryAfterLayer)
            .build();
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, "default");
        match api.get("x").await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 429);
                assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(4));
            }
            other => panic!("{other:?}"),
        }
    }
}
