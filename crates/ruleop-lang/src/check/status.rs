//! The status ruleop writes on a parent against the parent's schema: the status subresource
//! must exist, and what the schema does not let ruleop write is left out (said here, located
//! in the rule file).

use super::{CrdVersion, Finding, Severity};
use crate::rule::{CompiledRule, Location};
use ruleop_schema::schema::JsonSchema;
use ruleop_schema::status_shape::{
    CONDITIONS, OBSERVED_GENERATION, OPTIONAL_CONDITION_KEYS, StatusShape, is_builtin_group,
};

/// Errors for status `crd` cannot take at all (no status subresource), warnings for what
/// of ruleop's status its schema does not declare: ruleop leaves that out.
pub(super) fn written_status(rule: &CompiledRule, crd: &CrdVersion) -> Vec<Finding> {
    let mut out = Vec::new();
    if !crd.status_subresource {
        out.push(Finding {
            location: rule.spans.find("spec.parent"),
            severity: Severity::Error,
            message: format!(
                "{} has no status subresource: ruleop writes the parent's status (the Ready \
                 condition, observedGeneration) through /status, which would not exist; add \
                 `subresources: {{status: {{}}}}` to version {}",
                crd.describe(),
                crd.version
            ),
        });
    }
    // A version without a schema keeps everything.
    if !crd.has_schema() {
        return out;
    }
    let builtin = is_builtin_group(&rule.spec.parent.api_version);
    let shape = StatusShape::decide(
        &JsonSchema::new(&crd.schema, None),
        builtin,
        rule.status_fields(),
    );
    let fix = "add it to the status properties (or set x-kubernetes-preserve-unknown-fields: true on status)";
    let why = |name: &str| {
        format!(
            "the status schema of {} has no field `{name}`; {fix}",
            crd.describe()
        )
    };
    out.extend(omitted(rule, &shape, &crd.describe(), why));
    out
}

/// Warnings for what of ruleop's status the built-in parent kind does not take: its status
/// belongs to its own controller, ruleop adds only its conditions (when it can).
pub fn builtin_status(
    rule: &CompiledRule,
    schemas: &ruleop_schema::schema::KindSchemas,
) -> Vec<Finding> {
    let parent = &rule.spec.parent;
    let Some(schema) = schemas.schema_of(&parent.api_version, &parent.kind) else {
        return Vec::new();
    };
    let shape = StatusShape::decide(&schema, true, rule.status_fields());
    let kind = &parent.kind;
    let why = |_: &str| {
        format!(
            "{kind} is a built-in kind: its status belongs to its own controller, ruleop adds \
             only its conditions there"
        )
    };
    omitted(rule, &shape, kind, why)
}

/// A warning for each of ruleop's status keys `shape` leaves out; `why(name)` says why a
/// status field is left out, `what` names the parent's schema.
fn omitted(
    rule: &CompiledRule,
    shape: &StatusShape,
    what: &str,
    why: impl Fn(&str) -> String,
) -> Vec<Finding> {
    let at_parent = rule.spans.find("spec.parent");
    let warn = |location: Location, message: String| Finding {
        location,
        severity: Severity::Warning,
        message,
    };
    let mut out = Vec::new();
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
        if !shape.allows_field(name) {
            out.push(warn(
                rule.spans.find(&at),
                format!("status.{name} is not written: {}", why(name)),
            ));
        }
    }
    // A built-in kind's observedGeneration is its controller's: not written, by design.
    if !shape.is_builtin() && !shape.allows_observed_generation() {
        out.push(warn(
            at_parent,
            format!(
                "status.{OBSERVED_GENERATION} (written by ruleop) is not written: {}",
                why(OBSERVED_GENERATION)
            ),
        ));
    }
    if !shape.allows_conditions() {
        let reason = if shape.is_builtin() {
            format!(
                "the status of {what} has no conditions list keyed by `type` with `type` and \
                 `status` fields that ruleop could add its own entries to"
            )
        } else {
            format!("{}, with `type` and `status` in its items", why(CONDITIONS))
        };
        out.push(warn(
            at_parent,
            format!(
                "status.{CONDITIONS} (the Ready condition and the rule's conditions) is not \
                 written: {reason}"
            ),
        ));
    } else {
        let lost: Vec<&str> = OPTIONAL_CONDITION_KEYS
            .into_iter()
            .filter(|k| !shape.allows_condition_key(k))
            .collect();
        // A built-in kind's condition items are not the author's to change: the keys they
        // lack are worth a warning only to a rule that declares status of its own, not to one
        // (a decorator) that leaves ruleop's default `Ready` condition as the kind takes it.
        let status = &rule.spec.status;
        let declares_status = !status.fields.is_empty()
            || !status.on_failure.is_empty()
            || status.ready.is_some()
            || !status.conditions.is_empty();
        if !lost.is_empty() && (!shape.is_builtin() || declares_status) {
            out.push(warn(
                at_parent,
                format!(
                    "status.{CONDITIONS}[].{} (written by ruleop) is left out of each \
                     condition: the condition items of {what} do not declare it",
                    lost.join(", ")
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
        crate::load::parse_rule(std::path::Path::new("r.yaml"), source).unwrap()
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
            .map(|f| (f.location.line, f.message.split(" is not").next().unwrap()))
            .collect()
    }

    #[test]
    fn an_open_status_keeps_everything() {
        let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(written_status(&rule(), &crd(open, true)), []);
    }

    #[test]
    fn a_closed_status_leaves_out_each_written_field() {
        let found = written_status(&rule(), &crd(json!({"type": "object"}), false));
        // No subresource: nothing can be written. The rest is left out, with a warning.
        assert_eq!(found[0].severity, Severity::Error);
        assert!(
            found[0].message.contains("has no status subresource"),
            "{found:?}"
        );
        assert!(found[1..].iter().all(|f| f.severity == Severity::Warning));
        assert_eq!(
            lines(&found[1..]),
            [
                (8, "status.height"),
                (10, "status.phase"),
                (5, "status.observedGeneration (written by ruleop)"),
                (
                    5,
                    "status.conditions (the Ready condition and the rule's conditions)"
                ),
            ]
        );
    }
}
