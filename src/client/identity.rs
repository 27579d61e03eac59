//! One identity per rule: clients whose writes impersonate a rule's ServiceAccount, sharing
//! one transport (connection pools, the leader's write fence) with the operator's own client.
//!
//! A rule with `spec.serviceAccount` writes as `system:serviceaccount:NS:NAME` through the API
//! server's impersonation headers (as Flux and kapp-controller do), so RBAC bounds what each
//! rule may do. Only writes carry the header: reads and watches stay the operator's, so an
//! account needs no read permission and the caches stay shared between rules. One client is
//! made per distinct account when a rule using it loads, and dropped when no loaded rule uses
//! it any more; none is made per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use kube::client::DynBody;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service};

use crate::client::fence::{Fence, is_write};
use crate::client::kubeclient;
use ruleop_lang::rule::ServiceAccount;

/// The header naming the user a request is made as.
const IMPERSONATE_USER: &str = "impersonate-user";

type Stack = BoxCloneSyncService<Request<kube::client::Body>, Response<Box<DynBody>>, BoxError>;

/// The HTTP stack of a client (see [`kubeclient`]), built once and shared by every client made
/// from it: clones share its connection pools and its fence.
#[derive(Clone)]
pub struct Transport {
    stack: Stack,
    namespace: String,
}

impl Transport {
    /// The stack for `config`; with `fence`, every write must pass the leader's write fence.
    pub fn new(config: &kube::Config, fence: Option<&Fence>) -> Result<Self, kube::Error> {
        Ok(Self {
            stack: BoxCloneSyncService::new(kubeclient::stack(config, fence)?),
            namespace: config.default_namespace.clone(),
        })
    }

    /// A client acting as the operator itself.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.stack.clone(), self.namespace.clone())
    }

    /// A client whose writes impersonate `account` (its reads are the operator's).
    pub fn client_as(&self, account: &ServiceAccount) -> Result<kube::Client, BadAccount> {
        let user = HeaderValue::from_str(&account.username())
            .map_err(|_| BadAccount(account.to_string()))?;
        let stack = ImpersonateLayer(user).layer(self.stack.clone());
        Ok(kube::Client::new(stack, self.namespace.clone()))
    }
}

/// An account whose name cannot be sent in a header (the rule check refuses such names).
#[derive(Debug, thiserror::Error)]
#[error("{0}: the name cannot be sent as an impersonation header")]
pub struct BadAccount(String);

/// Sets the impersonation header on writes.
#[derive(Debug, Clone)]
pub struct ImpersonateLayer(pub HeaderValue);

impl<S> Layer<S> for ImpersonateLayer {
    type Service = Impersonate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Impersonate {
            inner,
            user: self.0.clone(),
        }
    }
}

/// The service of [`ImpersonateLayer`].
#[derive(Debug, Clone)]
pub struct Impersonate<S> {
    inner: S,
    user: HeaderValue,
}

impl<S, B> Service<Request<B>> for Impersonate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if is_write(request.method()) {
            request
                .headers_mut()
                .insert(IMPERSONATE_USER, self.user.clone());
        }
        self.inner.call(request)
    }
}

/// The client a rule writes with, and the account it writes as (none: the operator's own).
#[derive(Clone)]
pub struct Writer {
    /// Writes through it go out as `account`.
    pub client: kube::Client,
    /// The impersonated account.
    pub account: Option<ServiceAccount>,
}

/// The write clients of the loaded rules: the operator's own, and one per distinct account.
pub struct Identities {
    transport: Transport,
    operator: Arc<Writer>,
    /// The operator's namespace, the default of a rule's account namespace.
    namespace: Option<String>,
    accounts: Mutex<HashMap<ServiceAccount, Arc<Writer>>>,
}

/// Why a rule's account cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No namespace in the rule and none known for the operator.
    #[error(
        "spec.serviceAccount.namespace is required: the operator's namespace is unknown (set $POD_NAMESPACE or --rules-configmap)"
    )]
    NoNamespace,
    /// The name cannot be sent.
    #[error(transparent)]
    Bad(#[from] BadAccount),
}

impl Identities {
    /// Clients over `transport`; `namespace` is the operator's own, if known.
    pub fn new(transport: Transport, namespace: Option<String>) -> Self {
        let operator = Arc::new(Writer {
            client: transport.client(),
            account: None,
        });
        Self {
            transport,
            operator,
            namespace,
            accounts: Mutex::default(),
        }
    }

    /// The operator's own client (reads, watches, discovery, and the writes of rules
    /// without an account).
    pub fn operator(&self) -> &kube::Client {
        &self.operator.client
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceAccount, Arc<Writer>>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writer of a rule with `account` (the operator's without one): made on the first
    /// rule naming that account, shared by the next.
    pub fn writer(
        &self,
        account: Option<&ruleop_lang::rule::ServiceAccountRef>,
    ) -> Result<Arc<Writer>, IdentityError> {
        let Some(account) = account else {
            return Ok(self.operator.clone());
        };
        let account = account
            .resolve(self.namespace.as_deref())
            .ok_or(IdentityError::NoNamespace)?;
        let mut accounts = self.accounts();
        if let Some(writer) = accounts.get(&account) {
            return Ok(writer.clone());
        }
        let writer = Arc::new(Writer {
            client: self.transport.client_as(&account)?,
            account: Some(account.clone()),
        });
        tracing::info!(account = %account, "writing as the rule's ServiceAccount");
        accounts.insert(account, writer.clone());
        Ok(writer)
    }

    /// Drops the clients no loaded rule holds any more (after a reload removed or changed
    /// rules).
    pub fn prune(&self) {
        self.accounts().retain(|account, writer| {
            let used = Arc::strong_count(writer) > 1;
            if !used {
                tracing::info!(account = %account, "no rule writes as this ServiceAccount any more");
            }
            used
        });
    }

    /// How many accounts have a client.
    pub fn accounts_in_use(&self) -> usize {
        self.accounts().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use ruleop_lang::rule::ServiceAccountRef;

    /// A server that answers every request with the impersonated user it saw (or `-`).
    fn echo() -> Stack {
        BoxCloneSyncService::new(tower::service_fn(
            |req: Request<kube::client::Body>| async move {
                let seen = req
                    .headers()
                    .get(IMPERSONATE_USER)
                    .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
                let body = serde_json::json!({"seen": seen}).to_string();
                let body: Box<DynBody> =
                    Box::new(Full::new(Bytes::from(body)).map_err(|never| match never {}));
                Ok::<_, BoxError>(Response::new(body))
            },
        ))
    }

    fn transport() -> Transport {
        Transport {
            stack: echo(),
            namespace: "default".into(),
        }
    }

    async fn seen(client: &kube::Client, method: http::Method) -> String {
        let request = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/default/configmaps/x")
            .body(Vec::new())
            .unwrap();
        let answer: serde_json::Value = client.request(request).await.unwrap();
        answer["seen"].as_str().unwrap().to_string()
    }

    fn account(name: &str, namespace: Option<&str>) -> ServiceAccountRef {
        ServiceAccountRef {
            name: name.into(),
            namespace: namespace.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn only_writes_impersonate_the_rules_account() {
        let ids = Identities::new(transport(), Some("ruleop-system".into()));
        let writer = ids
            .writer(Some(&account("deployer", Some("team-a"))))
            .unwrap();
        let user = "system:serviceaccount:team-a:deployer";
        for method in [
            http::Method::POST,
            http::Method::PATCH,
            http::Method::PUT,
            http::Method::DELETE,
        ] {
            assert_eq!(seen(&writer.client, method).await, user);
        }
        assert_eq!(seen(&writer.client, http::Method::GET).await, "-");
        let operator = ids.writer(None).unwrap();
        assert!(operator.account.is_none());
        assert_eq!(seen(&operator.client, http::Method::PATCH).await, "-");
    }

    #[tokio::test]
    async fn one_client_per_account_made_at_load_and_dropped_when_unused() {
        let ids = Identities::new(transport(), Some("ruleop-system".into()));
        let a = ids.writer(Some(&account("deployer", None))).unwrap();
        // The operator's namespace is the default; naming it is the same account.
        let b = ids
            .writer(Some(&account("deployer", Some("ruleop-system"))))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = ids.writer(Some(&account("auditor", None))).unwrap();
        assert_eq!(ids.accounts_in_use(), 2);
        drop(other);
        ids.prune();
        assert_eq!(
            ids.accounts_in_use(),
            1,
            "the unused account's client is gone"
        );
        drop((a, b));
        ids.prune();
        assert_eq!(ids.accounts_in_use(), 0);
    }

    #[tokio::test]
    async fn an_account_without_a_namespace_needs_the_operators() {
        let ids = Identities::new(transport(), None);
        let err = ids.writer(Some(&account("deployer", None))).err().unwrap();
        assert!(matches!(err, IdentityError::NoNamespace), "{err}");
        assert!(ids.writer(Some(&account("deployer", Some("a")))).is_ok());
    }
}
