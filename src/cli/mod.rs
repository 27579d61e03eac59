//! The authoring subcommands: `check`, `render`, `schema`, `rbac`, `test` and `diff`.

mod check;
mod check_resource;
pub mod crds;
mod diff;
pub mod livediff;
mod policy;
pub use ruleop_plan::print as output;
pub mod rbac;
pub mod rbac_accounts;
mod rollout;
mod test;

pub use check::{CheckArgs, check};
pub use check_resource::{Inputs, check_resources};
pub use diff::{DiffArgs, diff};
pub use policy::{PolicyArgs, policy};
pub use rollout::{RolloutArgs, RolloutVerb, rollout};
pub use test::test;

pub use ruleop_lang::manifests::read_objects;

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::{Value as Json, json};

use ruleop_lang::rule::{self, CompiledRule, RuleFile};
use ruleop_plan::{self as plan, Input, Plan};

/// A failure of an offline command, printed as is.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Rule files have problems (already printed, one per line).
    #[error("{0} error(s) in rule files")]
    InvalidRules(usize),
    /// An input file could not be read or parsed.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Rendered children break their kinds' schemas (already printed, one per line).
    #[error("{0} error(s) in rendered children")]
    InvalidChildren(usize),
    /// Kind schemas could not be loaded.
    #[error("{0}")]
    Schema(#[from] ruleop_schema::schema::SchemaError),
    /// Test cases failed (already printed).
    #[error("{0} test(s) failed")]
    TestsFailed(usize),
    /// The cluster could not be read.
    #[error("{0}")]
    Cluster(String),
    /// Objects could not be read from a file.
    #[error(transparent)]
    Read(#[from] ruleop_lang::manifests::ReadError),
    /// CRDs given to `check` could not be read.
    #[error(transparent)]
    Crds(#[from] crds::CrdLoadError),
    /// The plan failed (its failure is shown in the status printed).
    #[error("the plan failed: {reason}: {message}")]
    PlanFailed {
        /// The failure's reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
    /// Output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Output format of `render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Multi-document YAML: children, then the status.
    Yaml,
    /// The whole plan as JSON.
    Json,
}

/// Fills what a parent read from a file lacks but the API server would set (a namespace
/// only for a namespaced parent).
pub fn complete_parent(parent: &mut Json, scope: rule::Scope) {
    let Some(meta) = parent.get_mut("metadata").and_then(Json::as_object_mut) else {
        return;
    };
    if scope == rule::Scope::Namespaced {
        meta.entry("namespace").or_insert_with(|| json!("default"));
    }
    meta.entry("uid")
        .or_insert_with(|| json!("00000000-0000-0000-0000-000000000000"));
    meta.entry("generation").or_insert_with(|| json!(1));
}

/// `ruleop render`: plans one parent offline.
pub fn render(
    rule_path: &Path,
    resource: &Path,
    observed: &[PathBuf],
    now: Option<Timestamp>,
    format: Format,
    out: &mut impl Write,
) -> Result<Plan, CliError> {
    render_with_crds(rule_path, resource, observed, &[], now, format, out)
}

/// `ruleop render --crd FILE`: [`render`], with the defaults of the parent's CRD (found in
/// the `crds` files) applied to the parent first, as the API server would on create.
pub fn render_with_crds(
    rule_path: &Path,
    resource: &Path,
    observed: &[PathBuf],
    crds: &[PathBuf],
    now: Option<Timestamp>,
    format: Format,
    out: &mut impl Write,
) -> Result<Plan, CliError> {
    let source = std::fs::read_to_string(rule_path).map_err(|e| CliError::Input {
        path: rule_path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let compiled = ruleop_lang::load::parse_rule(rule_path, &source).map_err(|errors| {
        for e in &errors {
            let _ = writeln!(std::io::stderr(), "error {e}");
        }
        CliError::InvalidRules(errors.len())
    })?;
    let mut parents = read_objects(resource)?;
    if parents.len() != 1 {
        return Err(CliError::Input {
            path: resource.to_path_buf(),
            message: format!("expected exactly one resource, found {}", parents.len()),
        });
    }
    let mut parent = parents.remove(0);
    let mut definitions = Vec::new();
    for path in crds {
        definitions.extend(read_objects(path)?);
    }
    ruleop_lang::crd::apply_parent_defaults(&compiled, &definitions, &mut parent).map_err(|e| {
        CliError::Input {
            path: crds
                .first()
                .cloned()
                .unwrap_or_else(|| rule_path.to_path_buf()),
            message: e.to_string(),
        }
    })?;
    let mut objects = Vec::new();
    for path in observed {
        objects.extend(read_objects(path)?);
    }
    let plan = plan_sample(
        &compiled,
        parent,
        resource,
        &objects,
        now.unwrap_or_else(Timestamp::now),
    )?;
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &plan).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Yaml => write!(out, "{}", output::plan_yaml(&plan))?,
    }
    Ok(plan)
}

/// `Ok` for a plan that did not fail: `render`'s exit status.
pub fn plan_succeeded(plan: Plan) -> Result<(), CliError> {
    match plan.failure {
        None => Ok(()),
        Some(f) => Err(CliError::PlanFailed {
            reason: f.reason,
            message: f.message,
        }),
    }
}

/// Plans `parent` (read from `resource`) offline, as `render` does: completed with what the
/// API server would set, checked to be the rule's parent kind. CRD defaults are the caller's.
pub fn plan_sample(
    compiled: &CompiledRule,
    mut parent: Json,
    resource: &Path,
    observed: &[Json],
    now: Timestamp,
) -> Result<Plan, CliError> {
    complete_parent(&mut parent, compiled.spec.parent.scope);
    let expected = (
        &compiled.spec.parent.api_version,
        &compiled.spec.parent.kind,
    );
    if (
        ruleop_schema::meta::api_version(&parent),
        ruleop_schema::meta::kind(&parent),
    ) != (expected.0.as_str(), expected.1.as_str())
    {
        return Err(CliError::Input {
            path: resource.to_path_buf(),
            message: format!(
                "the rule governs {}/{}, not {}/{}",
                expected.0,
                expected.1,
                ruleop_schema::meta::api_version(&parent),
                ruleop_schema::meta::kind(&parent)
            ),
        });
    }
    Ok(plan::plan(
        compiled,
        Input {
            parent: &parent,
            observed,
            now,
            schemas: None,
        },
    ))
}

/// One rule file, compiled; its errors printed to stderr.
fn load_rule(rule_path: &Path) -> Result<CompiledRule, CliError> {
    let source = std::fs::read_to_string(rule_path).map_err(|e| CliError::Input {
        path: rule_path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    ruleop_lang::load::parse_rule(rule_path, &source).map_err(|errors| {
        for e in &errors {
            let _ = writeln!(std::io::stderr(), "error {e}");
        }
        CliError::InvalidRules(errors.len())
    })
}

/// `ruleop crd`: prints the CRD generated from the rule's `spec.crd`.
pub fn crd(rule_path: &Path, out: &mut impl Write) -> Result<(), CliError> {
    let compiled = load_rule(rule_path)?;
    let crd = ruleop_lang::crd::generate(&compiled).map_err(|e| CliError::Input {
        path: rule_path.to_path_buf(),
        message: e.to_string(),
    })?;
    writeln!(
        out,
        "# Generated by `ruleop crd --rule {}`; do not edit by hand.",
        rule_path.display()
    )?;
    write!(out, "{}", output::to_yaml(&crd))?;
    Ok(())
}

/// `ruleop schema`: the JSON Schema of rule files.
pub fn schema(out: &mut impl Write) -> Result<(), CliError> {
    let schema = schemars::schema_for!(RuleFile);
    serde_json::to_writer_pretty(&mut *out, &schema).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `ruleop rbac`: prints the ClusterRole the rule files need; for rules with
/// `spec.serviceAccount`, then the grant to impersonate their accounts to `operator` (the
/// operator's own ServiceAccount, `NAMESPACE/NAME`) and each account's role.
pub fn rbac(
    paths: &[PathBuf],
    name: &str,
    operator: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let Some((namespace, account)) = operator.split_once('/') else {
        return Err(CliError::Usage(format!(
            "--service-account {operator:?}: expected NAMESPACE/NAME"
        )));
    };
    let operator = rule::ServiceAccount {
        namespace: namespace.into(),
        name: account.into(),
    };
    let (rules, errors) = ruleop_lang::load::load_paths(paths);
    for e in &errors {
        let _ = writeln!(std::io::stderr(), "error {e}");
    }
    if !errors.is_empty() {
        return Err(CliError::InvalidRules(errors.len()));
    }
    let compiled: Vec<&ruleop_lang::rule::CompiledRule> =
        rules.iter().map(|r| r.rule.as_ref()).collect();
    let role = crate::cli::rbac::cluster_role(name, &compiled);
    let files: Vec<String> = rules.iter().map(|r| r.path.display().to_string()).collect();
    writeln!(
        out,
        "# Generated by `ruleop rbac` from {}; do not edit by hand.",
        files.join(", ")
    )?;
    write!(out, "{}", output::to_yaml(&role))?;
    let accounts = crate::cli::rbac_accounts::account_objects(name, &compiled, &operator);
    for object in &accounts {
        writeln!(out, "---")?;
        write!(out, "{}", output::to_yaml(object))?;
    }
    Ok(())
}
