//! Leader election on a coordination.k8s.io Lease, so two replicas can run with one active.
//!
//! The holder renews the lease every [`RETRY`]; another replica takes over only after the
//! lease has not been renewed for [`LEASE_DURATION`]. A leader that cannot renew within
//! [`RENEW_DEADLINE`] stops acting (the process exits and is restarted), so two replicas
//! never act at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long a leader tries to renew before giving up.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often to try to acquire or renew.
pub const RETRY: Duration = Duration::from_secs(2);

/// A lease and who this replica is.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    /// Elects on lease `namespace/name` as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
        }
    }

    /// Tries once to acquire or renew; true when this replica holds the lease afterwards.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .map_or(LEASE_DURATION.as_secs() as i64, i64::from);
        let renewed = spec
            .renew_time
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let expired = now.as_second() - renewed.as_second() > duration;
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            self.spec(spec.acquire_time.map_or(now, |t| t.0), now, transitions)
        } else if expired || holder.is_empty() {
            tracing::info!(previous = %holder, "taking over the expired leader lease");
            self.spec(now, now, transitions + 1)
        } else {
            return Ok(false);
        };
        lease.spec = Some(new_spec);
        // The resourceVersion in `lease` makes a concurrent takeover fail with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Waits until this replica holds the lease (false if cancelled first).
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        tracing::info!(lease = %self.name, identity = %self.identity, "waiting for leadership");
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election request failed"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Renews until cancelled (returns true) or until renewal fails past the deadline or
    /// another replica holds the lease (returns false).
    pub async fn hold(&self, cancel: &CancellationToken) -> bool {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return true,
                () = tokio::time::sleep(RETRY) => {}
            }
            match self.try_acquire().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("another replica holds the leader lease");
                    return false;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
            }
            if last_renewal.elapsed() > RENEW_DEADLINE {
                tracing::error!("could not renew the leader lease in time");
                return false;
            }
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease
                .spec
                .as_mut()
                .filter(|s| s.holder_identity.as_deref() == Some(&self.identity))
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }
}
