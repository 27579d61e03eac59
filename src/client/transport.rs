//! Client middleware that makes transport errors (refused, unreachable, TLS) name the API
//! server address they were trying, with their whole cause chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{BoxError, Layer, Service};

use crate::client::fence::Refused;

/// A request that did not get an answer from the API server.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the API server at {address}: {cause}")]
pub struct Unreachable {
    /// The cluster URL tried.
    pub address: String,
    /// The transport error and its causes, joined.
    pub cause: String,
}

/// `error: cause: cause...`, skipping causes already contained in the text.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Wraps errors that are not already kube's own (e.g. auth) or the fence's.
fn name_address(address: &str, error: BoxError) -> BoxError {
    if error.is::<kube::Error>() || error.is::<Refused>() || error.is::<Unreachable>() {
        return error;
    }
    Box::new(Unreachable {
        address: address.to_string(),
        cause: chain(error.as_ref()),
    })
}

/// A tower layer naming `address` in transport errors.
#[derive(Debug, Clone)]
pub struct NameAddressLayer(pub Arc<str>);

impl<S> Layer<S> for NameAddressLayer {
    type Service = NameAddress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NameAddress {
            inner,
            address: self.0.clone(),
        }
    }
}

/// The service behind [`NameAddressLayer`].
#[derive(Debug, Clone)]
pub struct NameAddress<S> {
    inner: S,
    address: Arc<str>,
}

impl<S, B> Service<Request<B>> for NameAddress<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let address = self.address.clone();
        self.inner
            .poll_ready(cx)
            .map_err(|e| name_address(&address, e.into()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let address = self.address.clone();
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(|e| name_address(&address, e.into())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_errors_name_the_address_and_their_causes() {
        let inner = tower::service_fn(|_req: Request<()>| async {
            let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
            Err::<(), BoxError>(Box::new(Wrapper(io)))
        });
        let mut svc = NameAddressLayer("https://10.0.0.1:6443".into()).layer(inner);
        let err = svc.call(Request::new(())).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach the API server at https://10.0.0.1:6443: client error (Connect): refused"
        );
    }

    #[tokio::test]
    async fn kube_and_fence_errors_pass_unchanged() {
        let inner =
            tower::service_fn(|_req: Request<()>| async { Err::<(), BoxError>(Box::new(Refused)) });
        let mut svc = NameAddressLayer("https://x".into()).layer(inner);
        let err = svc.call(Request::new(())).await.unwrap_err();
        assert!(err.is::<Refused>());
    }

    /// Like hyper's error: a terse message with the cause as its source.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
