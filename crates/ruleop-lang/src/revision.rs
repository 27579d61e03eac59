//! Rule revisions, the pure part: a rule's content hash in canonical form, how a content gets
//! its revision number, which old revisions a history limit removes, and a compiled rule
//! rebuilt from a revision's stored text. The runtime (`src/revisions/`) keeps them as
//! `RuleRevision` objects in the cluster.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::load::{RuleError, parse_rule};
use crate::rule::{CompiledRule, Location};

/// The hash of a rule file's content in canonical form (`sha256:` and 64 hex digits): the
/// parsed YAML document with its object keys sorted, so whitespace, comments, quoting and
/// key order do not count. Text that is no YAML (a refused edit) hashes as written, marked
/// `sha256-text:` so it never equals a parsed document's hash.
pub fn canonical_hash(source: &str) -> String {
    match crate::yaml::from_str::<Json>(source) {
        Ok(document) => {
            let canonical = sorted(document).to_string();
            format!("sha256:{}", hex(&Sha256::digest(canonical.as_bytes())))
        }
        Err(_) => format!("sha256-text:{}", hex(&Sha256::digest(source.as_bytes()))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` with every object's keys in sorted order (whatever order the map type keeps).
fn sorted(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The rule name a file's text declares (`metadata.name`), read leniently: for a refused
/// edit whose file never loaded, to know whose revision it is.
pub fn declared_name(source: &str) -> Option<String> {
    let document: Json = crate::yaml::from_str(source).ok()?;
    document
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// A revision of one rule as the history knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its number.
    pub number: u64,
    /// Its content's [`canonical_hash`].
    pub hash: String,
}

/// Which revision a content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    /// An existing revision has this content (a revert, or the same content loaded again).
    Existing(u64),
    /// A new revision: one more than the highest number the rule ever had in the history.
    New(u64),
}

impl Assigned {
    /// The revision number.
    pub fn number(self) -> u64 {
        match self {
            Assigned::Existing(n) | Assigned::New(n) => n,
        }
    }
}

/// The revision of content `hash` given the rule's history: the existing one with that hash
/// (the newest, should two share it), else the next number. Numbers only grow: they continue
/// from the highest in the history, wherever it was created (another replica, before a
/// restart).
pub fn assign(history: &[Known], hash: &str) -> Assigned {
    if let Some(same) = history
        .iter()
        .filter(|k| k.hash == hash)
        .map(|k| k.number)
        .max()
    {
        return Assigned::Existing(same);
    }
    Assigned::New(history.iter().map(|k| k.number).max().unwrap_or(0) + 1)
}

/// The revisions a history limit removes: all but the newest `limit`, except those in `keep`
/// (a parent is still on it, or it is the active one), oldest first. A limit of 0 keeps all.
pub fn prune(history: &[u64], limit: usize, keep: &BTreeSet<u64>) -> Vec<u64> {
    if limit == 0 {
        return Vec::new();
    }
    let mut numbers: Vec<u64> = history.to_vec();
    numbers.sort_unstable();
    numbers.dedup();
    let excess = numbers.len().saturating_sub(limit);
    numbers
        .into_iter()
        .take(excess)
        .filter(|n| !keep.contains(n))
        .collect()
}

/// Rebuilds the compiled rule of a stored revision (after a restart, for parents still on an
/// older revision than the one loaded): its text compiled as its source file, then checked
/// to be the rule and content the revision claims. Errors name the source file and line.
pub fn rebuild(
    rule_name: &str,
    source: &str,
    text: &str,
    hash: &str,
) -> Result<CompiledRule, Vec<RuleError>> {
    let path = Path::new(source);
    let mismatch = |message: String| {
        vec![RuleError {
            file: path.to_path_buf(),
            location: Location::default(),
            message,
        }]
    };
    let actual = canonical_hash(text);
    if actual != hash {
        return Err(mismatch(format!(
            "the stored text of a revision of rule {rule_name} hashes to {actual}, not {hash}: it was changed"
        )));
    }
    let rule = parse_rule(path, text)?;
    if rule.name != rule_name {
        return Err(mismatch(format!(
            "the stored text is rule {}, not {rule_name}",
            rule.name
        )));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMCACHED: &str = include_str!("../../../rules/memcached.yaml");

    fn known(pairs: &[(u64, &str)]) -> Vec<Known> {
        pairs
            .iter()
            .map(|(n, h)| Known {
                number: *n,
                hash: h.to_string(),
            })
            .collect()
    }

    #[test]
    fn whitespace_comments_quoting_and_key_order_do_not_count() {
        let a = "apiVersion: v1\nkind: Rule\nmetadata: {name: a}\nspec:\n  x: 1\n  y: [a, b]\n";
        let b = "# a comment\nkind: Rule\napiVersion: \"v1\"\nspec:\n    y:\n      - a\n      - 'b'\n    x: 1\n\nmetadata:\n  name: a   # trailing\n";
        assert_eq!(canonical_hash(a), canonical_hash(b));
        assert!(canonical_hash(a).starts_with("sha256:"));
        assert_eq!(canonical_hash(a).len(), "sha256:".len() + 64);
        // A value, an item's order or a type is content.
        for changed in [
            a.replace("x: 1", "x: 2"),
            a.replace("[a, b]", "[b, a]"),
            a.replace("x: 1", "x: \"1\""),
        ] {
            assert_ne!(canonical_hash(a), canonical_hash(&changed), "{changed}");
        }
        let edited = MEMCACHED.replace("memcached:1.4.36", "memcached:1.6.0");
        assert_ne!(canonical_hash(MEMCACHED), canonical_hash(&edited));
        assert_eq!(
            canonical_hash(MEMCACHED),
            canonical_hash(&format!("# header\n{MEMCACHED}\n\n"))
        );
    }

    #[test]
    fn text_that_is_no_yaml_hashes_as_written() {
        let broken = "kind: [oops";
        assert!(canonical_hash(broken).starts_with("sha256-text:"));
        assert_ne!(canonical_hash(broken), canonical_hash("kind: [oops "));
        assert_eq!(canonical_hash(broken), canonical_hash(broken));
    }

    #[test]
    fn declared_names() {
        assert_eq!(declared_name(MEMCACHED).as_deref(), Some("memcached"));
        assert_eq!(
            declared_name("metadata: {name: x}\nspec: [").as_deref(),
            None
        );
        assert_eq!(declared_name("spec: {}").as_deref(), None);
    }

    #[test]
    fn numbering_continues_and_reuses_equal_content() {
        assert_eq!(assign(&[], "h1"), Assigned::New(1));
        let history = known(&[(1, "h1"), (2, "h2"), (3, "h3")]);
        assert_eq!(assign(&history, "h2"), Assigned::Existing(2), "a revert");
        assert_eq!(assign(&history, "h4"), Assigned::New(4));
        // Old revisions pruned: numbers still continue from the highest left.
        let pruned = known(&[(7, "h7"), (9, "h9")]);
        assert_eq!(assign(&pruned, "h1"), Assigned::New(10));
        assert_eq!(assign(&pruned, "h1").number(), 10);
    }

    #[test]
    fn pruning_keeps_the_newest_and_every_pinned_revision() {
        let history: Vec<u64> = (1..=14).collect();
        let none = BTreeSet::new();
        assert_eq!(prune(&history, 10, &none), vec![1, 2, 3, 4]);
        let pinned = BTreeSet::from([2, 3, 12]);
        assert_eq!(prune(&history, 10, &pinned), vec![1, 4]);
        assert!(prune(&history, 20, &none).is_empty());
        assert!(prune(&history, 0, &none).is_empty(), "0: no limit");
        assert_eq!(prune(&[5, 3, 9], 1, &BTreeSet::from([3])), vec![5]);
    }

    #[test]
    fn a_rule_is_rebuilt_from_its_revision_text() {
        let hash = canonical_hash(MEMCACHED);
        let rule = rebuild("memcached", "rules/memcached.yaml", MEMCACHED, &hash).unwrap();
        assert_eq!(rule.name, "memcached");
        let loaded = parse_rule(Path::new("rules/memcached.yaml"), MEMCACHED).unwrap();
        assert_eq!(rule.spec.children.len(), loaded.spec.children.len());
        assert_eq!(rule.spec.parent.kind, "Memcached");

        let tampered = MEMCACHED.replace("memcached:1.4.36", "memcached:9");
        let e = rebuild("memcached", "rules/memcached.yaml", &tampered, &hash).unwrap_err();
        assert!(e[0].to_string().contains("was changed"), "{e:?}");
        let e = rebuild("other", "rules/memcached.yaml", MEMCACHED, &hash).unwrap_err();
        assert!(e[0].to_string().contains("not other"), "{e:?}");

        // A stored text that does not compile says where, as its file would.
        let broken = MEMCACHED.replace(
            "replicas: {{ parent.spec.size }}",
            "replicas: {{ parent.spec.size",
        );
        let e = rebuild(
            "memcached",
            "rules/memcached.yaml",
            &broken,
            &canonical_hash(&broken),
        )
        .unwrap_err();
        assert!(
            e[0].to_string().starts_with("rules/memcached.yaml:"),
            "{}",
            e[0]
        );
    }
}
