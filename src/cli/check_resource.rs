//! `ruleop check --resource`: plans sample parents offline and checks every rendered child
//! against its kind's schema (built-in kinds from the snapshot or the cluster, CRD kinds from
//! their CRDs), reporting each violation once, located in the rule and the sample.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::Value as Json;

use super::{CliError, plan_sample, read_objects};
use ruleop_lang::load::LoadedRule;
use ruleop_lang::rule::Location;
use ruleop_plan::reason::LOOKUP_MISSING;
use ruleop_schema::meta;
use ruleop_schema::schema::{KindSchemas, Violation};

/// What `check --resource` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Error lines printed (violations, samples that cannot be planned).
    pub errors: usize,
}

/// Adds the CRDs of `crds` and those the rules generate (`spec.crd`) to `schemas`.
pub fn add_crds(
    schemas: &mut KindSchemas,
    rules: &[LoadedRule],
    crds: &[Json],
) -> Result<(), CliError> {
    for r in rules.iter().filter(|r| r.rule.spec.crd.is_some()) {
        // A `spec.crd` that does not generate is reported by `check` itself.
        if let Ok(crd) = ruleop_lang::crd::generate(&r.rule) {
            add_crd(schemas, &crd, &r.path)?;
        }
    }
    for crd in crds {
        add_crd(schemas, crd, Path::new(meta::name(crd)))?;
    }
    Ok(())
}

fn add_crd(schemas: &mut KindSchemas, crd: &Json, from: &Path) -> Result<(), CliError> {
    schemas.add_crd(crd).map_err(|e| CliError::Input {
        path: from.to_path_buf(),
        message: e.to_string(),
    })
}

/// What `check --resource` works from besides the rules.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Sample parents (files or directories).
    pub samples: &'a [PathBuf],
    /// Schemas of the built-in kinds.
    pub schemas: KindSchemas,
    /// CustomResourceDefinitions (their kinds' schemas, their defaults for the samples).
    pub crds: &'a [Json],
    /// Objects as observed in the cluster, for every sample (lookups, related objects).
    pub observed: &'a [Json],
}

/// Plans every object of the samples that a rule governs and checks its children against
/// their kinds' schemas; prints one line per finding. CRDs among the samples are used too.
pub fn check_resources(
    rules: &[LoadedRule],
    inputs: Inputs<'_>,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let Inputs {
        samples,
        mut schemas,
        crds,
        observed,
    } = inputs;
    let mut parents = Vec::new();
    let mut crds = crds.to_vec();
    let mut files = Vec::new();
    for path in samples {
        files.extend(ruleop_lang::manifests::yaml_files(path)?);
    }
    for file in files {
        for object in read_objects(&file)? {
            if ruleop_lang::check::crds::is_crd(&object) {
                crds.push(object);
            } else {
                parents.push((file.clone(), object));
            }
        }
    }
    add_crds(&mut schemas, rules, &crds)?;
    let now = Timestamp::now();
    let mut outcome = Outcome::default();
    for (file, parent) in parents {
        let what = format!(
            "{}: {} {}",
            file.display(),
            meta::kind(&parent),
            meta::name(&parent)
        );
        let Some(r) = rules.iter().find(|r| {
            let p = &r.rule.spec.parent;
            p.api_version == meta::api_version(&parent) && p.kind == meta::kind(&parent)
        }) else {
            if !ruleop_lang::load::is_rule_object(meta::api_version(&parent), meta::kind(&parent)) {
                writeln!(
                    out,
                    "note  {what}: no rule governs {}/{}; skipped",
                    meta::api_version(&parent),
                    meta::kind(&parent)
                )?;
            }
            continue;
        };
        let sample = Sample {
            file: &file,
            what: &what,
            crds: &crds,
            observed,
            now,
        };
        outcome.errors += check_sample(r, parent, &sample, &schemas, out)?;
    }
    Ok(outcome)
}

/// One sample parent and what it is planned with.
struct Sample<'a> {
    file: &'a Path,
    /// "file: Kind name", for messages.
    what: &'a str,
    crds: &'a [Json],
    observed: &'a [Json],
    now: Timestamp,
}

/// Plans one sample and checks its children; returns the number of error lines printed.
fn check_sample(
    r: &LoadedRule,
    mut parent: Json,
    sample: &Sample<'_>,
    schemas: &KindSchemas,
    out: &mut impl Write,
) -> Result<usize, CliError> {
    let what = sample.what;
    // The parent as the API server would store it; no CRD for it means no defaults.
    let _ = ruleop_lang::crd::apply_parent_defaults(&r.rule, sample.crds, &mut parent);
    let plan = match plan_sample(&r.rule, parent, sample.file, sample.observed, sample.now) {
        Ok(plan) => plan,
        Err(e) => {
            writeln!(out, "error {what}: cannot plan: {e}")?;
            return Ok(1);
        }
    };
    if let Some(why) = &plan.not_selected {
        writeln!(out, "note  {what}: not selected ({why}); not checked")?;
        return Ok(0);
    }
    if let Some(failure) = plan.failure.as_ref().filter(|f| f.reason == LOOKUP_MISSING) {
        // Not the rule's fault nor the sample's: the cluster would have the object.
        writeln!(
            out,
            "note  {what}: {} (pass it with --observed); not checked",
            failure.message
        )?;
        return Ok(0);
    }
    if let Some(failure) = &plan.failure {
        writeln!(
            out,
            "error {what}: cannot plan ({}): {}",
            failure.reason, failure.message
        )?;
        return Ok(1);
    }
    let mut checked = 0;
    // Copies of one child (replicas, collection members) repeat its findings: each is said
    // once, on the first copy, with the number of copies that share it.
    let mut findings: Vec<Finding> = Vec::new();
    let mut unknown = HashSet::new();
    for desired in &plan.apply {
        let object = &desired.object;
        let child = format!(
            "child {} ({} {})",
            desired.child,
            meta::kind(object),
            meta::name(object)
        );
        let Some(violations) = schemas.validate(object) else {
            if unknown.insert(desired.child.clone()) {
                writeln!(
                    out,
                    "note  {what}: {child}: no schema for {} {} (not in {}; pass its CRD with \
                     --crd); not checked",
                    meta::api_version(object),
                    meta::kind(object),
                    schemas.source()
                )?;
            }
            continue;
        };
        checked += 1;
        for v in violations {
            match findings.iter_mut().find(|f| f.same(&desired.child, &v)) {
                Some(f) => f.copies += 1,
                None => findings.push(Finding {
                    child_name: desired.child.clone(),
                    child: child.clone(),
                    violation: v,
                    copies: 1,
                }),
            }
        }
    }
    for f in &findings {
        let at = locate(r, &f.child_name, &f.violation);
        let copies = match f.copies {
            1 => String::new(),
            n => format!(" ({n} copies)"),
        };
        writeln!(
            out,
            "error {}:{at}: {what}: {}: {}{copies}",
            r.path.display(),
            f.child,
            f.violation
        )?;
    }
    let errors = findings.len();
    if plan.apply.is_empty() {
        writeln!(
            out,
            "note  {what}: renders no children (do they depend on objects in the cluster? pass \
             them with --observed)"
        )?;
    } else if errors == 0 {
        let children = match checked {
            1 => "1 child matches its schema".to_string(),
            n => format!("{n} children match their schemas"),
        };
        writeln!(out, "ok    {what}: {children}")?;
    }
    Ok(errors)
}

/// One violation of a child, with how many of its copies share it.
struct Finding {
    child_name: String,
    /// "child NAME (Kind object-name)" of the first copy.
    child: String,
    violation: Violation,
    copies: usize,
}

impl Finding {
    /// Whether `v` in a copy of `child` is this finding (the same field and kind of problem;
    /// the values may differ between copies).
    fn same(&self, child: &str, v: &Violation) -> bool {
        self.child_name == child
            && self.violation.path == v.path
            && std::mem::discriminant(&self.violation.problem) == std::mem::discriminant(&v.problem)
    }
}

/// The rule line of a violation: the line of its field in the child's template when one
/// line of the template names it unambiguously, else the template's first line.
fn locate(r: &LoadedRule, child: &str, v: &Violation) -> Location {
    let Some(index) = r.rule.spec.children.iter().position(|c| c.name == child) else {
        return r.rule.spans.find("spec");
    };
    // The name the child's template was compiled under is its YAML path.
    let at = match r.rule.compiled.children.get(index) {
        Some(compiled) => r.rule.templates.name(compiled.template),
        None => return r.rule.spans.find("spec"),
    };
    let template = &r.rule.spec.children[index].template;
    for key in keys_innermost_first(&v.path) {
        let lines: Vec<usize> = template
            .lines()
            .enumerate()
            .filter(|(_, line)| names_key(line, &key))
            .map(|(i, _)| i + 1)
            .collect();
        if let [line] = lines.as_slice() {
            return r.rule.spans.line_in(at, *line);
        }
    }
    r.rule.spans.find(at)
}

/// The field names of a violation path, innermost first (`a.b[0]["c.d"]` → `c.d`, `b`, `a`).
fn keys_innermost_first(path: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(stripped) = rest.strip_suffix(']') {
            let open = stripped.rfind('[').unwrap_or(0);
            let inner = &stripped[open + 1..];
            if let Ok(Json::String(key)) = serde_json::from_str::<Json>(inner) {
                keys.push(key);
            }
            rest = &stripped[..open];
        } else {
            let dot = rest.rfind(['.', ']']).map_or(0, |i| i + 1);
            keys.push(rest[dot..].to_string());
            rest = rest[..dot].trim_end_matches('.');
        }
    }
    keys
}

/// Whether a template line sets field `key` (`key:`, `- key:`, `{key: …`, `"key":`).
fn names_key(line: &str, key: &str) -> bool {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|needle| {
        line.match_indices(needle.as_str()).any(|(i, _)| {
            line[..i]
                .chars()
                .next_back()
                .is_none_or(|c| matches!(c, ' ' | '\t' | '{' | ',' | '-'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_path_innermost_first() {
        assert_eq!(
            keys_innermost_first("spec.template.spec.containers[0].imagee"),
            ["imagee", "containers", "spec", "template", "spec"]
        );
        assert_eq!(
            keys_innermost_first(r#"metadata.labels["app.kubernetes.io/name"]"#),
            ["app.kubernetes.io/name", "labels", "metadata"]
        );
        assert_eq!(keys_innermost_first("data.port"), ["port", "data"]);
        assert!(keys_innermost_first("").is_empty());
    }

    #[test]
    fn template_lines_that_name_a_key() {
        assert!(names_key("  replicas: {{ x }}", "replicas"));
        assert!(names_key("- name: a", "name"));
        assert!(names_key("ports: [{port: 80, name: x}]", "name"));
        assert!(names_key(
            r#"  "app.kubernetes.io/name": x"#,
            "app.kubernetes.io/name"
        ));
        assert!(!names_key("  hostname: x", "name"));
        assert!(!names_key("  name_suffix: x", "name"));
    }
}
