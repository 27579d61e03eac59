//! Which Jinja checks (`spec.validate[].rule`) could be CEL, so the API server would refuse a
//! bad parent at `kubectl apply` instead of ruleop marking it `Ready=False` after it is stored.
//!
//! Conservative: a check qualifies only when its compiled expression reads nothing but
//! `parent` and uses only what CEL has too (attributes, subscripts, constants, comparisons,
//! `and`/`or`/`not`, `in`, arithmetic, `| length`, `is defined`/`undefined`/`none`). Any other
//! name (values, lookups, related, macros), filter, test, function, loop or slice disqualifies.

use crate::rule::{CompiledRule, Location, ValidateTemplates};
use crate::template::machinery::{ADD, CONCAT, CONTAINS, MUL, Op};

/// Filters that have a CEL equivalent (`length` is `size()`; the rest are operators).
const FILTERS: [&str; 5] = ["length", ADD, CONCAT, MUL, CONTAINS];
/// Tests that have a CEL equivalent (`has()`, `== null`).
const TESTS: [&str; 3] = ["defined", "undefined", "none"];

/// Whether every op of the expression registered as `name` has a CEL equivalent over the
/// parent alone.
fn parent_only(rule: &CompiledRule, name: &str) -> bool {
    let Some(blocks) = rule.templates.program(name) else {
        return false;
    };
    let mut reads_parent = false;
    for block in &blocks {
        for (_, op) in block.ops() {
            let ok = match op {
                Op::Lookup(n) => {
                    reads_parent |= n == "parent";
                    n == "parent"
                }
                Op::GetAttr(_) | Op::GetItem | Op::Const(_) | Op::Emit | Op::Other => true,
                // The expression's own result.
                Op::StoreLocal(n) => n.starts_with("__ruleop"),
                Op::CallFilter(f) => FILTERS.contains(&f),
                Op::Test(t) => TESTS.contains(&t),
                Op::BuildMacro(_)
                | Op::Enclose(_)
                | Op::CallFunction(_)
                | Op::PushLoop
                | Op::Iterate => false,
            };
            if !ok {
                return false;
            }
        }
    }
    reads_parent
}

/// One hint per Jinja check that could be a `cel` check, at its `rule`.
pub fn could_be_cel(rule: &CompiledRule) -> Vec<(Location, String)> {
    let mut out = Vec::new();
    for (i, compiled) in rule.compiled.validate.iter().enumerate() {
        let ValidateTemplates::Jinja { rule: expr, .. } = *compiled else {
            continue;
        };
        let name = rule.templates.name(expr);
        if !parent_only(rule, name) {
            continue;
        }
        let enforced = if rule.spec.crd.is_some() {
            "the generated CRD (ruleop crd)"
        } else {
            "a ValidatingAdmissionPolicy (ruleop policy)"
        };
        out.push((
            rule.spans.find(name),
            format!(
                "spec.validate[{i}] reads only the parent: as a cel check (self = the parent) it would also be enforced at kubectl apply by {enforced}"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(validate: &str) -> Vec<(Location, String)> {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {{apiVersion: v1, kind: ConfigMap}}\n  definitions:\n    values:\n      - {{name: n, expr: \"1\"}}\n  validate:\n{validate}"
        );
        let rule = crate::load::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap();
        could_be_cel(&rule)
    }

    #[test]
    fn checks_over_the_parent_alone_could_be_cel() {
        for rule in [
            "parent.data.size | length <= 52",
            "parent.data.tier in ['bronze', 'silver']",
            "parent.data.a is defined and not (parent.data.b == 'x' or 1 <= parent.data.c|int <= 3)",
        ] {
            let found = hints(&format!("    - rule: \"{rule}\"\n      message: m\n"));
            // `|int` is not a CEL operator: the last one does not qualify.
            let expected = usize::from(!rule.contains("|int"));
            assert_eq!(found.len(), expected, "{rule}: {found:?}");
        }
        let found = hints("    - rule: parent.data.a is defined\n      message: m\n");
        assert_eq!(found[0].0.line, 10);
        assert!(
            found[0]
                .1
                .contains("spec.validate[0] reads only the parent")
        );
        assert!(found[0].1.contains("ruleop policy"), "{}", found[0].1);
    }

    #[test]
    fn checks_reading_more_or_using_jinja_only_features_are_left_alone() {
        for rule in [
            "values.n > 0",
            "parent.data.v | split('.') | list | length == 3",
            "parent.data.a is number",
            "parent.data.name[:3] == 'abc'",
            "range(3) | length == 3",
            "now > '2020'",
        ] {
            let found = hints(&format!("    - rule: \"{rule}\"\n      message: m\n"));
            assert!(found.is_empty(), "{rule}: {found:?}");
        }
        assert!(hints("    - cel: self.data.a == 'x'\n      message: m\n").is_empty());
    }
}
