//! Readiness of `ruleop run`: rules loaded, watch caches synced, and the API server answering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How often the API server is asked for its version.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A successful probe counts this long (a stuck prober must not keep the process ready).
pub const PROBE_FRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Api {
    last_ok: Option<Instant>,
    error: Option<String>,
    /// Whether the last probe succeeded (`None` before the first).
    reachable: Option<bool>,
}

/// What `/readyz` answers from; shared by the controller, the reloader and the prober.
#[derive(Debug, Default)]
pub struct Health {
    rules_loaded: AtomicBool,
    synced: Arc<AtomicBool>,
    standby: AtomicBool,
    api: Mutex<Api>,
}

impl Health {
    /// Nothing loaded, synced or reached yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The flag the controller sets while every active rule's caches are synced.
    pub fn synced_flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    /// The first rule set (even an empty or partly refused one) has been applied.
    pub fn set_rules_loaded(&self) {
        self.rules_loaded.store(true, Ordering::Release);
    }

    /// A standby waiting for the lease is ready to take over without rules or caches.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
    }

    fn api(&self) -> std::sync::MutexGuard<'_, Api> {
        self.api
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a probe's outcome; returns true for the first outcome and when reachability
    /// changed (what is worth a log line).
    pub fn record_probe(&self, outcome: Result<(), String>, at: Instant) -> bool {
        let mut api = self.api();
        let reachable = outcome.is_ok();
        match outcome {
            Ok(()) => {
                api.last_ok = Some(at);
                api.error = None;
            }
            Err(e) => api.error = Some(e),
        }
        api.reachable.replace(reachable) != Some(reachable)
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_at(Instant::now())
    }

    fn readiness_at(&self, now: Instant) -> Result<(), String> {
        {
            let api = self.api();
            if let Some(e) = &api.error {
                return Err(format!("API server unreachable: {e}"));
            }
            match api.last_ok {
                None => return Err("no answer from the API server yet".into()),
                Some(at) if now.saturating_duration_since(at) > PROBE_FRESH => {
                    return Err(format!(
                        "no answer from the API server for {}s",
                        now.saturating_duration_since(at).as_secs()
                    ));
                }
                Some(_) => {}
            }
        }
        if self.standby.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.rules_loaded.load(Ordering::Acquire) {
            return Err("rules not loaded yet".into());
        }
        if !self.synced.load(Ordering::Acquire) {
            return Err("watch caches not synced yet".into());
        }
        Ok(())
    }
}

/// Asks the API server for its version every [`PROBE_INTERVAL`] until cancelled, logging
/// when it becomes unreachable or reachable again.
pub async fn probe(client: kube::Client, health: Arc<Health>, cancel: CancellationToken) {
    loop {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(crate::client::transport::chain(&e)),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        let failed = outcome.as_ref().err().cloned();
        if health.record_probe(outcome, Instant::now()) {
            match failed {
                Some(e) => tracing::warn!(error = %e, "API server unreachable: not ready"),
                None => tracing::info!("API server reachable"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_rules_caches_and_api() {
        let health = Health::new();
        let now = Instant::now();
        assert!(health.readiness_at(now).unwrap_err().contains("API server"));
        health.record_probe(Ok(()), now);
        assert_eq!(
            health.readiness_at(now).unwrap_err(),
            "rules not loaded yet"
        );
        health.set_rules_loaded();
        assert_eq!(
            health.readiness_at(now).unwrap_err(),
            "watch caches not synced yet"
        );
        health.synced_flag().store(true, Ordering::Release);
        assert_eq!(health.readiness_at(now), Ok(()));
    }

    #[test]
    fn an_unreachable_or_silent_api_server_makes_it_unready() {
        let health = Health::new();
        health.set_rules_loaded();
        health.synced_flag().store(true, Ordering::Release);
        let now = Instant::now();
        assert!(health.record_probe(Ok(()), now));
        assert!(health.readiness_at(now).is_ok());
        assert!(health.record_probe(Err("https://10.0.0.1:6443: refused".into()), now));
        let why = health.readiness_at(now).unwrap_err();
        assert!(why.contains("https://10.0.0.1:6443"), "{why}");
        assert!(health.record_probe(Ok(()), now));
        assert!(
            !health.record_probe(Ok(()), now),
            "no change, nothing to log"
        );
        assert!(health.readiness_at(now + PROBE_FRESH).is_ok());
        assert!(
            health
                .readiness_at(now + PROBE_FRESH + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn a_standby_needs_only_the_api_server() {
        let health = Health::new();
        health.set_standby(true);
        assert!(health.readiness().is_err());
        health.record_probe(Ok(()), Instant::now());
        assert!(health.readiness().is_ok());
    }
}
