//! Logs, Prometheus metrics, and the `/metrics`, `/healthz`, `/readyz` endpoints.

pub mod health;
pub mod logwriter;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::health::Health;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber (`RUST_LOG` filters, default `info`). Logs go to
/// stderr through [`crate::telemetry::logwriter`]: a slow or closed stderr never blocks or panics.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // kube's own request failure lines name no address; the callers log those failures.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,kube_runtime::watcher=warn,kube_client::client::builder=off",
            )
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::telemetry::logwriter::stderr())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its fallback is `eprintln!`, which panics when stderr is a closed pipe.
        .log_internal_errors(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (tests): keep the existing subscriber.
    let _ = result;
}

/// Labels naming a rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule.
    pub rule: String,
}

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The rule.
    pub rule: String,
    /// `ok`, `invalid` (bad input), `error`.
    pub result: String,
}

/// Labels of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The rule.
    pub rule: String,
    /// CamelCase reason.
    pub reason: String,
}

/// Labels of a loaded rule version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleStateLabels {
    /// The rule.
    pub rule: String,
    /// Content hash of its file.
    pub hash: String,
    /// `active` or `waiting` (its kinds are not served yet).
    pub state: String,
}

/// Labels of a write to the API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `apply`, `delete`, `status`, `finalizer`, `event`.
    pub verb: String,
}

/// Every metric ruleop exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by rule and result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Errors by rule and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration by rule.
    pub duration: Family<RuleLabels, Histogram>,
    /// Keys waiting in the queue.
    pub queue_depth: Gauge,
    /// Time keys waited in the queue.
    pub queue_wait: Histogram,
    /// Loaded rules (1 per rule, labelled with hash and state).
    pub rules: Family<RuleStateLabels, Gauge>,
    /// Rule files refused at load or reload.
    pub rule_errors: Counter,
    /// Rule set reloads.
    pub reloads: Counter,
    /// Write requests made, by verb.
    pub writes: Family<WriteLabels, Counter>,
    /// Objects in the watch caches.
    pub cached_objects: Gauge,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ruleop");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<RuleLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let queue_depth = Gauge::default();
        let queue_wait = duration_histogram();
        let rules = Family::<RuleStateLabels, Gauge>::default();
        let rule_errors = Counter::default();
        let reloads = Counter::default();
        let writes = Family::<WriteLabels, Counter>::default();
        let cached_objects = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by rule and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by rule and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by rule",
            duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Parents waiting to be reconciled",
            queue_depth.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time parents waited in the queue",
            queue_wait.clone(),
        );
        registry.register(
            "rule_info",
            "Loaded rules, with content hash and state",
            rules.clone(),
        );
        registry.register(
            "rule_load_errors",
            "Rule files refused at load or reload",
            rule_errors.clone(),
        );
        registry.register("rule_reloads", "Rule set reloads", reloads.clone());
        registry.register(
            "api_writes",
            "Write requests to the API server, by verb",
            writes.clone(),
        );
        registry.register(
            "cached_objects",
            "Objects held in watch caches",
            cached_objects.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            queue_depth,
            queue_wait,
            rules,
            rule_errors,
            reloads,
            writes,
            cached_objects,
        }
    }

    /// Counts one write.
    pub fn write(&self, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels { verb: verb.into() })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    loop {
        let (mut stream, _) = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body, content_type) = match path {
                "/metrics" => (
                    "200 OK",
                    metrics.encode(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                "/healthz" => ("200 OK", "ok\n".to_string(), "text/plain"),
                "/readyz" => match health.readiness() {
                    Ok(()) => ("200 OK", "ok\n".to_string(), "text/plain"),
                    Err(why) => (
                        "503 Service Unavailable",
                        format!("not ready: {why}\n"),
                        "text/plain",
                    ),
                },
                _ => ("404 Not Found", "not found\n".to_string(), "text/plain"),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
