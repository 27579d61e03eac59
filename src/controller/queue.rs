//! The work queue: each key is queued at most once, never processed by two workers at once,
//! re-run once if it changed while being processed, retried with exponential backoff and
//! jitter after transient failures, and held back as long as the server asked (`Retry-After`).
//! Each key has at most one pending timer (the earliest asked for wins), so periodic resyncs
//! and retries never pile up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub use crate::apply::Outcome;

/// What is reconciled: a parent of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The rule's name.
    pub rule: String,
    /// The parent's namespace (empty when cluster-scoped).
    pub namespace: String,
    /// The parent's name.
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}:{}", self.rule, self.name)
        } else {
            write!(f, "{}:{}/{}", self.rule, self.namespace, self.name)
        }
    }
}

#[derive(Default)]
struct State {
    /// Queued keys and when they were queued.
    pending: HashMap<Key, Instant>,
    running: HashSet<Key>,
    /// Keys that changed while running.
    dirty: HashSet<Key>,
    failures: HashMap<Key, u32>,
    /// The one pending timer of each key: when it fires.
    timers: HashMap<Key, Instant>,
    /// The same timers ordered by deadline, for the timer task.
    deadlines: BTreeSet<(Instant, Key)>,
    /// Keys the server asked to leave alone until then (`Retry-After`): any trigger before
    /// that waits for it.
    not_before: HashMap<Key, Instant>,
    /// Whether the timer task runs.
    timer_task: bool,
}

impl State {
    /// Queues `key` now unless it is queued, running (then it re-runs) or held back.
    fn add(&mut self, key: Key, tx: &mpsc::UnboundedSender<Key>, now: Instant) -> Option<Instant> {
        if self.running.contains(&key) {
            self.dirty.insert(key);
            return None;
        }
        if self.pending.contains_key(&key) {
            return None;
        }
        match self.not_before.get(&key) {
            Some(&until) if until > now => return self.schedule(key, until),
            Some(_) => {
                self.not_before.remove(&key);
            }
            None => {}
        }
        self.pending.insert(key.clone(), now);
        let _ = tx.send(key);
        None
    }

    /// Sets `key`'s timer to `at` unless an earlier one is pending. Returns the new deadline
    /// when it became the key's timer.
    fn schedule(&mut self, key: Key, at: Instant) -> Option<Instant> {
        if let Some(&current) = self.timers.get(&key) {
            if current <= at {
                return None;
            }
            self.deadlines.remove(&(current, key.clone()));
        }
        self.timers.insert(key.clone(), at);
        self.deadlines.insert((at, key));
        Some(at)
    }

    fn cancel_timer(&mut self, key: &Key) {
        if let Some(at) = self.timers.remove(key) {
            self.deadlines.remove(&(at, key.clone()));
        }
    }

    /// Removes and returns the keys whose timers are due.
    fn due(&mut self, now: Instant) -> Vec<Key> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.deadlines.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.timers.remove(&key);
                out.push(key);
            }
        }
        out
    }
}

/// A deduplicating work queue.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Key>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Key>>>,
    state: Arc<Mutex<State>>,
    /// Wakes the timer task when a timer earlier than the ones it waits for is set.
    wake: Arc<Notify>,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fires due timers until the queue is gone: one task per queue, however many timers.
async fn run_timers(state: Weak<Mutex<State>>, tx: mpsc::UnboundedSender<Key>, wake: Arc<Notify>) {
    loop {
        // Registered before reading the deadlines, so a timer set meanwhile is not missed.
        let woken = wake.notified();
        let next = {
            let Some(state) = state.upgrade() else { return };
            let mut s = lock(&state);
            let now = Instant::now();
            for key in s.due(now) {
                // A key held back by Retry-After is re-timed by `add` itself.
                s.add(key, &tx, now);
            }
            s.deadlines.first().map(|(at, _)| *at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            state: Arc::default(),
            wake: Arc::new(Notify::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Tells the timer task about a new earliest deadline, starting the task if needed.
    fn timer_set(&self, s: &mut State) {
        if !s.timer_task {
            s.timer_task = true;
            tokio::spawn(run_timers(
                Arc::downgrade(&self.state),
                self.tx.clone(),
                self.wake.clone(),
            ));
        }
        self.wake.notify_one();
    }

    /// Queues `key` now (or, when the server asked to wait, once that time has come).
    pub fn add(&self, key: Key) {
        let mut s = self.state();
        if s.add(key, &self.tx, Instant::now()).is_some() {
            self.timer_set(&mut s);
        }
    }

    /// Queues `key` after `delay`, unless it already has an earlier timer.
    pub fn add_after(&self, key: Key, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let mut s = self.state();
        if s.schedule(key, Instant::now() + delay).is_some() {
            self.timer_set(&mut s);
        }
    }

    /// Keys waiting to be processed.
    pub fn depth(&self) -> usize {
        self.state().pending.len()
    }

    /// Keys with a pending timer.
    pub fn scheduled(&self) -> usize {
        self.state().timers.len()
    }

    /// The next key to process and how long it waited; `None` when the queue is closed.
    pub async fn next(&self) -> Option<(Key, Duration)> {
        let key = self.rx.lock().await.recv().await?;
        let mut s = self.state();
        let waited = s
            .pending
            .remove(&key)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        // This run decides when the key runs next: an older timer would only add a reconcile.
        s.cancel_timer(&key);
        s.running.insert(key.clone());
        Some((key, waited))
    }

    /// Marks `key` done. A failure schedules a retry with backoff (and no earlier than the
    /// server asked); success resets it.
    pub fn done(&self, key: &Key, outcome: Outcome) {
        let retry = {
            let mut s = self.state();
            s.running.remove(key);
            let rerun = s.dirty.remove(key);
            match outcome {
                Outcome::Ok(after) => {
                    s.failures.remove(key);
                    if rerun { Some(Duration::ZERO) } else { after }
                }
                Outcome::Retry => Some(backoff(s.count_failure(key))),
                Outcome::RetryAfter(wait) => {
                    let delay = backoff(s.count_failure(key)).max(wait);
                    s.not_before.insert(key.clone(), Instant::now() + wait);
                    Some(delay)
                }
            }
        };
        if let Some(d) = retry {
            self.add_after(key.clone(), d);
        }
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &Key) -> u32 {
        self.state().failures.get(key).copied().unwrap_or(0)
    }

    /// Forgets a key's history and timer (its object is gone).
    pub fn forget(&self, key: &Key) {
        let mut s = self.state();
        s.failures.remove(key);
        s.not_before.remove(key);
        s.cancel_timer(key);
    }
}

impl State {
    fn count_failure(&mut self, key: &Key) -> u32 {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    }
}

/// Exponential backoff from 200 ms to 5 min, with ±50% jitter so retries spread out.
pub fn backoff(failures: u32) -> Duration {
    let base = 200u64.saturating_mul(1u64 << failures.min(20).saturating_sub(1));
    let capped = base.min(300_000);
    let jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1000;
    Duration::from_millis(capped / 2 + capped * jitter / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        Key {
            rule: "r".into(),
            namespace: "ns".into(),
            name: n.into(),
        }
    }

    #[tokio::test]
    async fn deduplicates_and_reruns_dirty_keys() {
        let q = Queue::new();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.depth(), 2);
        let (k, _) = q.next().await.unwrap();
        assert_eq!(k, key("a"));
        q.add(key("a")); // changed while running
        assert_eq!(q.depth(), 1, "not queued twice while running");
        q.done(&k, Outcome::Ok(None));
        assert_eq!(q.depth(), 2, "re-queued once after finishing");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = backoff(1);
        assert!(
            b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(300),
            "{b1:?}"
        );
        let b5 = backoff(5);
        assert!(
            b5 >= Duration::from_millis(1600) && b5 <= Duration::from_millis(4800),
            "{b5:?}"
        );
        assert!(backoff(40) <= Duration::from_secs(450));
    }

    /// The next key if one is ready within `within` (paused time advances meanwhile).
    async fn next_within(q: &Queue, within: Duration) -> Option<Key> {
        tokio::time::timeout(within, q.next())
            .await
            .ok()
            .flatten()
            .map(|(k, _)| k)
    }

    #[tokio::test(start_paused = true)]
    async fn resync_timers_do_not_pile_up() {
        let q = Queue::new();
        let resync = Outcome::Ok(Some(Duration::from_secs(60)));
        // Ten changes in ten seconds, each reconciled and each asking for a resync in 60 s.
        for _ in 0..10 {
            q.add(key("a"));
            let k = next_within(&q, Duration::from_millis(10)).await.unwrap();
            q.done(&k, resync);
            assert_eq!(q.scheduled(), 1, "one pending timer per key");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Then five minutes of quiet: one reconcile per period, not one per earlier reconcile.
        let start = Instant::now();
        let mut runs = 0;
        while let Some(k) = next_within(&q, Duration::from_secs(300) - start.elapsed()).await {
            runs += 1;
            q.done(&k, resync);
            assert_eq!(q.scheduled(), 1);
        }
        assert_eq!(runs, 5, "resyncs in 300 s at a 60 s period");
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_timer_wins_and_fires_once() {
        let q = Queue::new();
        q.add_after(key("a"), Duration::from_secs(10));
        q.add_after(key("a"), Duration::from_secs(5));
        q.add_after(key("a"), Duration::from_secs(20));
        assert_eq!(q.scheduled(), 1);
        let t0 = Instant::now();
        let k = next_within(&q, Duration::from_secs(30)).await.unwrap();
        assert_eq!(k, key("a"));
        assert_eq!(t0.elapsed().as_secs(), 5, "the earliest deadline fired");
        q.done(&k, Outcome::Ok(None));
        assert_eq!(
            next_within(&q, Duration::from_secs(60)).await,
            None,
            "the later requests were merged into the earlier one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_replaces_the_pending_timer() {
        let q = Queue::new();
        q.add_after(key("a"), Duration::from_secs(10));
        q.add(key("a")); // a change: runs now
        let k = next_within(&q, Duration::from_millis(10)).await.unwrap();
        assert_eq!(q.scheduled(), 0, "the run decides when the key runs next");
        q.done(&k, Outcome::Ok(None));
        assert_eq!(next_within(&q, Duration::from_secs(60)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_back_that_key_only() {
        let q = Queue::new();
        q.add(key("a"));
        let k = next_within(&q, Duration::from_millis(10)).await.unwrap();
        let t0 = Instant::now();
        q.done(&k, Outcome::RetryAfter(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The throttled parent changes, and another parent arrives.
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.depth(), 1, "only the other key is queued now");
        assert_eq!(
            next_within(&q, Duration::from_millis(10)).await,
            Some(key("b"))
        );
        q.done(&key("b"), Outcome::Ok(None));
        let k = next_within(&q, Duration::from_secs(30)).await.unwrap();
        assert_eq!(k, key("a"));
        assert!(
            t0.elapsed() >= Duration::from_secs(5),
            "retried after {:?}, before the server's Retry-After",
            t0.elapsed()
        );
        assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
        assert_eq!(q.failures(&k), 1);
        q.done(&k, Outcome::Ok(None));
        assert_eq!(q.failures(&k), 0);
        assert_eq!(
            next_within(&q, Duration::from_secs(60)).await,
            None,
            "retried once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forget_cancels_the_timer() {
        let q = Queue::new();
        q.add_after(key("a"), Duration::from_secs(5));
        q.forget(&key("a"));
        assert_eq!(q.scheduled(), 0);
        assert_eq!(next_within(&q, Duration::from_secs(60)).await, None);
    }
}
