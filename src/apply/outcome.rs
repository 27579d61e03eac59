//! How acting on a plan, and so a reconcile, ended: what the work queue does next.

use std::time::Duration;

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; run again after the duration, if any.
    Ok(Option<Duration>),
    /// A transient failure: retry with backoff.
    Retry,
    /// A transient failure whose server asked to wait this long (`Retry-After`): retry with
    /// backoff, and not before that time even if the parent changes meanwhile.
    RetryAfter(Duration),
}
