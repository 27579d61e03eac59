//! Reading the rule sources (files, directories, a ConfigMap's data) into a [`Snapshot`].
//!
//! A source that cannot be read is not a source without rules: a directory missing for a
//! moment (a `mv`, a volume remount) or unreadable is reported in [`Snapshot::unreadable`], and
//! the rules that came from it keep running. Only a readable listing without a file removes
//! that file's rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ruleop_lang::load::{RuleError, is_rule_file};
use ruleop_lang::rule::Location;
use ruleop_lang::ruleset::Snapshot;

fn unreadable(path: &Path, e: &std::io::Error) -> RuleError {
    RuleError {
        file: path.to_path_buf(),
        location: Location::default(),
        message: format!("cannot read: {e}"),
    }
}

/// Reads every rule file under `paths` (files or directories).
pub fn read_snapshot(paths: &[PathBuf]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for path in paths {
        read_source(path, &mut snapshot);
    }
    snapshot
}

fn read_source(path: &Path, snapshot: &mut Snapshot) {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return snapshot.unreadable.push(unreadable(path, &e)),
    };
    if !metadata.is_dir() {
        match std::fs::read_to_string(path) {
            Ok(source) => snapshot.files.push((path.to_path_buf(), source)),
            Err(e) => snapshot.unreadable.push(unreadable(path, &e)),
        }
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return snapshot.unreadable.push(unreadable(path, &e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => files.push(entry.path()),
            // An incomplete listing cannot tell a removed file from an unlisted one.
            Err(e) => return snapshot.unreadable.push(unreadable(path, &e)),
        }
    }
    files.retain(|p| is_rule_file(p));
    files.sort();
    for file in files {
        // A link whose target is gone (a kubelet `..data` link missing for a moment, or a key
        // between the swap and the removal of its link) cannot be read: its rule is kept until
        // the link itself goes.
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue,
            Err(e) => {
                snapshot.unreadable.push(unreadable(&file, &e));
                continue;
            }
        }
        match std::fs::read_to_string(&file) {
            Ok(source) => snapshot.files.push((file, source)),
            Err(e) => snapshot.unreadable.push(unreadable(&file, &e)),
        }
    }
}

/// A snapshot from a ConfigMap's data: each `*.yaml`/`*.yml` key is a file.
pub fn configmap_snapshot(
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Snapshot {
    let files = data
        .iter()
        .filter(|(k, _)| is_rule_file(Path::new(k)))
        .map(|(k, v)| {
            (
                PathBuf::from(format!("configmap/{namespace}/{name}/{k}")),
                v.clone(),
            )
        })
        .collect();
    Snapshot {
        files,
        unreadable: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &Snapshot) -> Vec<String> {
        s.files
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_missing_source_is_unreadable_not_empty() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        let s = read_snapshot(std::slice::from_ref(&dir));
        assert!(s.files.is_empty());
        assert_eq!(s.unreadable.len(), 1, "{s:?}");
        assert_eq!(s.unreadable[0].file, dir);
        assert!(s.keeps(&dir.join("a.yaml")));
        assert!(!s.keeps(&root.path().join("other/a.yaml")));
    }

    #[test]
    fn an_empty_directory_is_readable_and_has_no_rules() {
        let root = tempfile::tempdir().unwrap();
        let s = read_snapshot(&[root.path().to_path_buf()]);
        assert_eq!(s, Snapshot::default());
    }

    #[test]
    fn lists_rule_files_and_follows_kubelet_links() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        std::fs::create_dir(dir.join("..2026_01_01.1")).unwrap();
        std::fs::write(dir.join("..2026_01_01.1/b.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..2026_01_01.1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/b.yaml", dir.join("b.yaml")).unwrap();
        std::os::unix::fs::symlink("..data/gone.yaml", dir.join("gone.yaml")).unwrap();
        std::fs::write(dir.join("a.yml"), "a").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join(".a.yaml.swp"), "x").unwrap();
        let s = read_snapshot(&[dir.to_path_buf()]);
        assert_eq!(names(&s), ["a.yml", "b.yaml"]);
        assert_eq!(s.files[1].1, "b");
        // A dangling link is a file that cannot be read now, not a file removed.
        assert_eq!(s.unreadable.len(), 1, "{s:?}");
        assert!(s.keeps(&dir.join("gone.yaml")));
        // The whole `..data` gone for a moment: every rule is kept.
        std::fs::remove_file(dir.join("..data")).unwrap();
        let s = read_snapshot(&[dir.to_path_buf()]);
        assert_eq!(names(&s), ["a.yml"]);
        assert!(s.keeps(&dir.join("b.yaml")));
    }

    #[test]
    fn an_unreadable_file_keeps_only_itself() {
        let root = tempfile::tempdir().unwrap();
        // Not UTF-8: listed, then not readable as text (permissions do not stop root).
        std::fs::write(root.path().join("a.yaml"), [0xff, 0xfe]).unwrap();
        std::fs::write(root.path().join("b.yaml"), "b").unwrap();
        let s = read_snapshot(&[root.path().to_path_buf()]);
        assert_eq!(names(&s), ["b.yaml"]);
        assert!(s.keeps(&root.path().join("a.yaml")));
        assert!(!s.keeps(&root.path().join("b.yaml")));
    }

    #[test]
    fn configmap_keys_become_files() {
        let data = [
            ("memcached.yaml".to_string(), "x".to_string()),
            ("README".to_string(), "x".to_string()),
        ]
        .into();
        let s = configmap_snapshot("ns", "rules", &data);
        assert_eq!(s.files.len(), 1);
        assert_eq!(
            s.files[0].0,
            PathBuf::from("configmap/ns/rules/memcached.yaml")
        );
    }
}
