//! Field-level differences between JSON documents, and a line diff of texts, for the
//! readable output of `ruleop test` and `ruleop diff`.

use std::fmt;

use serde_json::Value as Json;

/// One differing field.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted path of the field (`spec.template.spec.containers[0].image`); empty for the root.
    pub path: String,
    /// The value before (or expected); `None` when the field is absent.
    pub old: Option<Json>,
    /// The value after (or actual); `None` when the field is absent.
    pub new: Option<Json>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(whole object)"
        } else {
            &self.path
        };
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => write!(f, "~ {path}: {} -> {}", short(old), short(new)),
            (None, Some(new)) => write!(f, "+ {path}: {}", short(new)),
            (Some(old), None) => write!(f, "- {path}: {}", short(old)),
            (None, None) => write!(f, "  {path}"),
        }
    }
}

/// A compact one-line rendering of a value.
pub fn short(value: &Json) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Every field that differs between `old` and `new`, depth first in key order. Lists of
/// equal length are compared entry by entry; lists of different lengths as a whole.
pub fn changes(old: &Json, new: &Json) -> Vec<Change> {
    let mut out = Vec::new();
    walk(old, new, String::new(), &mut out);
    out
}

fn walk(old: &Json, new: &Json, path: String, out: &mut Vec<Change>) {
    match (old, new) {
        (Json::Object(a), Json::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = join(&path, k);
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(x, y, p, out),
                    (x, y) => out.push(Change {
                        path: p,
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ if old != new => out.push(Change {
            path,
            old: Some(old.clone()),
            new: Some(new.clone()),
        }),
        _ => {}
    }
}

/// Where `actual` does not contain `expected`: every key of an expected mapping must be in
/// the actual one with a matching value (extra actual keys are fine); lists must have the
/// same length and match entry by entry; scalars must be equal. `old` is the expected value.
pub fn missing(expected: &Json, actual: &Json) -> Vec<Change> {
    let mut out = Vec::new();
    subset(expected, actual, String::new(), &mut out);
    out
}

fn subset(expected: &Json, actual: &Json, path: String, out: &mut Vec<Change>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for (k, v) in e {
                let p = join(&path, k);
                match a.get(k) {
                    Some(x) => subset(v, x, p, out),
                    // An expected null means "absent".
                    None if v.is_null() => {}
                    None => out.push(Change {
                        path: p,
                        old: Some(v.clone()),
                        new: None,
                    }),
                }
            }
        }
        (Json::Array(e), Json::Array(a)) if e.len() == a.len() => {
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                subset(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ if expected != actual => out.push(Change {
            path,
            old: Some(expected.clone()),
            new: Some(actual.clone()),
        }),
        _ => {}
    }
}

/// The fields a manager owns on `live` (its `managedFields` entry's `fieldsV1`, `owned`)
/// that `rendered` no longer sets: applying `rendered` removes them. Keyed list entries
/// (`k:`) are matched by their key fields, set entries (`v:`) by value; `old` is the live value.
pub fn removed(owned: &Json, live: &Json, rendered: &Json) -> Vec<Change> {
    let mut out = Vec::new();
    owned_walk(owned, live, rendered, String::new(), &mut out);
    out
}

fn owned_walk(owned: &Json, live: &Json, rendered: &Json, path: String, out: &mut Vec<Change>) {
    let Some(owned) = owned.as_object() else {
        return;
    };
    let gone = |p: String, old: Option<&Json>| Change {
        path: p,
        old: Some(old.cloned().unwrap_or(Json::Null)),
        new: None,
    };
    for (k, sub) in owned {
        if let Some(field) = k.strip_prefix("f:") {
            let p = join(&path, field);
            match rendered.get(field).filter(|v| !v.is_null()) {
                Some(r) => owned_walk(sub, live.get(field).unwrap_or(&Json::Null), r, p, out),
                None if live.get(field).is_some() => out.push(gone(p, live.get(field))),
                None => {}
            }
        } else if let Some(key) = k.strip_prefix("k:") {
            let Ok(Json::Object(key)) = serde_json::from_str::<Json>(key) else {
                continue;
            };
            let matches = |e: &&Json| key.iter().all(|(f, v)| e.get(f) == Some(v));
            let entries =
                |list: &Json| list.as_array().into_iter().flatten().find(matches).cloned();
            let shown: Vec<String> = key
                .iter()
                .map(|(f, v)| format!("{f}={}", short(v)))
                .collect();
            let p = format!("{path}[{}]", shown.join(","));
            match (entries(rendered), entries(live)) {
                (Some(r), l) => owned_walk(sub, &l.unwrap_or(Json::Null), &r, p, out),
                (None, Some(l)) => out.push(gone(p, Some(&l))),
                (None, None) => {}
            }
        } else if let Some(value) = k.strip_prefix("v:") {
            let Ok(value) = serde_json::from_str::<Json>(value) else {
                continue;
            };
            let has = |list: &Json| list.as_array().is_some_and(|a| a.contains(&value));
            if !has(rendered) && has(live) {
                out.push(gone(format!("{path}[{}]", short(&value)), Some(&value)));
            }
        }
    }
}

/// A line diff of two texts: `-` lines only in `old`, `+` lines only in `new`, and up to
/// `context` unchanged lines around each change (`...` marks skipped ones). Empty when equal.
pub fn line_diff(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    if ops.iter().all(|(op, _)| *op == ' ') {
        return String::new();
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(context);
        let hi = (k + context).min(ops.len() - 1);
        (lo..=hi).any(|m| ops[m].0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near_change(k) {
            skipped = true;
            continue;
        }
        if skipped {
            out.push_str("  ...\n");
            skipped = false;
        }
        out.push(*op);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
    }
    if skipped {
        out.push_str("  ...\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_field_level() {
        let old =
            json!({"spec": {"replicas": 1, "template": {"containers": [{"image": "a"}]}}, "x": 1});
        let new =
            json!({"spec": {"replicas": 1, "template": {"containers": [{"image": "b"}]}}, "y": 2});
        let c: Vec<String> = changes(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            c,
            [
                r#"~ spec.template.containers[0].image: "a" -> "b""#,
                "- x: 1",
                "+ y: 2"
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn subset_ignores_extra_fields_and_reports_missing_ones() {
        let actual = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
        assert!(missing(&json!({"b": {"d": "x"}}), &actual).is_empty());
        assert!(missing(&json!({"z": null}), &actual).is_empty());
        let m: Vec<String> = missing(&json!({"b": {"c": [1], "e": true}}), &actual)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(m, ["~ b.c: [1] -> [1,2]", "- b.e: true"]);
    }

    #[test]
    fn removed_lists_every_owned_field_the_rendering_no_longer_sets() {
        let owned = json!({"f:data": {".": {}, "f:a": {}, "f:b": {}, "f:c": {}},
            "f:spec": {"f:ports": {"k:{\"port\":80}": {"f:port": {}, "f:name": {}},
                "k:{\"port\":81}": {"f:port": {}}}, "f:finalizers": {"v:\"x\"": {}}}});
        let live = json!({"data": {"a": "1", "b": "2", "c": "3", "d": "other manager"},
            "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81}], "finalizers": ["x"]}});
        // `a` changes and `b` goes: both are told, not only the change.
        let rendered = json!({"data": {"a": "9", "c": "3"},
            "spec": {"ports": [{"port": 80}], "finalizers": []}});
        let r: Vec<String> = removed(&owned, &live, &rendered)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            r,
            [
                r#"- data.b: "2""#,
                r#"- spec.finalizers["x"]: "x""#,
                r#"- spec.ports[port=80].name: "http""#,
                r#"- spec.ports[port=81]: {"port":81}"#,
            ]
        );
        assert!(removed(&owned, &live, &live).is_empty());
    }

    #[test]
    fn line_diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\n";
        let new = "a\nb\nc\nD\ne\nf\n";
        assert_eq!(line_diff(old, new, 1), "  ...\n  c\n- d\n+ D\n  e\n  ...\n");
        assert_eq!(line_diff(old, old, 1), "");
        assert_eq!(line_diff("", "x\n", 1), "+ x\n");
    }
}
