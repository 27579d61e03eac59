//! What templates and JSONPaths access, read statically: field chains in compiled programs and plain steps of JSONPaths (for `check` and for metadata-only watches).

use super::machinery::{Block, Op};

/// One step of an access path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// A field: `.name`, `["name"]`.
    Field(&'a str),
    /// A constant list index: `[0]`.
    Index,
    /// Every element (JSONPath `[*]` or `.*`).
    Wildcard,
}

/// The attribute and constant-subscript chain (`.a["b"][0]`) starting at `idx`, and the
/// index of the first op after it.
pub(crate) fn chain<'t>(block: &Block<'t>, mut idx: usize) -> (Vec<Step<'t>>, usize) {
    let mut path = Vec::new();
    loop {
        match block.get(idx) {
            Some(Op::GetAttr(n)) => {
                path.push(Step::Field(n));
                idx += 1;
            }
            Some(Op::Const(v)) if matches!(block.get(idx + 1), Some(Op::GetItem)) => {
                if let Some(s) = v.as_str() {
                    path.push(Step::Field(s));
                } else if v.as_i64().is_some() {
                    path.push(Step::Index);
                } else {
                    break;
                }
                idx += 2;
            }
            _ => break,
        }
    }
    (path, idx)
}

/// The plain steps of a JSONPath from `$` (`.a`, `['a']`, `[0]`, `[*]`, `.*`), up to the
/// first step that is none of them (`..`, a filter, a slice, a union), and whether the path
/// ends there. `None` when it does not start at `$`.
pub(crate) fn jsonpath_steps(path: &str) -> Option<(Vec<Step<'_>>, bool)> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut steps = Vec::new();
    loop {
        if rest.is_empty() || rest.starts_with("..") {
            break;
        }
        if let Some(r) = rest.strip_prefix('.') {
            // A dotted name runs to the next step, so a name is never cut short.
            let end = r.find(['.', '[']).unwrap_or(r.len());
            match &r[..end] {
                "" => break,
                "*" => steps.push(Step::Wildcard),
                name => steps.push(Step::Field(name)),
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else { break };
            let inner = r[..close].trim();
            let quoted = ['\'', '"'].iter().find_map(|q| {
                inner
                    .strip_prefix(*q)
                    .and_then(|s| s.strip_suffix(*q))
                    .filter(|s| !s.contains(['\'', '"']))
            });
            if let Some(name) = quoted {
                steps.push(Step::Field(name));
            } else if inner == "*" {
                steps.push(Step::Wildcard);
            } else if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit()) {
                steps.push(Step::Index);
            } else {
                break;
            }
            rest = &r[close + 1..];
        } else {
            break;
        }
    }
    Some((steps, rest.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Limits, Templates};
    use Step::{Field, Index, Wildcard};

    #[test]
    fn jsonpath_plain_steps_stop_at_the_first_other_step() {
        let steps = |p| jsonpath_steps(p).unwrap();
        assert_eq!(
            steps("$.parent.spec.a[0]['b'][*].c"),
            (
                vec![
                    Field("parent"),
                    Field("spec"),
                    Field("a"),
                    Index,
                    Field("b"),
                    Wildcard,
                    Field("c")
                ],
                true
            )
        );
        assert_eq!(steps("$.*"), (vec![Wildcard], true));
        assert_eq!(
            steps("$.related.my-pods"),
            (vec![Field("related"), Field("my-pods")], true)
        );
        assert_eq!(steps("$.a..b"), (vec![Field("a")], false));
        assert_eq!(steps("$.a[?(@.x)].b"), (vec![Field("a")], false));
        assert_eq!(steps("$.a[1:2]"), (vec![Field("a")], false));
        assert_eq!(steps("$"), (vec![], true));
        assert_eq!(jsonpath_steps("parent.spec"), None);
    }

    #[test]
    fn template_chains_follow_attributes_and_constant_subscripts() {
        let mut t = Templates::new(&Limits::default());
        t.add_template("t", "{{ parent.spec['a'][0].b | length }}{{ parent[i] }}")
            .unwrap();
        let program = t.program("t").unwrap();
        let chains: Vec<Vec<Step<'_>>> = program
            .iter()
            .flat_map(|block| {
                block
                    .ops()
                    .filter(|(_, op)| matches!(op, Op::Lookup("parent")))
                    .map(|(i, _)| chain(block, i + 1).0)
            })
            .collect();
        assert_eq!(
            chains,
            [vec![Field("spec"), Field("a"), Index, Field("b")], vec![]]
        );
    }
}
