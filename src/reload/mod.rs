//! Hot reload of rules: a directory (kubelet-mounted ConfigMap, plain files, editors' renames,
//! whole-directory swaps) watched with `notify`, or a ConfigMap watched through the API. Both
//! feed one path: snapshot the files, plan the new rule set against the running one (pure),
//! apply the difference to the controller.
//!
//! A file that no longer parses keeps its last good version running; a rule claiming a name
//! or parent kind already taken is refused in favour of the one that came first. A source
//! that cannot be read (missing for a moment, unreadable) keeps its rules: only a readable
//! listing without a file removes that file's rule. A snapshot identical to the last one
//! changes nothing and logs nothing.

mod source;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controller::Controller;
use crate::telemetry::Metrics;
use crate::telemetry::health::Health;
use ruleop_lang::load::LoadedRule;

pub use ruleop_lang::ruleset::{Diff, Snapshot, plan_reload};
pub use source::{configmap_snapshot, read_snapshot};
pub use watch::{DEBOUNCE, absolute_in, watch_paths};

/// The running rules and the snapshot they were planned from.
#[derive(Default)]
struct Applied {
    rules: Vec<LoadedRule>,
    snapshot: Option<Snapshot>,
}

/// Applies rule snapshots to the controller, one at a time.
pub struct Reloader {
    controller: Arc<Controller>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The leader's keeper of `RuleRevision`s (`None`: `--revisions=false`).
    revisions: Option<Arc<crate::revisions::Revisions>>,
    applied: tokio::sync::Mutex<Applied>,
}

impl Reloader {
    /// A reloader with no rules running yet.
    pub fn new(controller: Arc<Controller>, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Reloader {
            controller,
            metrics,
            health,
            revisions: None,
            applied: tokio::sync::Mutex::default(),
        }
    }

    /// Records each loaded and refused content as a `RuleRevision` through `revisions`.
    pub fn with_revisions(mut self, revisions: Arc<crate::revisions::Revisions>) -> Self {
        self.revisions = Some(revisions);
        self
    }

    /// Plans `snapshot` against the running rules and applies the difference. A snapshot
    /// identical to the last one is not a reload: nothing is logged, counted or applied.
    pub async fn reload(&self, snapshot: Snapshot) {
        let mut applied = self.applied.lock().await;
        if applied.snapshot.as_ref() == Some(&snapshot) {
            tracing::debug!("rules unchanged");
            return;
        }
        let (next, diff) = plan_reload(&applied.rules, &snapshot);
        for e in &diff.unreadable {
            tracing::error!(error = %e, "rules cannot be read; the rules they held keep running");
            self.metrics.rule_errors.inc();
        }
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
        tracing::info!(
            added = %names(&diff.added),
            changed = %names(&diff.changed),
            removed = %names(&diff.removed),
            refused = diff.refused.len(),
            unreadable = diff.unreadable.len(),
            kept_last_good = %diff.kept.join(","),
            active = next.len(),
            "rules loaded"
        );
        self.metrics.reloads.inc();
        if let Some(revisions) = &self.revisions {
            revisions.reload(&applied.rules, &diff, &snapshot).await;
        }
        self.controller.apply_diff(&diff).await;
        self.health.set_rules_loaded();
        applied.rules = next;
        applied.snapshot = Some(snapshot);
    }
}

/// Loads the rules under `paths`, then follows their changes until `cancel`: one reload per
/// quiet burst of changes, none for identical content.
pub async fn follow_paths(
    paths: Vec<PathBuf>,
    reloader: Arc<Reloader>,
    cancel: CancellationToken,
) -> notify::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    // Armed before the first read, so a change during it is not missed.
    watch_paths(paths.clone(), tx, cancel.clone())?;
    // Discovery may hang on an unreachable API server: a stop must not wait for it.
    tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        () = reloader.reload(read_snapshot(&paths)) => {}
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            reloader.reload(read_snapshot(&paths)).await;
        }
    });
    Ok(())
}
