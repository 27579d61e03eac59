//! Hot reload of rules: a directory (kubelet-mounted ConfigMap, plain files, editors' renames,
//! whole-directory swaps) watched with `notify`, or a ConfigMap watched through the API. Both
//! feed one path: snapshot the files, plan the new rule set against the running one (pure),
//! apply the difference to the controller.
//!
//! A file that no longer parses keeps its last good version running; a rule claiming a name
//! or parent kind already taken is refused in favour of the one that came first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::rule::{
    LoadedRule, Location, RuleError, conflict, content_hash, is_rule_file, parse_rule, rule_files,
};

/// How long a burst of file events must be quiet before rules are read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// One rule file's name and content.
pub type Snapshot = Vec<(PathBuf, String)>;

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
    /// Rules kept at their last good version because the new file is invalid.
    pub kept: Vec<String>,
}

impl Diff {
    /// Whether the running set changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Reads every rule file under `paths` (files or directories).
pub fn read_snapshot(paths: &[PathBuf]) -> (Snapshot, Vec<RuleError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match rule_files(path) {
            Ok(list) => {
                for file in list {
                    match std::fs::read_to_string(&file) {
                        Ok(source) => files.push((file, source)),
                        Err(e) => errors.push(RuleError {
                            file,
                            location: Location::default(),
                            message: format!("cannot read: {e}"),
                        }),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (files, errors)
}

/// Plans the new rule set from a snapshot, given the running set. Pure.
pub fn plan_reload(current: &[LoadedRule], snapshot: &Snapshot) -> (Vec<LoadedRule>, Diff) {
    let mut diff = Diff::default();
    let mut candidates: Vec<LoadedRule> = Vec::new();
    for (path, source) in snapshot {
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

/// Sends `()` on `tx` after each quiet burst of changes under `paths`, until cancelled.
///
/// Watches each directory and its parent, so a swapped `..data` link, an editor's rename and
/// a directory replaced as a whole are all seen; the watch is re-armed when the directory is
/// replaced.
pub fn watch_paths(
    paths: Vec<PathBuf>,
    tx: mpsc::UnboundedSender<()>,
    cancel: CancellationToken,
) -> notify::Result<()> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    // The parent directory is watched only to see the rules directory replaced: events for
    // its other entries (a log file next to the rules, say) must not trigger reloads.
    let dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        })
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = event
            .paths
            .iter()
            .any(|p| dirs.iter().any(|d| p.starts_with(d) || p == d));
        if relevant {
            let _ = raw_tx.send(());
        }
    })?;
    let mut watched: Vec<PathBuf> = Vec::new();
    let arm = move |watcher: &mut notify::RecommendedWatcher, watched: &mut Vec<PathBuf>| {
        for w in watched.drain(..) {
            let _ = watcher.unwatch(&w);
        }
        for path in &paths {
            let dir = if path.is_dir() {
                path.clone()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            for p in [Some(dir.clone()), dir.parent().map(Path::to_path_buf)]
                .into_iter()
                .flatten()
            {
                if p.as_os_str().is_empty() || watched.contains(&p) {
                    continue;
                }
                if watcher.watch(&p, RecursiveMode::NonRecursive).is_ok() {
                    watched.push(p);
                }
            }
        }
    };
    arm(&mut watcher, &mut watched);
    tokio::spawn(async move {
        let mut watcher = watcher;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                got = raw_rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until the burst is quiet.
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    got = raw_rx.recv() => if got.is_none() { return },
                }
            }
            arm(&mut watcher, &mut watched);
            let _ = tx.send(());
        }
    });
    Ok(())
}

/// A snapshot from a ConfigMap's data: each `*.yaml`/`*.yml` key is a file.
pub fn configmap_snapshot(
    namespace: &str,
    name: &str,
    data: &std::collections::BTreeMap<String, String>,
) -> Snapshot {
    data.iter()
        .filter(|(k, _)| is_rule_file(Path::new(k)))
        .map(|(k, v)| {
            (
                PathBuf::from(format!("configmap/{namespace}/{name}/{k}")),
                v.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMCACHED: &str = include_str!("../rules/memcached.yaml");
    const MYAPP: &str = include_str!("../rules/myapp.yaml");

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        files
            .iter()
            .map(|(p, s)| (PathBuf::from(p), s.to_string()))
            .collect()
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

    /// Waits for one debounced signal (true) or a timeout (false), then drains extras.
    async fn signalled(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .is_ok();
        tokio::time::sleep(DEBOUNCE * 2).await;
        while rx.try_recv().is_ok() {}
        got
    }

    #[tokio::test]
    async fn sees_every_way_a_rules_directory_changes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "one").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        watch_paths(vec![dir.clone()], tx, cancel.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        std::fs::write(dir.join("a.yaml"), "edited in place").unwrap();
        assert!(signalled(&mut rx).await, "in-place edit");

        std::fs::write(dir.join(".a.yaml.swp"), "editor temp").unwrap();
        std::fs::rename(dir.join(".a.yaml.swp"), dir.join("a.yaml")).unwrap();
        assert!(signalled(&mut rx).await, "editor's rename");

        // The kubelet's atomic writer: a timestamped directory and a `..data` link swap.
        let ts1 = dir.join("..2026_01_01_00_00_00.1");
        std::fs::create_dir(&ts1).unwrap();
        std::fs::write(ts1.join("b.yaml"), "b1").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/b.yaml", dir.join("b.yaml")).unwrap();
        assert!(signalled(&mut rx).await, "first ..data link");
        let ts2 = dir.join("..2026_01_01_00_00_00.2");
        std::fs::create_dir(&ts2).unwrap();
        std::fs::write(ts2.join("b.yaml"), "b2").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(&ts1).unwrap();
        assert!(signalled(&mut rx).await, "..data swap");
        assert_eq!(std::fs::read_to_string(dir.join("b.yaml")).unwrap(), "b2");

        // The whole directory replaced, then edited again (the watch must be re-armed).
        let fresh = root.path().join("rules.new");
        std::fs::create_dir(&fresh).unwrap();
        std::fs::write(fresh.join("c.yaml"), "c").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::rename(&fresh, &dir).unwrap();
        assert!(signalled(&mut rx).await, "directory replaced");
        std::fs::write(dir.join("c.yaml"), "c2").unwrap();
        assert!(
            signalled(&mut rx).await,
            "edit after the directory was replaced"
        );

        std::fs::write(
            root.path().join("operator.log"),
            "a sibling of the rules directory",
        )
        .unwrap();
        assert!(
            !signalled(&mut rx).await,
            "quiet when nothing under the rules changes"
        );
        cancel.cancel();
    }

    #[test]
    fn configmap_keys_become_files() {
        let data = [
            ("memcached.yaml".to_string(), MEMCACHED.to_string()),
            ("README".to_string(), "x".to_string()),
        ]
        .into();
        let s = configmap_snapshot("ns", "rules", &data);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, PathBuf::from("configmap/ns/rules/memcached.yaml"));
    }
}
