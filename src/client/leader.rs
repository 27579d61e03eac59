//! Leader election on a coordination.k8s.io Lease, so two replicas can run with one active.
//!
//! The holder renews the lease every [`RETRY`]. A standby takes over only after it has seen
//! the lease unchanged for [`LEASE_DURATION`] on its own monotonic clock (as client-go does),
//! so clock skew between replicas does not matter. The leader writes only through a
//! [`Fence`] that stays open until [`RENEW_DEADLINE`] after the *start* of its last successful
//! renewal, [`FENCE_MARGIN`] before any standby can take over; when the fence closes the
//! leader stops (the process exits and is restarted as a standby), so two replicas never act
//! at once, also when the leader was paused past its lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use crate::client::fence::Fence;

pub use crate::client::fence::{FENCE_MARGIN, LEASE_DURATION, RENEW_DEADLINE, RETRY};

/// The parts of a lease that change on every renewal or takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renewed: Option<Timestamp>,
    transitions: i32,
}

/// When this replica last saw the lease record change, on its monotonic clock.
#[derive(Debug, Default)]
struct Observer {
    last: Option<(Record, Instant)>,
}

impl Observer {
    /// Notes `record` as seen at `now`; true when it has not changed for longer than
    /// `duration` (a fresh observer waits a whole `duration` first).
    fn expired(&mut self, record: Record, now: Instant, duration: Duration) -> bool {
        match &self.last {
            Some((last, at)) if *last == record => now.duration_since(*at) > duration,
            _ => {
                self.last = Some((record, now));
                false
            }
        }
    }
}

/// A lease and who this replica is.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    fence: Fence,
    observer: Arc<Mutex<Observer>>,
}

impl Elector {
    /// Elects on lease `namespace/name` as `identity`, opening `fence` while leading. The
    /// client must not be fenced itself: it renews the lease.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, fence: Fence) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            fence,
            observer: Arc::default(),
        }
    }

    /// Tries once to acquire or renew; true when this replica holds the lease afterwards (and
    /// the fence is extended from the moment this attempt started).
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let held = self.acquire_once().await?;
        if held {
            self.fence.extend(started, started_wall);
        }
        Ok(held)
    }

    async fn acquire_once(&self) -> Result<bool, kube::Error> {
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
            .and_then(|s| u64::try_from(s).ok())
            .map_or(LEASE_DURATION, Duration::from_secs);
        let transitions = spec.lease_transitions.unwrap_or(0);
        // Seen now, after the answer: never earlier than the holder's renewal began.
        let expired = self
            .observer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expired(
                Record {
                    holder: holder.clone(),
                    renewed: spec.renew_time.as_ref().map(|t| t.0),
                    transitions,
                },
                Instant::now(),
                duration,
            );
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
            // A request hanging on an unreachable API server must not hold up a stop.
            let attempt = tokio::select! {
                () = cancel.cancelled() => return false,
                attempt = self.try_acquire() => attempt,
            };
            match attempt {
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

    /// Renews until cancelled (returns true) or until the fence closes: renewal failed past
    /// [`RENEW_DEADLINE`], another replica holds the lease, or this process was paused past
    /// it (returns false, with the fence revoked).
    pub async fn hold(&self, cancel: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return true,
                () = self.fence.expired() => break,
                () = tokio::time::sleep(RETRY) => {}
            }
            // Woken after a pause: a closed fence is final, never renewed behind a standby.
            if !self.fence.is_open() {
                break;
            }
            let renewed = tokio::select! {
                () = cancel.cancelled() => return true,
                () = self.fence.expired() => break,
                renewed = self.try_acquire() => renewed,
            };
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!("another replica holds the leader lease");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
            }
        }
        self.fence.revoke();
        tracing::error!(
            deadline = ?RENEW_DEADLINE,
            "leadership not certain any more: writes fenced, stopping"
        );
        false
    }

    /// Gives the lease up on shutdown so a standby takes over at once (only while the fence
    /// is open: a replica whose leadership may have lapsed leaves the lease alone).
    pub async fn release(&self) {
        if !self.fence.is_open() {
            return;
        }
        self.fence.revoke();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, second: i64) -> Record {
        Record {
            holder: holder.into(),
            renewed: Timestamp::from_second(second).ok(),
            transitions: 0,
        }
    }

    #[test]
    fn a_standby_waits_a_whole_duration_from_its_own_observation() {
        let mut observer = Observer::default();
        let t0 = Instant::now();
        let d = LEASE_DURATION;
        // A renewTime far in the past says nothing: only our own clock counts.
        assert!(!observer.expired(record("a", 0), t0, d));
        assert!(!observer.expired(record("a", 0), t0 + d, d));
        assert!(observer.expired(record("a", 0), t0 + d + Duration::from_millis(1), d));
    }

    #[test]
    fn every_renewal_restarts_the_wait() {
        let mut observer = Observer::default();
        let t0 = Instant::now();
        let d = LEASE_DURATION;
        assert!(!observer.expired(record("a", 100), t0, d));
        let t1 = t0 + Duration::from_secs(14);
        assert!(!observer.expired(record("a", 102), t1, d));
        assert!(!observer.expired(record("a", 102), t0 + Duration::from_secs(20), d));
        assert!(observer.expired(record("a", 102), t1 + d + Duration::from_secs(1), d));
        // A new holder is a change too.
        assert!(!observer.expired(record("b", 102), t1 + d * 2, d));
    }

    #[test]
    fn the_leader_stops_before_anyone_can_take_over() {
        assert_eq!(
            crate::client::fence::VALIDITY + FENCE_MARGIN,
            LEASE_DURATION
        );
        assert!(
            FENCE_MARGIN >= RETRY * 2,
            "room for a write in flight and clock rate drift"
        );
    }
}
