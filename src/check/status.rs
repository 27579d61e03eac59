//! The status ruleop writes on a parent against its CRD: the status subresource must exist
//! and every field ruleop writes must survive the API server's pruning.

use super::schema::{Seg, Walk, walk};
use super::{CrdVersion, Finding, Severity};
use crate::rule::CompiledRule;

/// The fields of each condition ruleop writes (see `crate::status::merge_conditions`).
const CONDITION_FIELDS: [&str; 6] = [
    "type",
    "status",
    "reason",
    "message",
    "lastTransitionTime",
    "observedGeneration",
];

fn field(name: &str) -> Seg {
    Seg::Field(name.to_string())
}

/// Errors for status ruleop writes that `crd` would refuse or prune. Every rule writes the
/// `Ready` condition and `observedGeneration`, so every rule needs the status subresource.
pub(super) fn written_status(rule: &CompiledRule, crd: &CrdVersion) -> Vec<Finding> {
    let at_parent = rule.spans.find("spec.parent");
    let error = |location, message: String| Finding {
        location,
        severity: Severity::Error,
        message,
    };
    let mut out = Vec::new();
    if !crd.status_subresource {
        out.push(error(
            at_parent,
            format!(
                "{} has no status subresource: ruleop writes the parent's status (the Ready \
                 condition, observedGeneration) through /status, which would not exist; add \
                 `subresources: {{status: {{}}}}` to version {}",
                crd.describe(),
                crd.version
            ),
        ));
    }
    let pruned = |path: &[Seg]| matches!(walk(&crd.schema, path), Walk::Missing { .. });
    let fix = "add it to the status properties (or set x-kubernetes-preserve-unknown-fields: true on status)";
    let projected = rule
        .spec
        .status
        .fields
        .keys()
        .map(|f| (f, format!("spec.status.fields.{f}")))
        .chain(
            rule.spec
                .status
                .on_failure
                .keys()
                .map(|f| (f, format!("spec.status.onFailure.{f}"))),
        );
    for (name, at) in projected {
        if pruned(&[field("status"), field(name)]) {
            out.push(error(
                rule.spans.find(&at),
                format!(
                    "status.{name} would be pruned: the status schema of {} has no field `{name}`; {fix}",
                    crd.describe()
                ),
            ));
        }
    }
    if pruned(&[field("status"), field("observedGeneration")]) {
        out.push(error(
            at_parent,
            format!(
                "status.observedGeneration (written by ruleop) would be pruned: the status \
                 schema of {} has no field `observedGeneration`; {fix}",
                crd.describe()
            ),
        ));
    }
    let conditions = [field("status"), field("conditions")];
    if pruned(&conditions) {
        out.push(error(
            at_parent,
            format!(
                "status.conditions (written by ruleop) would be pruned: the status schema of {} \
                 has no field `conditions`; {fix}",
                crd.describe()
            ),
        ));
    } else {
        let lost: Vec<&str> = CONDITION_FIELDS
            .into_iter()
            .filter(|f| {
                let mut path = conditions.to_vec();
                path.extend([Seg::Item, field(f)]);
                pruned(&path)
            })
            .collect();
        if !lost.is_empty() {
            out.push(error(
                at_parent,
                format!(
                    "status.conditions[].{} (written by ruleop) would be pruned: the condition \
                     items of {} do not declare it; declare every field ruleop writes in \
                     status.conditions.items.properties (type, status, reason, message, \
                     lastTransitionTime, observedGeneration)",
                    lost.join(", "),
                    crd.describe()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn rule() -> CompiledRule {
        let source = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n  parent: {apiVersion: toys.example.net/v3, kind: Kite}\n  status:\n    fields:\n      height: {expr: \"1\"}\n    onFailure:\n      phase: {expr: \"'Grounded'\"}\n";
        crate::rule::parse_rule(std::path::Path::new("r.yaml"), source).unwrap()
    }

    fn crd(status: Json, subresource: bool) -> CrdVersion {
        CrdVersion {
            crd: "kites.toys.example.net".into(),
            version: "v3".into(),
            origin: "test".into(),
            schema: json!({"type": "object", "properties": {"status": status}}),
            status_subresource: subresource,
        }
    }

    fn lines(found: &[Finding]) -> Vec<(usize, &str)> {
        found
            .iter()
            .map(|f| (f.location.line, f.message.split(" would").next().unwrap()))
            .collect()
    }

    #[test]
    fn an_open_status_keeps_everything() {
        let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(written_status(&rule(), &crd(open, true)), []);
    }

    #[test]
    fn a_closed_status_prunes_each_written_field() {
        let found = written_status(&rule(), &crd(json!({"type": "object"}), false));
        assert!(found.iter().all(|f| f.severity == Severity::Error));
        assert!(
            found[0].message.contains("has no status subresource"),
            "{found:?}"
        );
        assert_eq!(
            lines(&found[1..]),
            [
                (8, "status.height"),
                (10, "status.phase"),
                (5, "status.observedGeneration (written by ruleop)"),
                (5, "status.conditions (written by ruleop)"),
            ]
        );
    }
}
