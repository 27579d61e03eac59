//! The parent field paths a rule reads: `parent.spec.a.b`, `parent["spec"]["a"]` and
//! `parent.spec.list[0]` in compiled templates and expressions, and `$.parent...` in
//! status JSONPaths.

use std::collections::BTreeMap;

use crate::template::Templates;
use crate::template::access::{Step, chain, jsonpath_steps};
use crate::template::machinery::Op;
use ruleop_schema::walk::Seg;

/// The variable templates see the parent under.
pub const PARENT: &str = "parent";

/// One reference to a parent field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// 1-based line within the template or expression.
    pub line: usize,
    /// The path below `parent`.
    pub path: Vec<Seg>,
    /// Whether every use of this path in the template prints it as is (`{{ parent.x }}`),
    /// with no filter, test or condition that could guard against its absence.
    pub printed: bool,
}

/// The parent paths the template registered as `name` reads, each once (at its first
/// line). A template that binds `parent` itself (`{% set parent = ... %}`, a macro
/// argument) is skipped: its `parent` is not the parent.
pub fn template_refs(templates: &Templates, name: &str) -> Vec<ParentRef> {
    let Some(blocks) = templates.program(name) else {
        return Vec::new();
    };
    let rebinds = blocks.iter().any(|block| {
        block
            .ops()
            .any(|(_, op)| matches!(op, Op::StoreLocal(n) if n == PARENT))
    });
    if rebinds {
        return Vec::new();
    }
    // path -> (first line, printed at every use, order of first use)
    let mut found: BTreeMap<Vec<Seg>, (usize, bool, usize)> = BTreeMap::new();
    let mut order = 0;
    for block in &blocks {
        for (idx, op) in block.ops() {
            if !matches!(op, Op::Lookup(n) if n == PARENT) {
                continue;
            }
            let (steps, next) = chain(block, idx + 1);
            let printed = matches!(block.get(next), Some(Op::Emit));
            if steps.is_empty() {
                continue;
            }
            let line = block.line(idx);
            order += 1;
            found
                .entry(segs(&steps))
                .and_modify(|e| e.1 &= printed)
                .or_insert((line, printed, order));
        }
    }
    let mut refs: Vec<(usize, ParentRef)> = found
        .into_iter()
        .map(|(path, (line, printed, order))| {
            (
                order,
                ParentRef {
                    line,
                    path,
                    printed,
                },
            )
        })
        .collect();
    refs.sort_by_key(|(order, _)| *order);
    refs.into_iter().map(|(_, r)| r).collect()
}

/// Field and index steps as a schema path (a template chain has no wildcards).
fn segs(steps: &[Step<'_>]) -> Vec<Seg> {
    steps
        .iter()
        .map_while(|s| match s {
            Step::Field(name) => Some(Seg::Field((*name).to_string())),
            Step::Index => Some(Seg::Item),
            Step::Wildcard => None,
        })
        .collect()
}

/// The parent path a status JSONPath addresses (`$.parent.spec.a[0]['b']`), up to the
/// first step that is not a plain field or index (wildcards, filters, slices, `..`).
pub fn jsonpath_ref(path: &str) -> Option<Vec<Seg>> {
    let (steps, _) = jsonpath_steps(path)?;
    match segs(&steps).split_first() {
        Some((Seg::Field(root), rest)) if root == PARENT && !rest.is_empty() => Some(rest.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Limits;

    fn field(s: &str) -> Seg {
        Seg::Field(s.to_string())
    }

    fn refs(source: &str) -> Vec<(usize, String, bool)> {
        let mut t = Templates::new(&Limits::default());
        t.add_template("t", source).unwrap();
        template_refs(&t, "t")
            .into_iter()
            .map(|r| {
                (
                    r.line,
                    ruleop_schema::walk::show("parent", &r.path),
                    r.printed,
                )
            })
            .collect()
    }

    #[test]
    fn attribute_and_constant_subscript_chains_are_found_with_their_lines() {
        let found = refs(
            "a: {{ parent.spec.size }}\n\
             b: {{ parent.spec.replcas | default(1) }}\n\
             c: {{ parent[\"spec\"][\"owner\"].name }}\n\
             d: {{ parent.spec.ports[0].port }}\n\
             e: {{ parent.spec.books[i] }}\n\
             f: {% if parent.status.phase is defined %}x{% endif %}\n",
        );
        assert_eq!(
            found,
            [
                (1, "parent.spec.size".into(), true),
                (2, "parent.spec.replcas".into(), false),
                (3, "parent.spec.owner.name".into(), true),
                (4, "parent.spec.ports[0].port".into(), true),
                (5, "parent.spec.books".into(), false),
                (6, "parent.status.phase".into(), false),
            ]
        );
    }

    #[test]
    fn a_path_also_used_unprinted_is_not_printed_and_is_listed_once() {
        let found =
            refs("{% if parent.spec.tls %}{{ parent.spec.tls }}{% endif %}\n{{ parent.spec.tls }}");
        assert_eq!(found, [(1, "parent.spec.tls".into(), false)]);
    }

    #[test]
    fn a_rebound_parent_is_not_the_parent() {
        assert_eq!(refs("{% set parent = {'spec': 1} %}{{ parent.spec }}"), []);
        assert_eq!(
            refs("{% macro m(parent) %}{{ parent.x }}{% endmacro %}{{ m(1) }}"),
            []
        );
    }

    #[test]
    fn jsonpaths_into_the_parent() {
        assert_eq!(
            jsonpath_ref("$.parent.spec.size"),
            Some(vec![field("spec"), field("size")])
        );
        assert_eq!(
            jsonpath_ref("$['parent']['spec'].ports[0].port"),
            Some(vec![
                field("spec"),
                field("ports"),
                Seg::Item,
                field("port")
            ])
        );
        assert_eq!(
            jsonpath_ref("$.parent.spec.items[*].name"),
            Some(vec![field("spec"), field("items")])
        );
        assert_eq!(jsonpath_ref("$.children.web.status.readyReplicas"), None);
        assert_eq!(jsonpath_ref("$..parent"), None);
        assert_eq!(jsonpath_ref("$.parent"), None);
    }
}
