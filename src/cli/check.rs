//! `ruleop check`: validates rule files and prints one line per rule, warning or error.

use std::io::Write;
use std::path::PathBuf;

use super::CliError;
use crate::rule::{self, LoadedRule};

/// `ruleop check`: validates rule files; prints a summary line per rule or one located
/// error per line.
pub fn check(paths: &[PathBuf], out: &mut impl Write) -> Result<(), CliError> {
    let (rules, mut errors) = rule::load_paths(paths);
    for path in paths.iter().filter(|p| p.is_dir()) {
        if rule::rule_files(path).is_ok_and(|f| f.is_empty()) {
            errors.push(rule::RuleError {
                file: path.clone(),
                location: rule::Location::default(),
                message: "no rule files here (*.yaml or *.yml with kind: Rule)".into(),
            });
        }
    }
    for r in &rules {
        if r.rule.spec.crd.is_some()
            && let Err(e) = crate::crd::generate(&r.rule)
        {
            errors.push(rule::RuleError {
                file: r.path.clone(),
                location: r.rule.spans.find("spec.crd"),
                message: e.to_string(),
            });
            continue;
        }
        writeln!(out, "ok    {}", summary(r))?;
        for (location, message) in &r.rule.warnings {
            writeln!(out, "warn  {}:{location}: {message}", r.path.display())?;
        }
    }
    for e in &errors {
        writeln!(out, "error {e}")?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::InvalidRules(errors.len()))
    }
}

fn summary(r: &LoadedRule) -> String {
    let spec = &r.rule.spec;
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}: rule {} governs {} ({}, {}, {}{})",
        r.path.display(),
        r.rule.name,
        r.rule.parent_key(),
        count(spec.children.len(), "child"),
        count(spec.related.len(), "related kind"),
        count(spec.status.fields.len(), "status field"),
        if r.rule.needs_finalizer() {
            ", finalizer"
        } else {
            ""
        }
    )
    .replace("1 childs", "1 child")
    .replace("childs", "children")
}
