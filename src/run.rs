//! Start-up and shutdown of `ruleop run`: logging, rules, leader election, metrics server,
//! and the controller, wired to one cancellation token fired by SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::fence::Fence;
use crate::client::identity::{Identities, Transport};
use crate::client::leader::Elector;
use crate::client::{ConnectError, USER_AGENT, client, connect_to, kube_config_of};
use crate::controller::{Config, Controller};
use crate::reload::{Reloader, Snapshot, configmap_snapshot, follow_paths};
use crate::revisions::Revisions;
use crate::telemetry::health::{self, Health};
use crate::telemetry::{self, LogFormat, Metrics};

/// Options of `ruleop run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Rule files or directories.
    #[arg(long, default_value = "rules", num_args = 1..)]
    pub rules: Vec<PathBuf>,
    /// Read rules from this ConfigMap (`NAMESPACE/NAME`) through a watch instead of files.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub rules_configmap: Option<String>,
    /// Namespace to act in (repeatable; default: all).
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Parallel reconciles.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Threads that run reconciles. The default, one, serves ruleop's work (mostly waiting
    /// on the API server) at about half the CPU per request of a thread pool, whose workers
    /// wake each other for every response. Templates render on the blocking pool whatever
    /// this is (at most `--concurrency` plans at once), so they never hold these threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Which Events to record on parents: `all`, `warnings` (problems only: a large fleet's
    /// progress Events are API writes too), or `none`. Conditions and logs say the same.
    #[arg(long, value_enum, default_value = "all")]
    pub events: crate::apply::EventLevel,
    /// Elect a leader through a Lease, so several replicas run with one active.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub leader_elect_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "ruleop-leader")]
    pub leader_elect_name: String,
    /// Address of /metrics, /healthz and /readyz (empty to disable).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Record each distinct content of a rule as a `RuleRevision` and label each parent with
    /// the revision that planned it (`ruleop.dev/revision`). Off without the RuleRevision
    /// CRD, with a warning.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub revisions: bool,
    /// RuleRevisions kept per rule (0: all); the oldest beyond it are deleted, never the
    /// active one nor one a parent is still labelled with.
    #[arg(long, default_value_t = crate::revisions::DEFAULT_HISTORY_LIMIT)]
    pub revision_history_limit: usize,
    /// Path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// How long a stop may take after the first SIGTERM/SIGINT before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Exit status after a second SIGTERM/SIGINT (128 + SIGINT, as shells report an interrupt).
pub const FORCED_EXIT: i32 = 130;

/// A client for the cluster named by `--kubeconfig`/`--context` (else the usual inference).
pub async fn connect(args: &RunArgs) -> Result<kube::Client, RunError> {
    Ok(connect_to(args.kubeconfig.as_deref(), args.context.as_deref()).await?)
}

/// The configuration named by `--kubeconfig`/`--context` (else the usual inference), with
/// ruleop's User-Agent.
pub async fn kube_config(args: &RunArgs) -> Result<kube::Config, RunError> {
    Ok(kube_config_of(args.kubeconfig.as_deref(), args.context.as_deref()).await?)
}

/// Why `ruleop run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No client for the cluster.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Bad `--metrics-addr`.
    #[error("invalid --metrics-addr {0:?}")]
    MetricsAddr(String),
    /// `--metrics-addr` cannot be listened on (e.g. already in use).
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    MetricsBind {
        /// The address given.
        addr: String,
        /// Why not.
        source: std::io::Error,
    },
    /// Bad `--rules-configmap`.
    #[error("invalid --rules-configmap {0:?}: use NAMESPACE/NAME")]
    ConfigMapRef(String),
    /// The rules directory cannot be watched.
    #[error("cannot watch rules: {0}")]
    Watch(#[from] notify::Error),
    /// Leadership lost or no longer certain: exit so a restarted replica joins as a standby.
    #[error("lost leadership: stopped acting and exiting so a restart joins as a standby")]
    LostLeadership,
}

/// Adds this replica's identity to the User-Agent (`ruleop/0.1.0 (pod-1234)`), so the API
/// server's audit log tells which replica of several made a write.
fn name_replica(config: &mut kube::Config, identity: &str) {
    let named = format!("{USER_AGENT} ({identity})");
    // Identities are pod or host names and a pid; one that is no valid header keeps the plain name.
    if let Ok(value) = http::HeaderValue::from_str(&named) {
        config
            .headers
            .retain(|(name, _)| name != http::header::USER_AGENT);
        config.headers.push((http::header::USER_AGENT, value));
    }
}

fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "ruleop".into())
        + &format!("-{}", std::process::id())
}

/// Cancels `token` on SIGTERM or SIGINT. A second signal, or a stop that takes longer than
/// [`SHUTDOWN_GRACE`], ends the process at once.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot handle SIGTERM/SIGINT: they will end the process at once");
                return;
            };
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping; a second signal exits at once");
            token.cancel();
            force_exit_after(SHUTDOWN_GRACE);
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::warn!(signal = name, "second signal: exiting at once");
            exit_now(FORCED_EXIT);
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            force_exit_after(SHUTDOWN_GRACE);
        }
    });
}

/// Ends the process after `grace` unless it stopped by itself. A thread, not a task: it must
/// fire even if the runtime is stuck.
fn force_exit_after(grace: Duration) {
    let _ = std::thread::Builder::new()
        .name("shutdown-grace".into())
        .spawn(move || {
            std::thread::sleep(grace);
            tracing::error!(grace = ?grace, "stopping took too long: exiting at once");
            exit_now(1);
        });
}

/// Exits after giving the log lines already written a moment to reach stderr.
fn exit_now(code: i32) -> ! {
    crate::telemetry::logwriter::stderr().flush(Duration::from_millis(500));
    std::process::exit(code)
}

/// The runtime of `ruleop run`: one thread, or a pool of `threads` (see `RunArgs::threads`).
pub fn runtime(threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.into())
            .enable_all()
            .build()
    }
}

/// The operator's own namespace, if known: `$POD_NAMESPACE`, else the namespace of
/// `--rules-configmap`. A rule's ServiceAccount is looked for there when it names none.
fn operator_namespace(args: &RunArgs) -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .or_else(|| {
            let reference = args.rules_configmap.as_deref()?;
            Some(reference.split_once('/')?.0.to_string())
        })
}

/// Runs the controller until a signal.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    telemetry::init_logging(args.log_format);
    let cancel = CancellationToken::new();
    on_signal(cancel.clone());
    let metrics = Arc::new(Metrics::new());
    let health = Health::new();
    if !args.metrics_addr.is_empty() {
        let addr: SocketAddr = args
            .metrics_addr
            .parse()
            .map_err(|_| RunError::MetricsAddr(args.metrics_addr.clone()))?;
        // Bound here, not in the task: an address in use must fail the start, not a log line.
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::MetricsBind {
                addr: args.metrics_addr.clone(),
                source,
            })?;
        let (m, h, c) = (metrics.clone(), health.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = telemetry::serve(listener, m, h, c).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    let identity = identity();
    let mut kube_config = kube_config(&args).await?;
    name_replica(&mut kube_config, &identity);
    // The elector, the prober and the rules ConfigMap watch use `client`; everything the
    // controller does goes through `fenced`, whose writes need a valid leadership: the
    // operator's own client and every rule account's share its transport.
    let fence = if args.leader_elect {
        Fence::shut()
    } else {
        Fence::open()
    };
    let fenced = Transport::new(&kube_config, args.leader_elect.then_some(&fence))
        .map_err(ConnectError::from)?;
    let client = if args.leader_elect {
        client(&kube_config, None)?
    } else {
        fenced.client()
    };
    tokio::spawn(health::probe(
        client.clone(),
        health.clone(),
        cancel.clone(),
    ));
    tracing::info!(%identity, api_server = %kube_config.cluster_url, "starting");

    let elector = if args.leader_elect {
        let namespace = args
            .leader_elect_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let elector = Elector::new(
            client.clone(),
            &namespace,
            &args.leader_elect_name,
            &identity,
            fence,
        );
        // A standby is healthy and ready to take over: not ready would block rolling updates.
        health.set_standby(true);
        if !elector.acquire(&cancel).await {
            return Ok(());
        }
        health.set_standby(false);
        Some(elector)
    } else {
        None
    };
    let lost = Arc::new(AtomicBool::new(false));
    if let Some(elector) = elector.clone() {
        let (cancel, lost) = (cancel.clone(), lost.clone());
        tokio::spawn(async move {
            if !elector.hold(&cancel).await {
                lost.store(true, std::sync::atomic::Ordering::Release);
                cancel.cancel();
            }
        });
    }

    let config = Config {
        namespaces: args.namespaces.clone(),
        concurrency: args.concurrency,
        identity,
        events: args.events,
    };
    let identities = Identities::new(fenced, operator_namespace(&args));
    // RuleRevisions are the operator's own objects: written as the operator.
    let fenced = identities.operator().clone();
    let (controller, changes) = Controller::new(
        identities,
        config,
        metrics.clone(),
        health.synced_flag(),
        cancel.clone(),
    );
    let mut reloader = Reloader::new(controller.clone(), metrics, health);
    if args.revisions {
        let revisions = Arc::new(Revisions::new(
            fenced,
            controller.clone(),
            args.revision_history_limit,
        ));
        tokio::spawn(revisions.clone().flush_every(cancel.clone()));
        tokio::spawn(revisions.clone().rollouts_every(cancel.clone()));
        reloader = reloader.with_revisions(revisions);
    }
    let reloader = Arc::new(reloader);
    let (tx, mut rx) = mpsc::unbounded_channel::<Snapshot>();
    match &args.rules_configmap {
        Some(reference) => {
            let (namespace, name) = reference
                .split_once('/')
                .ok_or_else(|| RunError::ConfigMapRef(reference.clone()))?;
            tokio::spawn(watch_configmap(
                client,
                namespace.to_string(),
                name.to_string(),
                tx,
                cancel.clone(),
            ));
        }
        None => follow_paths(args.rules.clone(), reloader.clone(), cancel.clone()).await?,
    }
    {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while let Some(snapshot) = rx.recv().await {
                reloader.reload(snapshot).await;
            }
        });
    }
    controller.run(changes).await;

    if lost.load(std::sync::atomic::Ordering::Acquire) {
        return Err(RunError::LostLeadership);
    }
    if let Some(elector) = elector {
        // Bounded: an unreachable API server must not hold up the exit.
        let _ = tokio::time::timeout(Duration::from_secs(5), elector.release()).await;
    }
    Ok(())
}

/// Sends a snapshot of the ConfigMap's rule files whenever it changes.
async fn watch_configmap(
    client: kube::Client,
    namespace: String,
    name: String,
    tx: mpsc::UnboundedSender<Snapshot>,
    cancel: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config =
        crate::client::kubeclient::watcher_config().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(cm)) => {
                let data = cm.data.unwrap_or_default();
                let _ = tx.send(configmap_snapshot(&namespace, &name, &data));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, configmap = %format!("{namespace}/{name}"), "cannot watch the rules ConfigMap; retrying")
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_thread_by_default_and_a_pool_when_asked() {
        let one = super::runtime(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let pool = super::runtime(3).unwrap();
        assert_eq!(pool.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(pool.metrics().num_workers(), 3);
    }
}
