//! A rule set and its next version: the rule files read at one moment ([`Snapshot`]) planned
//! against the running rules ([`plan_reload`]). Pure: the runtime's reloader reads the sources
//! and applies the [`Diff`] to the controller.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::load::{LoadedRule, RuleError, conflict, content_hash, parse_rule};

/// The rule files of every source, as read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Each rule file read: its path and content, sorted by path within a source.
    pub files: Vec<(PathBuf, String)>,
    /// Sources and files that could not be read: rules whose file is at or under one of these
    /// paths keep their running version.
    pub unreadable: Vec<RuleError>,
}

impl Snapshot {
    /// Whether the running rule from `path` must be kept because its source cannot be read.
    pub fn keeps(&self, path: &Path) -> bool {
        self.unreadable.iter().any(|e| path.starts_with(&e.file))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const MEMCACHED: &str = include_str!("../../../rules/memcached.yaml");
    const MYAPP: &str = include_str!("../../../rules/myapp.yaml");

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
            location: crate::rule::Location::default(),
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
