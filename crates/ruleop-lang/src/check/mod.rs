//! Static checks of a rule against its parent's CRD: parent fields the rule reads that the
//! schema cannot have, and status the API server would prune or refuse.

mod refs;
mod status;

pub use ruleop_schema::crds::{self, CrdSet, CrdVersion, Lookup, SPEC_CRD};
pub use status::builtin_status;

use std::collections::BTreeSet;

use crate::rule::{CompiledRule, Location, split_api_version};
use ruleop_schema::walk::{Seg, Walk, show, walk};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The rule fails in the cluster or loses what it writes: `check` fails.
    Error,
    /// The rule runs but part of it can never take effect: `check` passes and says so.
    Warning,
}

/// One problem found, located in the rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where in the rule file.
    pub location: Location,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

/// A rule that declares its parent's fields (`spec.crd`) is checked against the CRD they
/// generate (a stage of loading, after compiling): what cannot work is an error (the rule is refused), the rest warnings.
pub fn own_crd(rule: &mut CompiledRule) -> Result<(), Vec<(Location, String)>> {
    // A CRD that cannot be generated is reported by `ruleop check` and `ruleop crd`.
    let Some(crd) = rule
        .spec
        .crd
        .as_ref()
        .and_then(|_| crate::crd::generate(rule).ok())
    else {
        return Ok(());
    };
    let (_, version) = split_api_version(&rule.spec.parent.api_version);
    let Some(crd) = CrdVersion::from_definition(&crd, version, SPEC_CRD) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for f in against_crd(rule, &crd) {
        match f.severity {
            Severity::Error => errors.push((f.location, f.message)),
            Severity::Warning => rule.warnings.push((f.location, f.message)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Everything `crd` (the parent's CRD at the rule's parent version) says is wrong with
/// `rule`, sorted by position.
pub fn against_crd(rule: &CompiledRule, crd: &CrdVersion) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut names: Vec<&str> = rule.templates.names().collect();
    names.sort();
    for name in names {
        let mut seen = BTreeSet::new();
        for r in refs::template_refs(&rule.templates, name) {
            let Walk::Missing { at, known } = walk(&crd.schema, &r.path) else {
                continue;
            };
            if !seen.insert(r.path[..=at].to_vec()) {
                continue;
            }
            out.push(Finding {
                location: rule.spans.line_in(name, r.line),
                severity: if r.printed {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                message: missing_message(crd, &r.path, at, &known, r.printed),
            });
        }
    }
    let projections = rule
        .spec
        .status
        .fields
        .iter()
        .map(|(f, p)| (format!("spec.status.fields.{f}.path"), p))
        .chain(
            rule.spec
                .status
                .on_failure
                .iter()
                .map(|(f, p)| (format!("spec.status.onFailure.{f}.path"), p)),
        );
    for (at_path, projection) in projections {
        let Some(path) = projection.path.as_deref().and_then(refs::jsonpath_ref) else {
            continue;
        };
        if let Walk::Missing { at, known } = walk(&crd.schema, &path) {
            out.push(Finding {
                location: rule.spans.find(&at_path),
                severity: Severity::Warning,
                message: missing_message(crd, &path, at, &known, false),
            });
        }
    }
    out.extend(status::written_status(rule, crd));
    out.sort_by_key(|f| (f.location.line, f.location.column));
    out
}

/// Why `parent.<path>` cannot exist, and what follows from it.
fn missing_message(
    crd: &CrdVersion,
    path: &[Seg],
    at: usize,
    known: &[String],
    printed: bool,
) -> String {
    let owner = show("parent", &path[..at]);
    let has = if known.is_empty() {
        format!("{owner} has no fields")
    } else {
        format!("{owner} has only {}", known.join(", "))
    };
    let effect = if printed {
        "printing it fails every render (undefined value)"
    } else {
        "it is always undefined, so a test of it is always false and a default always applies"
    };
    let fix = if crd.origin == SPEC_CRD {
        "check the spelling or declare the field in spec.crd.spec"
    } else {
        "check the spelling or add the field to the CRD's schema"
    };
    format!(
        "{} is not in the parent's schema ({}; {has}): {effect}; {fix}",
        show("parent", &path[..=at]),
        crd.describe()
    )
}
