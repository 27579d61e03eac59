//! Start-up and shutdown of `ruleop run`: logging, rules, leader election, metrics server,
//! and the controller, wired to one cancellation token fired by SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::sync::Mutex;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controller::{Config, Controller};
use crate::leader::Elector;
use crate::reload::{Snapshot, configmap_snapshot, plan_reload, read_snapshot, watch_paths};
use crate::rule::{LoadedRule, RuleError};
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
    /// Path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// The `User-Agent` of every request, so audit logs tell ruleop's writes from others'.
pub const USER_AGENT: &str = concat!("ruleop/", env!("CARGO_PKG_VERSION"));

/// A client for the cluster named by `--kubeconfig`/`--context` (else the usual inference).
pub async fn connect(args: &RunArgs) -> Result<kube::Client, RunError> {
    connect_to(args.kubeconfig.as_deref(), args.context.as_deref()).await
}

/// A client for `kubeconfig`/`context` (else the usual inference), sending [`USER_AGENT`].
pub async fn connect_to(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, RunError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| RunError::Kubeconfig(path.display().to_string(), e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| RunError::Kubeconfig(path.display().to_string(), e.to_string()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| RunError::Kubeconfig("$KUBECONFIG".into(), e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| RunError::Kubeconfig("the environment".into(), e.to_string()))?,
    };
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    // Retries through the queue, dead connections noticed: see `kubeclient`.
    Ok(crate::kubeclient::build(config)?)
}

/// Why `ruleop run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes configuration.
    #[error("cannot reach Kubernetes: {0}")]
    Client(#[from] kube::Error),
    /// No usable kubeconfig.
    #[error("cannot load the Kubernetes configuration from {0}: {1}")]
    Kubeconfig(String, String),
    /// Bad `--metrics-addr`.
    #[error("invalid --metrics-addr {0:?}")]
    MetricsAddr(String),
    /// Bad `--rules-configmap`.
    #[error("invalid --rules-configmap {0:?}: use NAMESPACE/NAME")]
    ConfigMapRef(String),
    /// The rules directory cannot be watched.
    #[error("cannot watch rules: {0}")]
    Watch(#[from] notify::Error),
    /// Leadership lost: exit so a restarted replica joins as a standby.
    #[error("lost leadership")]
    LostLeadership,
}

fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "ruleop".into())
        + &format!("-{}", std::process::id())
}

/// Cancels `token` on SIGTERM or SIGINT.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
}

/// Runs the controller until a signal.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    telemetry::init_logging(args.log_format);
    let cancel = CancellationToken::new();
    on_signal(cancel.clone());
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    if !args.metrics_addr.is_empty() {
        let addr: SocketAddr = args
            .metrics_addr
            .parse()
            .map_err(|_| RunError::MetricsAddr(args.metrics_addr.clone()))?;
        let (m, r, c) = (metrics.clone(), ready.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = telemetry::serve(addr, m, r, c).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    let client = connect(&args).await?;
    let identity = identity();

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
        );
        // A standby is healthy and ready to take over: not ready would block rolling updates.
        ready.store(true, std::sync::atomic::Ordering::Release);
        if !elector.acquire(&cancel).await {
            return Ok(());
        }
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
    };
    let (controller, changes) = Controller::new(
        client.clone(),
        config,
        metrics.clone(),
        ready,
        cancel.clone(),
    );
    let reloader = Arc::new(Reloader {
        controller: controller.clone(),
        metrics,
        current: Mutex::default(),
    });
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
        None => {
            let (snapshot, errors) = read_snapshot(&args.rules);
            reloader.reload(snapshot, errors).await;
            let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<()>();
            watch_paths(args.rules.clone(), changed_tx, cancel.clone())?;
            let paths = args.rules.clone();
            let reloader = reloader.clone();
            tokio::spawn(async move {
                while changed_rx.recv().await.is_some() {
                    let (snapshot, errors) = read_snapshot(&paths);
                    reloader.reload(snapshot, errors).await;
                }
            });
        }
    }
    {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while let Some(snapshot) = rx.recv().await {
                reloader.reload(snapshot, Vec::new()).await;
            }
        });
    }
    controller.run(changes).await;

    if lost.load(std::sync::atomic::Ordering::Acquire) {
        return Err(RunError::LostLeadership);
    }
    if let Some(elector) = elector {
        elector.release().await;
    }
    Ok(())
}

/// Applies rule snapshots to the controller, one at a time.
struct Reloader {
    controller: Arc<Controller>,
    metrics: Arc<Metrics>,
    current: Mutex<Vec<LoadedRule>>,
}

impl Reloader {
    async fn reload(&self, snapshot: Snapshot, read_errors: Vec<RuleError>) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (next, mut diff) = plan_reload(&current, &snapshot);
        diff.refused.extend(read_errors);
        for e in &diff.refused {
            tracing::error!(error = %e, "rule refused");
            self.metrics.rule_errors.inc();
        }
        let names = |rules: &[LoadedRule]| {
            rules
                .iter()
                .map(|r| r.rule.name.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        if diff.is_empty() && diff.refused.is_empty() && !current.is_empty() {
            tracing::debug!("rules unchanged");
        } else {
            tracing::info!(
                added = %names(&diff.added),
                changed = %names(&diff.changed),
                removed = %names(&diff.removed),
                refused = diff.refused.len(),
                kept_last_good = %diff.kept.join(","),
                active = next.len(),
                "rules loaded"
            );
        }
        self.metrics.reloads.inc();
        self.controller.apply_diff(&diff).await;
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }
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
    let config = crate::kubeclient::watcher_config().fields(&format!("metadata.name={name}"));
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
