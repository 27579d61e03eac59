//! `ruleop test`: declarative rule tests run offline with the controller's planner.
//!
//! A test file names a rule and lists cases; each case starts from a parent and observed
//! objects and runs one or more steps. A step optionally edits the parent or observed
//! objects, plans, checks the plan against `expect` (partial) and/or a golden file (the
//! whole plan as `ruleop render` prints it), then applies the plan to the simulated cluster
//! so the next step sees its result. [`world`] simulates the cluster, [`expect`] matches.

pub mod expect;
pub mod keys;
pub mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::Input;
use crate::print::plan_yaml;
pub use expect::Expect;
use ruleop_lang::rule::{CompiledRule, Location, Spans};
use ruleop_schema::jsondiff::line_diff;
use world::World;

/// The time steps plan at unless the file or step says otherwise, so output is stable.
pub const DEFAULT_NOW: &str = "2024-01-01T00:00:00Z";

/// A test file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestFile {
    /// The rule under test, relative to this file.
    pub rule: PathBuf,
    /// The time to plan at (RFC 3339), default `2024-01-01T00:00:00Z`.
    #[serde(default)]
    pub now: Option<String>,
    /// The cases.
    pub tests: Vec<Case>,
}

/// An object given inline or as a path (relative to the test file) to a YAML file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Source {
    /// A path to a YAML file (every document, and the items of `List`s).
    File(PathBuf),
    /// The object itself.
    Inline(Json),
}

/// One case: a starting point and its steps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// The parent (inline or a file).
    pub parent: Source,
    /// A JSON merge patch applied to the parent first (to vary a shared sample).
    #[serde(default)]
    pub patch: Option<Json>,
    /// Objects already in the cluster (inline or files).
    #[serde(default)]
    pub observed: Vec<Source>,
    /// Shorthand for a single step: what the plan must contain.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Shorthand for a single step: the golden file of the whole plan.
    #[serde(default)]
    pub golden: Option<PathBuf>,
    /// The steps, in order; each sees the cluster as the previous plans left it.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One plan of a case.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// A JSON merge patch on the parent before planning (a spec change bumps its generation;
    /// set `metadata.deletionTimestamp` to plan its deletion).
    #[serde(default)]
    pub parent: Option<Json>,
    /// JSON merge patches on observed objects by `Kind/name`, or `Kind/namespace/name` when
    /// the kind and name exist in several namespaces (`null` removes the object), e.g. to
    /// report a child ready.
    #[serde(default)]
    pub observed: BTreeMap<String, Json>,
    /// Objects that appear before planning.
    #[serde(default)]
    pub add: Vec<Json>,
    /// The time to plan at (RFC 3339).
    #[serde(default)]
    pub now: Option<String>,
    /// What the plan must contain (omitted parts are not checked).
    #[serde(default)]
    pub expect: Option<Expect>,
    /// A file holding the whole plan as `ruleop render` prints it; `--update` writes it.
    #[serde(default)]
    pub golden: Option<PathBuf>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Where the case is (`file:line:col`).
    pub location: String,
    /// Failures, each a readable multi-line message; empty when the case passed.
    pub failures: Vec<String>,
    /// Golden files written by `--update`.
    pub updated: Vec<PathBuf>,
}

/// A test file that cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The test file cannot be read or parsed.
    #[error("{file}:{location}: {message}")]
    File {
        /// The file.
        file: PathBuf,
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// The rule under test does not load.
    #[error("{0}")]
    Rule(String),
}

fn file_error(file: &Path, location: Location, message: impl Into<String>) -> TestError {
    TestError::File {
        file: file.to_path_buf(),
        location,
        message: message.into(),
    }
}

/// Whether `path` is a test file by name (`*.test.yaml` / `*.test.yml`), or a YAML file
/// directly inside a `tests` directory; golden files (`*.golden.yaml`, or any file in a
/// subdirectory of `tests`) are not.
pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.starts_with('.') || name.contains(".golden.") {
        return false;
    }
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    let in_tests = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "tests");
    yaml && (name.contains(".test.") || in_tests)
}

/// The test files at `path`: the file itself, or test files anywhere under a directory,
/// sorted.
pub fn test_files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.is_dir() {
                dirs.push(p);
            } else if is_test_file(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs every case of one test file; `update` rewrites golden files that differ.
pub fn run_file(path: &Path, update: bool) -> Result<Vec<CaseResult>, TestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_error(path, Location::default(), format!("cannot read: {e}")))?;
    let file: TestFile = ruleop_lang::yaml::from_str(&text).map_err(|e| {
        let location = Location {
            line: e.line,
            column: e.column,
        };
        file_error(path, location, e.message)
    })?;
    let spans = Spans::index(&text);
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_path = dir.join(&file.rule);
    let source = std::fs::read_to_string(&rule_path).map_err(|e| {
        file_error(
            path,
            spans.find("rule"),
            format!("cannot read rule {}: {e}", rule_path.display()),
        )
    })?;
    let rule = ruleop_lang::load::parse_rule(&rule_path, &source).map_err(|errors| {
        TestError::Rule(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let now = parse_now(path, &spans, "now", file.now.as_deref(), None)?;
    let mut results = Vec::new();
    for (i, case) in file.tests.iter().enumerate() {
        let base = format!("tests[{i}]");
        let mut result = CaseResult {
            name: case.name.clone(),
            location: format!("{}:{}", path.display(), spans.find(&base)),
            failures: Vec::new(),
            updated: Vec::new(),
        };
        let ctx = CaseCtx {
            path,
            dir,
            spans: &spans,
            rule: &rule,
            now,
            update,
        };
        if let Err(e) = run_case(&ctx, case, &base, &mut result) {
            result.failures.push(e.to_string());
        }
        results.push(result);
    }
    Ok(results)
}

struct CaseCtx<'a> {
    path: &'a Path,
    dir: &'a Path,
    spans: &'a Spans,
    rule: &'a CompiledRule,
    now: Timestamp,
    update: bool,
}

fn parse_now(
    path: &Path,
    spans: &Spans,
    at: &str,
    text: Option<&str>,
    fallback: Option<Timestamp>,
) -> Result<Timestamp, TestError> {
    match text {
        Some(t) => t.parse().map_err(|e| {
            file_error(
                path,
                spans.find(at),
                format!("invalid time {t:?} (RFC 3339, e.g. {DEFAULT_NOW}): {e}"),
            )
        }),
        None => {
            Ok(fallback.unwrap_or_else(|| DEFAULT_NOW.parse().unwrap_or(Timestamp::UNIX_EPOCH)))
        }
    }
}

fn load_source(ctx: &CaseCtx<'_>, source: &Source, at: &str) -> Result<Vec<Json>, TestError> {
    match source {
        Source::Inline(obj) => Ok(vec![obj.clone()]),
        Source::File(p) => ruleop_lang::manifests::read_objects(&ctx.dir.join(p))
            .map_err(|e| file_error(ctx.path, ctx.spans.find(at), e.to_string())),
    }
}

fn run_case(
    ctx: &CaseCtx<'_>,
    case: &Case,
    base: &str,
    result: &mut CaseResult,
) -> Result<(), TestError> {
    let mut parents = load_source(ctx, &case.parent, &format!("{base}.parent"))?;
    if parents.len() != 1 {
        return Err(file_error(
            ctx.path,
            ctx.spans.find(&format!("{base}.parent")),
            format!("expected exactly one parent, found {}", parents.len()),
        ));
    }
    let mut parent = parents.remove(0);
    if let Some(patch) = &case.patch {
        world::merge_patch(&mut parent, patch);
    }
    crate::sample::complete_parent(&mut parent, ctx.rule.spec.parent.scope);
    // As the API server would store it once the rule's own CRD (`spec.crd`) is installed.
    let _ = ruleop_lang::crd::apply_parent_defaults(ctx.rule, &[], &mut parent);
    let mut observed = Vec::new();
    for (j, o) in case.observed.iter().enumerate() {
        observed.extend(load_source(ctx, o, &format!("{base}.observed[{j}]"))?);
    }
    let mut world = World::new(parent, observed);

    let single;
    let steps: Vec<(&Step, String)> = if case.steps.is_empty() {
        single = Step {
            expect: case.expect.clone(),
            golden: case.golden.clone(),
            ..Step::default()
        };
        vec![(&single, base.to_string())]
    } else {
        if case.expect.is_some() || case.golden.is_some() {
            return Err(file_error(
                ctx.path,
                ctx.spans.find(base),
                "a case has either steps or expect/golden, not both",
            ));
        }
        case.steps
            .iter()
            .enumerate()
            .map(|(k, s)| (s, format!("{base}.steps[{k}]")))
            .collect()
    };
    if steps
        .iter()
        .all(|(s, _)| s.expect.is_none() && s.golden.is_none())
    {
        return Err(file_error(
            ctx.path,
            ctx.spans.find(base),
            "the case checks nothing: give expect or golden",
        ));
    }
    let many = steps.len() > 1;
    for (k, (step, at)) in steps.iter().enumerate() {
        let label = if many {
            format!(
                "step {} ({}:{})",
                k + 1,
                ctx.path.display(),
                ctx.spans.find(at)
            )
        } else {
            String::new()
        };
        if let Some(patch) = &step.parent {
            world.patch_parent(patch);
        }
        for (key, patch) in &step.observed {
            if let Err(message) = world.patch_observed(key, patch) {
                return Err(file_error(
                    ctx.path,
                    ctx.spans.find(&format!("{at}.observed.{key}")),
                    message,
                ));
            }
        }
        world.add(step.add.iter().cloned());
        let now = parse_now(
            ctx.path,
            ctx.spans,
            &format!("{at}.now"),
            step.now.as_deref(),
            Some(ctx.now),
        )?;
        let plan = crate::plan(
            ctx.rule,
            Input {
                parent: &world.parent,
                observed: &world.observed,
                now,
                schemas: None,
            },
        );
        let mut problems = Vec::new();
        if let Some(expect) = &step.expect {
            problems.extend(expect::check(expect, &plan, &world.parent));
        }
        if let Some(golden) = &step.golden {
            let file = ctx.dir.join(golden);
            let actual = plan_yaml(&plan);
            let expected = std::fs::read_to_string(&file).unwrap_or_default();
            if expected != actual {
                if ctx.update {
                    std::fs::write(&file, &actual).map_err(|e| {
                        file_error(
                            ctx.path,
                            ctx.spans.find(&format!("{at}.golden")),
                            format!("cannot write {}: {e}", file.display()),
                        )
                    })?;
                    result.updated.push(file);
                } else if !file.exists() {
                    problems.push(format!(
                        "golden file {} does not exist (run with --update to write it)",
                        file.display()
                    ));
                } else {
                    problems.push(format!(
                        "the plan differs from {} (- expected, + actual; --update accepts it):\n{}",
                        file.display(),
                        line_diff(&expected, &actual, 2)
                    ));
                }
            }
        }
        for p in problems {
            result
                .failures
                .push(if many { format!("{label}: {p}") } else { p });
        }
        world.apply(&plan, now);
    }
    Ok(())
}
