//! Start-up and shutdown of `ruleop run`: logging, rules, leader election, metrics server,
//! and the controller, wired to one cancellation token fired by SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::controller::{Config, Controller};
use crate::leader::Elector;
use crate::rule::load_paths;
use crate::telemetry::{self, LogFormat, Metrics};

/// Options of `ruleop run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Rule files or directories.
    #[arg(long, default_value = "rules", num_args = 1..)]
    pub rules: Vec<PathBuf>,
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
}

/// Why `ruleop run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes configuration.
    #[error("cannot reach Kubernetes: {0}")]
    Client(#[from] kube::Error),
    /// Bad `--metrics-addr`.
    #[error("invalid --metrics-addr {0:?}")]
    MetricsAddr(String),
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
    let client = kube::Client::try_default().await?;
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

    let (loaded, errors) = load_paths(&args.rules);
    for e in &errors {
        tracing::error!(error = %e, "rule refused");
        metrics.rule_errors.inc();
    }
    tracing::info!(rules = loaded.len(), refused = errors.len(), "rules loaded");
    let config = Config {
        namespaces: args.namespaces.clone(),
        concurrency: args.concurrency,
        identity,
    };
    let (controller, changes) = Controller::new(client, config, metrics, ready, cancel.clone());
    controller.add_rules(loaded).await;
    controller.run(changes).await;

    if lost.load(std::sync::atomic::Ordering::Acquire) {
        return Err(RunError::LostLeadership);
    }
    if let Some(elector) = elector {
        elector.release().await;
    }
    Ok(())
}
