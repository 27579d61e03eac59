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

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controller::Controller;
use crate::health::Health;
use crate::telemetry::Metrics;
use ruleop_lang::load::{LoadedRule, RuleError, conflict, content_hash, parse_rule};

pub use source::{Snapshot, configmap_snapshot, read_snapshot};
pub use watch::{DEBOUNCE, absolute_in, watch_paths};

/// What a reload changes.
#[derive(Debug, Default)]
pub struct Diff {
    /// Rules new to the set.
    pub added: Vec<LoadedRule>,
    /// Rules whose content changed (the new version).
    pub changed: Vec<LoadedRule>,
    /// Rules gone from the set.
    pub removed: Vec<LoadedRule>,
    /// Problems: files refused (a last good version may still run).
    pub refused: Vec<RuleError>,
    /// Sources or files that cannot be read; their rules keep running.
    pub unreadable: Vec<RuleError>,
    /// Rules kept at their last good version: the new file is invalid or cannot be read.
    pub kept: Vec<String>,
}

impl Diff {
    /// Whether the running set changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Plans the new rule set from a snapshot, given the running set. Pure.
pub fn plan_reload(current: &[LoadedRule], snapshot: &Snapshot) -> (Vec<LoadedRule>, Diff) {
    let mut diff = Diff {
        unreadable: snapshot.unreadable.clone(),
        ..Diff::default()
    };
    let mut candidates: Vec<LoadedRule> = Vec::new();
    for (path, source) in &snapshot.files {
        let hash = content_hash(source);
        if let Some(same) = current.iter().find(|r| &r.path == path && r.hash == hash) {
            candidates.push(same.clone());
            continue;
        }
        match parse_rule(path, source) {
            Ok(rule) => candidates.push(LoadedRule {
                path: path.clone(),
                hash,
                rule: Arc::new(rule),
            }),
            Err(mut errors) => {
                diff.refused.append(&mut errors);
                if let Some(old) = current.iter().find(|r| &r.path == path) {
                    diff.kept.push(old.rule.name.clone());
                    candidates.push(old.clone());
                }
            }
        }
    }
    // A rule whose source cannot be read now was not removed by anyone: it keeps running.
    for old in current {
        if snapshot.keeps(&old.path) && !snapshot.files.iter().any(|(p, _)| p == &old.path) {
            diff.kept.push(old.rule.name.clone());
            candidates.push(old.clone());
        }
    }
    // Rules already running win name and kind clashes over newcomers.
    let running: BTreeSet<&str> = current.iter().map(|r| r.rule.name.as_str()).collect();
    candidates.sort_by_key(|c| (!running.contains(c.rule.name.as_str()), c.path.clone()));
    let mut next: Vec<LoadedRule> = Vec::new();
    for c in candidates {
        match conflict(&next, &c) {
            Some(e) => diff.refused.push(e),
            None => next.push(c),
        }
    }
    for n in &next {
        match current.iter().find(|c| c.rule.name == n.rule.name) {
            None => diff.added.push(n.clone()),
            Some(c) if c.hash != n.hash || c.path != n.path => diff.changed.push(n.clone()),
            Some(_) => {}
        }
    }
    for c in current {
        if !next.iter().any(|n| n.rule.name == c.rule.name) {
            diff.removed.push(c.clone());
        }
    }
    (next, diff)
}

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
    applied: tokio::sync::Mutex<Applied>,
}

impl Reloader {
    /// A reloader with no rules running yet.
    pub fn new(controller: Arc<Controller>, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Reloader {
            controller,
            metrics,
            health,
            applied: tokio::sync::Mutex::default(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MEMCACHED: &str = include_str!("../../rules/memcached.yaml");
    const MYAPP: &str = include_str!("../../rules/myapp.yaml");

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, s)| (PathBuf::from(p), s.to_string()))
                .collect(),
            unreadable: Vec::new(),
        }
    }

    fn unreadable(path: &str) -> RuleError {
        RuleError {
            file: PathBuf::from(path),
            location: ruleop_lang::rule::Location::default(),
            message: "cannot read: No such file or directory".into(),
        }
    }

    fn names(rules: &[LoadedRule]) -> Vec<&str> {
        rules.iter().map(|r| r.rule.name.as_str()).collect()
    }

    #[test]
    fn added_changed_removed() {
        let (set, diff) = plan_reload(&[], &snap(&[("a.yaml", MEMCACHED), ("b.yaml", MYAPP)]));
        assert_eq!(names(&diff.added), ["memcached", "myapp"]);
        let edited = MEMCACHED.replace("memcached:1.4.36", "memcached:1.6.0");
        let (set2, diff) = plan_reload(&set, &snap(&[("a.yaml", &edited)]));
        assert_eq!(names(&diff.changed), ["memcached"]);
        assert_eq!(names(&diff.removed), ["myapp"]);
        assert!(diff.added.is_empty() && diff.refused.is_empty());
        let (_, diff) = plan_reload(&set2, &snap(&[("a.yaml", &edited)]));
        assert!(diff.is_empty(), "same content: nothing to do");
    }

    #[test]
    fn broken_file_keeps_its_last_good_version() {
        let (set, _) = plan_reload(&[], &snap(&[("a.yaml", MEMCACHED), ("b.yaml", MYAPP)]));
        let broken = MEMCACHED.replace(
            "replicas: {{ parent.spec.size }}",
            "replicas: {{ parent.spec.size",
        );
        let (next, diff) = plan_reload(&set, &snap(&[("a.yaml", &broken), ("b.yaml", MYAPP)]));
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(diff.kept, ["memcached"]);
        assert_eq!(diff.refused.len(), 1);
        assert!(
            diff.refused[0].to_string().starts_with("a.yaml:"),
            "{}",
            diff.refused[0]
        );
        assert_eq!(
            next.iter()
                .find(|r| r.rule.name == "memcached")
                .unwrap()
                .hash,
            set[0].hash
        );
    }

    #[test]
    fn new_broken_file_is_refused_and_others_run() {
        let (next, diff) = plan_reload(&[], &snap(&[("a.yaml", "kind: [oops"), ("b.yaml", MYAPP)]));
        assert_eq!(names(&next), ["myapp"]);
        assert_eq!(diff.refused.len(), 1);
    }

    #[test]
    fn the_newer_of_two_rules_for_one_kind_is_refused() {
        let (set, _) = plan_reload(&[], &snap(&[("z.yaml", MEMCACHED)]));
        let twin = MEMCACHED.replace("name: memcached\nspec:", "name: another\nspec:");
        let (next, diff) = plan_reload(&set, &snap(&[("a.yaml", &twin), ("z.yaml", MEMCACHED)]));
        assert_eq!(
            names(&next),
            ["memcached"],
            "the running rule keeps the kind"
        );
        assert!(
            diff.refused[0].to_string().contains("already governed"),
            "{:?}",
            diff.refused
        );
        assert!(diff.refused[0].file.ends_with("a.yaml"));
    }

    #[test]
    fn an_unreadable_source_keeps_its_rules() {
        let (set, _) = plan_reload(
            &[],
            &snap(&[("rules/a.yaml", MEMCACHED), ("other/b.yaml", MYAPP)]),
        );
        // The whole `rules` directory is gone for a moment: its rule keeps running, nothing
        // is removed, and the error is reported.
        let mut missing = snap(&[("other/b.yaml", MYAPP)]);
        missing.unreadable.push(unreadable("rules"));
        let (next, diff) = plan_reload(&set, &missing);
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(names(&next), ["myapp", "memcached"]);
        assert_eq!(diff.kept, ["memcached"]);
        assert_eq!(diff.unreadable.len(), 1);
        // Back with the same content: still nothing to do.
        let (next, diff) = plan_reload(
            &next,
            &snap(&[("rules/a.yaml", MEMCACHED), ("other/b.yaml", MYAPP)]),
        );
        assert!(diff.is_empty() && diff.kept.is_empty(), "{diff:?}");
        // One file unreadable: only its rule is kept; an explicit removal still removes.
        let mut one = snap(&[]);
        one.unreadable.push(unreadable("rules/a.yaml"));
        let (next, diff) = plan_reload(&next, &one);
        assert_eq!(names(&next), ["memcached"]);
        assert_eq!(names(&diff.removed), ["myapp"]);
        // A readable, empty listing removes the rest.
        let (next, diff) = plan_reload(&next, &snap(&[]));
        assert!(next.is_empty());
        assert_eq!(names(&diff.removed), ["memcached"]);
    }
}
