//! Recording Events (`events.k8s.io/v1`): an event repeated within the series window is
//! counted on the Event first recorded (its `series` patched) instead of becoming another.
//!
//! kube's `Recorder` keeps every Event of the last six minutes whole and sweeps them all on
//! each publish, under one lock: with thousands of parents each publish walked thousands of
//! entries (8% of the operator's CPU in a 2,000-parent cold sync, growing with the square of
//! the parents) and held them in memory. Here an entry is a hash of the event's identity,
//! the recorded Event's name and its count, and expired entries are swept once per as many
//! publishes as there are entries: amortized constant work per Event.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use ruleop_plan::EventType;

/// How long a repeat joins the series of the Event first recorded (as client-go and kube).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The action every Event of a reconcile carries.
const ACTION: &str = "Reconcile";

/// One Event to record.
#[derive(Debug, Clone)]
pub struct Occurrence {
    /// Normal or Warning.
    pub type_: EventType,
    /// The reason (`Created`, `InvalidSize`, ...).
    pub reason: String,
    /// The note (the message), at most 1,000 characters.
    pub note: String,
    /// The object it is about besides the parent (a child).
    pub related: Option<ObjectReference>,
}

/// What recording an occurrence takes.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Create a new Event named so.
    Create(String),
    /// Patch the series of the Event so named to this count.
    Count(String, i32),
    /// Nothing now: the Event's create is in flight, and its recorder sends the count.
    Pending,
}

/// The Events recorded in the series window, by the hash of their identity.
#[derive(Debug)]
struct Series {
    recorded: HashMap<u64, Recorded>,
    /// Publishes since the last sweep of expired entries.
    since_sweep: usize,
    /// Publishes before the next sweep: the entries left by the last one (at least 64), so
    /// a sweep's cost is spread over as many publishes and the map at most doubles between.
    sweep_after: usize,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            recorded: HashMap::new(),
            since_sweep: 0,
            sweep_after: MIN_SWEEP,
        }
    }
}

/// The fewest publishes between two sweeps.
const MIN_SWEEP: usize = 64;

#[derive(Debug)]
struct Recorded {
    name: String,
    count: i32,
    last: Instant,
    /// Whether the API server has the Event (its create returned).
    created: bool,
}

impl Series {
    /// The step for an occurrence whose identity hashes to `key` at `now`; `name` names a new
    /// Event. A repeat while the create is in flight is only counted: patching an Event the
    /// server may not have yet would fail and start a second series.
    fn step(&mut self, key: u64, now: Instant, name: impl FnOnce() -> String) -> Step {
        self.since_sweep += 1;
        if self.since_sweep >= self.sweep_after {
            self.since_sweep = 0;
            self.recorded
                .retain(|_, r| now.duration_since(r.last) < SERIES_WINDOW);
            self.sweep_after = self.recorded.len().max(MIN_SWEEP);
        }
        match self.recorded.get_mut(&key) {
            Some(r) if now.duration_since(r.last) < SERIES_WINDOW => {
                r.count += 1;
                r.last = now;
                if r.created {
                    Step::Count(r.name.clone(), r.count)
                } else {
                    Step::Pending
                }
            }
            _ => {
                let name = name();
                self.recorded.insert(
                    key,
                    Recorded {
                        name: name.clone(),
                        count: 1,
                        last: now,
                        created: false,
                    },
                );
                Step::Create(name)
            }
        }
    }

    /// Marks `key`'s Event created; the count to patch if repeats came meanwhile.
    fn created(&mut self, key: u64) -> Option<(String, i32)> {
        let r = self.recorded.get_mut(&key)?;
        r.created = true;
        (r.count > 1).then(|| (r.name.clone(), r.count))
    }

    /// Forgets `key`'s Event (gone from the API server: the next repeat creates a new one).
    fn forget(&mut self, key: u64) {
        self.recorded.remove(&key);
    }
}

/// Events recorded on one object at once before the rate limit holds them back (client-go's
/// `EventSourceObjectSpamFilter`: a burst of 25).
const BURST: f64 = 25.0;

/// Then one more per this long (client-go: 1 per 5 minutes).
const REFILL: Duration = Duration::from_secs(5 * 60);

/// A token bucket per object Events are recorded on (this recorder is one source), so that
/// an input flapping for hours records a few Events, not thousands of Event writes.
#[derive(Debug)]
struct SpamFilter {
    buckets: HashMap<u64, Bucket>,
    /// Calls since the last sweep of full buckets, and the calls before the next one.
    since_sweep: usize,
    sweep_after: usize,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: tokio::time::Instant,
}

impl Default for SpamFilter {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            since_sweep: 0,
            sweep_after: MIN_SWEEP,
        }
    }
}

impl SpamFilter {
    /// Whether an Event on the object whose reference hashes to `key` may be recorded `now`.
    fn allow(&mut self, key: u64, now: tokio::time::Instant) -> bool {
        self.since_sweep += 1;
        if self.since_sweep >= self.sweep_after {
            self.since_sweep = 0;
            // A bucket refilled to the burst is the same as none.
            self.buckets.retain(|_, b| refilled(b, now) < BURST);
            self.sweep_after = self.buckets.len().max(MIN_SWEEP);
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: BURST,
            last: now,
        });
        bucket.tokens = refilled(bucket, now);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `bucket`'s tokens at `now`.
fn refilled(bucket: &Bucket, now: tokio::time::Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.last);
    (bucket.tokens + elapsed.as_secs_f64() / REFILL.as_secs_f64()).min(BURST)
}

/// Records Events on objects, as `controller`/`instance`.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
    spam: Mutex<SpamFilter>,
    hasher: RandomState,
}

impl Recorder {
    /// A recorder writing with `client`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            series: Mutex::default(),
            spam: Mutex::default(),
            hasher: RandomState::new(),
        }
    }

    /// Records `occurrence` on `regarding`: creates an Event, or counts a repeat of one
    /// recorded in the series window (same type, reason, note, object and related object).
    /// Beyond the rate limit of Events on one object it is dropped, as client-go does.
    pub async fn record(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let object = self.hasher.hash_one(reference_key(regarding));
        let allowed = self
            .spam
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(object, tokio::time::Instant::now());
        if !allowed {
            tracing::debug!(object = ?regarding.name, reason = %occurrence.reason, "event dropped: too many events on this object");
            return Ok(());
        }
        self.record_series(occurrence, regarding).await
    }

    /// [`Recorder::record`], past the rate limit.
    async fn record_series(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = self.hasher.hash_one((
            occurrence.type_ == EventType::Warning,
            &occurrence.reason,
            &occurrence.note,
            reference_key(regarding),
            occurrence.related.as_ref().map(reference_key),
        ));
        let now = jiff::Timestamp::now();
        let step = self.lock().step(key, Instant::now(), || {
            // client-go's naming: the object's name and the time in hex nanoseconds.
            format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or(&self.controller),
                now.as_nanosecond()
            )
        });
        // Events of cluster-scoped objects go to `default`, as kubectl describe looks there.
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        match step {
            Step::Create(name) => {
                let event = self.event(occurrence, regarding, name, namespace, now);
                if let Err(e) = events.create(&PostParams::default(), &event).await {
                    self.lock().forget(key);
                    return Err(e);
                }
                let repeated = self.lock().created(key);
                match repeated {
                    Some((name, count)) => count_on(&events, &name, count).await.map(drop),
                    None => Ok(()),
                }
            }
            Step::Pending => Ok(()),
            Step::Count(name, count) => {
                let patched = count_on(&events, &name, count).await;
                match patched {
                    // Expired or deleted meanwhile: start a new series.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.lock().forget(key);
                        Box::pin(self.record_series(occurrence, regarding)).await
                    }
                    other => other.map(drop),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn event(
        &self,
        occurrence: &Occurrence,
        regarding: &ObjectReference,
        name: String,
        namespace: &str,
        now: jiff::Timestamp,
    ) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(ACTION.into()),
            reason: Some(occurrence.reason.clone()),
            note: Some(occurrence.note.clone()),
            type_: Some(
                match occurrence.type_ {
                    EventType::Warning => "Warning",
                    EventType::Normal => "Normal",
                }
                .into(),
            ),
            regarding: Some(regarding.clone()),
            related: occurrence.related.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

/// Sets the series count of the Event `name`.
async fn count_on(events: &Api<K8sEvent>, name: &str, count: i32) -> Result<K8sEvent, kube::Error> {
    let series = serde_json::json!({"series": EventSeries {
        count,
        last_observed_time: MicroTime(jiff::Timestamp::now()),
    }});
    events
        .patch(name, &PatchParams::default(), &Patch::Merge(&series))
        .await
}

/// The identifying fields of a reference.
fn reference_key(r: &ObjectReference) -> [Option<&str>; 5] {
    [
        r.api_version.as_deref(),
        r.kind.as_deref(),
        r.namespace.as_deref(),
        r.name.as_deref(),
        r.uid.as_deref(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> impl FnOnce() -> String + '_ {
        move || n.to_string()
    }

    #[test]
    fn a_repeat_in_the_window_counts_on_the_first_event() {
        let mut s = Series::default();
        let t = Instant::now();
        assert_eq!(s.step(1, t, name("a")), Step::Create("a".into()));
        // While the create is in flight a repeat is only counted; the creator sends it.
        assert_eq!(s.step(1, t, name("b")), Step::Pending);
        assert_eq!(s.created(1), Some(("a".into(), 2)));
        assert_eq!(
            s.step(1, t + Duration::from_secs(300), name("c")),
            Step::Count("a".into(), 3)
        );
        // Another identity is its own Event.
        assert_eq!(s.step(2, t, name("d")), Step::Create("d".into()));
    }

    #[test]
    fn a_repeat_after_the_window_or_a_lost_event_starts_a_new_one() {
        let mut s = Series::default();
        let t = Instant::now();
        s.step(1, t, name("a"));
        assert_eq!(s.created(1), None, "no repeat while creating");
        // The window runs from the last occurrence.
        let later = t + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(s.step(1, later, name("b")), Step::Create("b".into()));
        s.forget(1);
        assert_eq!(s.step(1, later, name("c")), Step::Create("c".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn events_on_one_object_are_limited_to_a_burst_then_a_slow_refill() {
        let mut f = SpamFilter::default();
        let now = tokio::time::Instant::now;
        for i in 0..25 {
            assert!(f.allow(1, now()), "event {i} of the burst");
        }
        assert!(!f.allow(1, now()), "the 26th at once is dropped");
        // Another object has its own bucket.
        assert!(f.allow(2, now()));
        // A flapping input: one Event a second for an hour records one per 5 minutes.
        let mut recorded = 0;
        for _ in 0..3600 {
            tokio::time::advance(Duration::from_secs(1)).await;
            if f.allow(1, now()) {
                recorded += 1;
            }
        }
        // One per 5 minutes (the twelfth may fall a rounding error past the hour).
        assert!(
            (11..=12).contains(&recorded),
            "3,600 occurrences, {recorded} recorded"
        );
        // Left alone long enough, the burst is back, and the full bucket is forgotten.
        tokio::time::advance(REFILL * 25).await;
        for i in 0..25 {
            assert!(f.allow(1, now()), "event {i} of the second burst");
        }
        assert!(!f.allow(1, now()));
        tokio::time::advance(REFILL * 26).await;
        for key in 100..100 + MIN_SWEEP as u64 {
            f.allow(key, now());
        }
        assert!(!f.buckets.contains_key(&2), "a refilled bucket is swept");
    }

    #[test]
    fn expired_entries_are_swept_and_the_memory_stays_bounded() {
        let mut s = Series::default();
        let t = Instant::now();
        for key in 0..1_000 {
            s.step(key, t, || format!("e{key}"));
        }
        assert_eq!(s.recorded.len(), 1_000);
        let later = t + SERIES_WINDOW + Duration::from_secs(1);
        // Every publish a new event: within as many publishes as there were entries at the
        // last sweep, the expired ones are gone, and the map never more than doubles.
        for key in 1_000..3_000 {
            s.step(key, later, || format!("e{key}"));
            assert!(
                s.recorded.len() <= 2 * 1_000 + MIN_SWEEP,
                "{}",
                s.recorded.len()
            );
        }
        assert!(s.recorded.keys().all(|k| *k >= 1_000));
    }
}
