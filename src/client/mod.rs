//! The API client: kube's client with ruleop's HTTP stack ([`kubeclient`]: retries, deadlines,
//! dead connections noticed), the leader's write fence ([`fence`]) and the Lease it renews
//! ([`leader`]).

pub mod fence;
pub mod identity;
pub mod kubeclient;
pub mod leader;
pub mod transport;

use fence::Fence;

/// Why no client for the cluster could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The client could not be built.
    #[error("cannot reach Kubernetes: {0}")]
    Client(#[from] kube::Error),
    /// No usable kubeconfig: where it was looked for, and why it is unusable.
    #[error("cannot load the Kubernetes configuration from {0}: {1}")]
    Kubeconfig(String, String),
}

/// The `User-Agent` of every request, so audit logs tell ruleop's writes from others'.
pub const USER_AGENT: &str = concat!("ruleop/", env!("CARGO_PKG_VERSION"));

/// A client for `kubeconfig`/`context` (else the usual inference), sending [`USER_AGENT`].
pub async fn connect_to(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, ConnectError> {
    client(&kube_config_of(kubeconfig, context).await?, None)
}

/// A client for `config` whose transport errors name the API server's address; with
/// `fence`, every write must pass the leader's write fence.
pub fn client(config: &kube::Config, fence: Option<&Fence>) -> Result<kube::Client, ConnectError> {
    // Retries through the queue, dead connections noticed: see `kubeclient`.
    Ok(kubeclient::build(config.clone(), fence)?)
}

/// The configuration named by `kubeconfig`/`context` (else the usual inference), with
/// ruleop's User-Agent.
pub async fn kube_config_of(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Config, ConnectError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| ConnectError::Kubeconfig(path.display().to_string(), e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ConnectError::Kubeconfig(path.display().to_string(), e.to_string()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ConnectError::Kubeconfig("$KUBECONFIG".into(), e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Kubeconfig("the environment".into(), e.to_string()))?,
    };
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    Ok(config)
}
