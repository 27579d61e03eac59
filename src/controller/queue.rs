//! The work queue: each key is queued at most once, never processed by two workers at once,
//! re-run once if it changed while being processed, and retried with exponential backoff and
//! jitter after transient failures.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

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
}

/// A deduplicating work queue.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Key>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Key>>>,
    state: Arc<Mutex<State>>,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
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
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` now.
    pub fn add(&self, key: Key) {
        let mut s = self.state();
        if s.running.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.pending.contains_key(&key) {
            return;
        }
        s.pending.insert(key.clone(), Instant::now());
        let _ = self.tx.send(key);
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: Key, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Keys waiting to be processed.
    pub fn depth(&self) -> usize {
        self.state().pending.len()
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
        s.running.insert(key.clone());
        Some((key, waited))
    }

    /// Marks `key` done. A failure schedules a retry with backoff; success resets it.
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
                Outcome::Retry => {
                    let n = s.failures.entry(key.clone()).or_insert(0);
                    *n += 1;
                    Some(backoff(*n))
                }
            }
        };
        match retry {
            Some(d) if d.is_zero() => self.add(key.clone()),
            Some(d) => self.add_after(key.clone(), d),
            None => {}
        }
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &Key) -> u32 {
        self.state().failures.get(key).copied().unwrap_or(0)
    }

    /// Forgets a key's failure history (its object is gone).
    pub fn forget(&self, key: &Key) {
        self.state().failures.remove(key);
    }
}

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; run again after the duration, if any.
    Ok(Option<Duration>),
    /// A transient failure: retry with backoff.
    Retry,
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
}
