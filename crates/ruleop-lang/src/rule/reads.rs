//! What a rule reads of its related and looked-up objects: found from its compiled templates
//! and status paths, so kinds it only reads the metadata of can be watched metadata-only.
//!
//! The analysis is conservative: any use it cannot prove to stay within `metadata` (passing
//! an object to a macro or filter, indexing, `$..` paths, a filter re-rooted at `$`) counts
//! as reading the whole object.

use std::collections::BTreeSet;

use super::CompiledRule;
use crate::template::access::{Step, chain, jsonpath_steps};
use crate::template::machinery::{Block, Op};

/// Root of related objects in the template context and the status document.
const RELATED: &str = "related";
/// Root of looked-up objects.
const LOOKUPS: &str = "lookups";
/// The only part of an object a metadata-only watch keeps.
const METADATA: &str = "metadata";
/// Loop attributes that expose the items of the loop (`loop.previtem`, `loop.nextitem`).
const LOOP_ITEMS: [&str; 2] = ["previtem", "nextitem"];

/// Which related and looked-up objects a rule reads beyond their `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Per `spec.related` entry, in order: whether more than `metadata` is read.
    pub related: Vec<bool>,
    /// Per `spec.lookups` entry, in order: whether more than `metadata` is read.
    pub lookups: Vec<bool>,
}

/// Entries of one root (`related` or `lookups`) read in full.
#[derive(Debug, Default)]
struct Whole {
    every: bool,
    names: BTreeSet<String>,
}

impl Whole {
    fn add(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.names.insert(n.to_string());
            }
            None => self.every = true,
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.every || self.names.contains(name)
    }
}

#[derive(Debug, Default)]
struct Found {
    related: Whole,
    lookups: Whole,
}

impl CompiledRule {
    /// What this rule reads of its related and looked-up objects (see [`Reads`]).
    pub fn reads(&self) -> Reads {
        let mut found = Found::default();
        for name in self.templates.names() {
            if let Some(program) = self.templates.program(name) {
                template_reads(&program, &mut found);
            }
        }
        let status = &self.spec.status;
        for path in status
            .fields
            .values()
            .chain(status.on_failure.values())
            .filter_map(|p| p.path.as_deref())
        {
            path_reads(path, &mut found);
        }
        Reads {
            related: self
                .spec
                .related
                .iter()
                .map(|r| found.related.contains(&r.name))
                .collect(),
            lookups: self
                .spec
                .lookups
                .iter()
                .map(|l| found.lookups.contains(&l.name))
                .collect(),
        }
    }
}

/// The entry a chain below `related` or `lookups` names first (`related.pods`,
/// `related["pods"]`), when it names one.
fn entry<'a>(steps: &[Step<'a>]) -> Option<&'a str> {
    match steps.first() {
        Some(Step::Field(name)) => Some(name),
        _ => None,
    }
}

/// Records what one compiled program (its blocks' ops) reads.
fn template_reads(program: &[Block<'_>], found: &mut Found) {
    for block in program {
        for (idx, op) in block.ops() {
            let Op::Lookup(root) = op else {
                continue;
            };
            if ![RELATED, LOOKUPS].contains(&root) {
                continue;
            }
            let (steps, next) = chain(block, idx + 1);
            let entry = entry(&steps);
            if root == RELATED {
                // The list itself: only counted, or iterated for metadata.
                let safe = entry.is_some()
                    && steps.len() == 1
                    && related_use_is_metadata(program, block, next);
                if !safe {
                    found.related.add(entry);
                }
            } else {
                let safe = entry.is_some()
                    && match steps.get(1) {
                        Some(step) => *step == Step::Field(METADATA),
                        None => matches!(
                            block.get(next),
                            Some(Op::Test("defined" | "undefined" | "none"))
                        ),
                    };
                if !safe {
                    found.lookups.add(entry);
                }
            }
        }
    }
}

/// Whether the list `related.<name>` pushed just before `block[i]` is only counted, or
/// iterated by a loop whose variable is only ever read for its `metadata`.
fn related_use_is_metadata(program: &[Block<'_>], block: &Block<'_>, i: usize) -> bool {
    match (block.get(i), block.get(i + 1), block.get(i + 2)) {
        (Some(Op::CallFilter("length" | "count")), _, _) => true,
        (Some(Op::PushLoop), Some(Op::Iterate), Some(Op::StoreLocal(var))) => {
            only_metadata_of(program, var) && !loop_items_read(program)
        }
        _ => false,
    }
}

/// Whether every read of the variable `var` anywhere in the program is `var.metadata`
/// (the name may be reused for other values: then it counts as read in full).
fn only_metadata_of(program: &[Block<'_>], var: &str) -> bool {
    program.iter().all(|block| {
        block.ops().all(|(i, op)| match op {
            Op::Lookup(n) if n == var => {
                chain(block, i + 1).0.first() == Some(&Step::Field(METADATA))
            }
            // Captured into a macro's closure: read wherever the macro runs.
            Op::Enclose(n) => n != var,
            _ => true,
        })
    })
}

/// Whether the program reads `loop` other than for its counters (`loop.previtem` and
/// `loop.nextitem` are items; `loop` itself may be passed on).
fn loop_items_read(program: &[Block<'_>]) -> bool {
    program.iter().any(|block| {
        block.ops().any(|(i, op)| {
            matches!(op, Op::Lookup("loop"))
                && !matches!(chain(block, i + 1).0.first(), Some(Step::Field(a)) if !LOOP_ITEMS.contains(a))
        })
    })
}

/// Records what one status JSONPath reads: only `$.related.<name>[*].metadata…` and
/// `$.lookups.<name>.metadata…` stay within metadata; `$.parent…` and `$.children…` read
/// neither root; anything else (`$..x`, `$.*`, a filter using `$`) reads both.
fn path_reads(path: &str, found: &mut Found) {
    let steps = jsonpath_steps(path)
        .map(|(steps, _)| steps)
        // A filter may re-root at `$` and read anything.
        .filter(|_| !path.trim().trim_start_matches('$').contains('$'))
        .unwrap_or_default();
    match steps.as_slice() {
        [Step::Field("parent" | "children"), ..] => {}
        [Step::Field(RELATED), rest @ ..] => {
            let metadata = matches!(
                rest,
                [_, Step::Wildcard | Step::Index, Step::Field(METADATA), ..]
            );
            if !metadata {
                found.related.add(entry(rest));
            }
        }
        [Step::Field(LOOKUPS), rest @ ..] => {
            if !matches!(rest, [_, Step::Field(METADATA), ..]) {
                found.lookups.add(entry(rest));
            }
        }
        _ => {
            found.related.add(None);
            found.lookups.add(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load::parse_rule;

    /// A rule with a related `pods` and a lookup `config`, plus the given `extra` YAML
    /// (indented for `spec:`).
    fn reads(extra: &str) -> (Vec<bool>, Vec<bool>) {
        let source = format!(
            r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: t}}
spec:
  parent: {{apiVersion: example.com/v1, kind: Thing}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  related:
    - name: pods
      apiVersion: v1
      kind: Pod
      selector: {{app: "{{{{ parent.metadata.name }}}}"}}
  lookups:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      objectName: "{{{{ parent.metadata.name }}}}"
{extra}"#
        );
        let rule = parse_rule(std::path::Path::new("t.yaml"), &source).unwrap();
        let r = rule.reads();
        (r.related, r.lookups)
    }

    fn child(data: &str) -> String {
        format!(
            "  children:\n    - name: cm\n      apiVersion: v1\n      kind: ConfigMap\n      template: |\n        metadata: {{name: x}}\n        data: {data}\n"
        )
    }

    #[test]
    fn names_labels_and_counts_are_metadata() {
        assert_eq!(reads(""), (vec![false], vec![false]));
        let status = "  status:\n    fields:\n      nodes: {path: \"$.related.pods[*].metadata.name\", sort: true}\n      app: {path: \"$.related.pods[*].metadata.labels['app']\"}\n      cfg: {path: \"$.lookups.config.metadata.uid\"}\n      size: {path: \"$.parent.spec.size\"}\n";
        assert_eq!(reads(status), (vec![false], vec![false]));
        let t = child(
            "{n: \"{{ related.pods | length }}\", names: \"{% for p in related.pods %}{{ p.metadata.name }}{% endfor %}\", c: \"{{ lookups.config.metadata.name if lookups.config is defined else '' }}\"}",
        );
        assert_eq!(reads(&t), (vec![false], vec![false]));
    }

    #[test]
    fn any_other_read_is_the_whole_object() {
        // A pod's spec.nodeName, through a status path or a template.
        let status =
            "  status:\n    fields:\n      hosts: {path: \"$.related.pods[*].spec.nodeName\"}\n";
        assert_eq!(reads(status), (vec![true], vec![false]));
        for data in [
            "{x: \"{% for p in related.pods %}{{ p.spec.nodeName }}{% endfor %}\"}",
            "{x: \"{% for p in related.pods %}{{ p.metadata.name }}{{ p.spec.nodeName }}{% endfor %}\"}",
            "{x: \"{% for p in related.pods %}{{ p.metadata.name }}{{ loop.previtem.spec | tojson }}{% endfor %}\"}",
            "{x: \"{{ related.pods | map(attribute='spec.nodeName') | join(',') }}\"}",
            "{x: \"{{ related.pods[0].spec.nodeName }}\"}",
            "{x: \"{{ related | tojson }}\"}",
            "{x: \"{% for p in related.pods %}{{ ready(p) }}{% endfor %}\"}",
        ] {
            assert_eq!(reads(&child(data)).0, [true], "{data}");
        }
        assert_eq!(
            reads(&child("{x: \"{{ lookups.config.data.key }}\"}")),
            (vec![false], vec![true])
        );
        // Paths that may reach anything.
        for path in [
            "$..nodeName",
            "$.*",
            "$.parent.spec[?$.related.pods[0].spec]",
        ] {
            let status = format!("  status:\n    fields:\n      x: {{path: \"{path}\"}}\n");
            assert_eq!(reads(&status), (vec![true], vec![true]), "{path}");
        }
        // Bracketed steps are read like dotted ones.
        for (path, want) in [
            ("$['related']", (vec![true], vec![false])),
            ("$['related']['pods'][*].spec", (vec![true], vec![false])),
            (
                "$['related']['pods'][*]['metadata']",
                (vec![false], vec![false]),
            ),
            ("$['lookups']['config'].data", (vec![false], vec![true])),
        ] {
            let status = format!("  status:\n    fields:\n      x: {{path: \"{path}\"}}\n");
            assert_eq!(reads(&status), want, "{path}");
        }
        // Subscripts in templates too.
        assert_eq!(
            reads(&child(
                "{x: \"{{ related['pods'] | length }}{{ lookups['config']['data'] }}\"}"
            )),
            (vec![false], vec![true])
        );
    }
}
