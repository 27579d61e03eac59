//! `ruleop check`: validates rule files, against their parents' CRDs when given, and prints
//! one line per rule, note, warning or error.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::CliError;
use crate::controller::openapi_fetch::{self, FetchError};
use ruleop_lang::check::{self, CrdSet, Lookup, Severity, crds};
use ruleop_lang::load::{LoadedRule, RuleError};
use ruleop_lang::rule::{self, Location, Spans};
use ruleop_schema::schema::KindSchemas;

/// Options of `ruleop check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// Rule files or directories (default: rules/). CRDs in a directory are used as with
    /// `--crd`; other YAML files there (samples) are skipped with a note.
    pub paths: Vec<PathBuf>,
    /// CustomResourceDefinition files or directories (repeatable): the parents' schemas.
    #[arg(long)]
    pub crd: Vec<PathBuf>,
    /// Also check against the parents' CRDs the cluster serves (samples: `--crd` files first).
    #[arg(long)]
    pub cluster: bool,
    /// Path of the kubeconfig, with `--cluster` (default: $KUBECONFIG, ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context, with `--cluster` (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Sample parents (files or directories, multi-document YAML, repeatable): each one a
    /// rule governs is planned offline and its children checked against their kinds' schemas
    /// (built-in kinds: the embedded Kubernetes OpenAPI snapshot, or the cluster's with
    /// `--cluster`; CRD kinds: their CRDs).
    #[arg(long)]
    pub resource: Vec<PathBuf>,
    /// Objects as observed in the cluster (YAML, repeatable), for planning the resources.
    #[arg(long)]
    pub observed: Vec<PathBuf>,
    /// Also print hints: Jinja checks that could be CEL (enforced at `kubectl apply`).
    #[arg(long)]
    pub hints: bool,
}

/// What the files to check are.
#[derive(Default)]
struct Inputs {
    rule_files: Vec<PathBuf>,
    crds: CrdSet,
    notes: Vec<String>,
    errors: Vec<RuleError>,
}

/// `ruleop check`: validates rule files; prints a summary line per rule, a note per skipped
/// file, and one located warning or error per line. Fails if there is any error.
pub fn check(args: &CheckArgs, out: &mut impl Write) -> Result<(), CliError> {
    let cluster = if args.cluster {
        cluster_crds(args)?
    } else {
        CrdSet::default()
    };
    let inputs = classify(&args.paths);
    let mut given = inputs.crds;
    given.extend(super::crds::load(&args.crd)?);
    // Every source is checked (the rule's own `spec.crd`, the files, the cluster): the
    // cluster's is what the controller meets, the files what will be installed.
    let sources = [&given, &cluster];
    // Samples are planned with the given files' CRDs over the cluster's.
    let mut crd_set = cluster.clone();
    crd_set.extend(given.clone());
    let schemas_given = args.cluster || !crd_set.is_empty();
    let mut errors = inputs.errors;
    let (rules, mut load_errors) = ruleop_lang::load::load_paths(&inputs.rule_files);
    errors.append(&mut load_errors);
    for note in &inputs.notes {
        writeln!(out, "note  {note}")?;
    }
    for r in &rules {
        let (mut rule_errors, mut warnings) = against_schema(r, &sources, schemas_given, out)?;
        warnings.extend(r.rule.warnings.iter().cloned());
        warnings.sort_by_key(|(l, _)| (l.line, l.column));
        if rule_errors.is_empty() {
            writeln!(out, "ok    {}", summary(r))?;
        }
        for (location, message) in &warnings {
            writeln!(out, "warn  {}:{location}: {message}", r.path.display())?;
        }
        if args.hints {
            for (location, message) in ruleop_lang::cel::hints::could_be_cel(&r.rule) {
                writeln!(out, "hint  {}:{location}: {message}", r.path.display())?;
            }
        }
        errors.append(&mut rule_errors);
    }
    for e in &errors {
        writeln!(out, "error {e}")?;
    }
    if !errors.is_empty() {
        return Err(CliError::InvalidRules(errors.len()));
    }
    if args.resource.is_empty() {
        return Ok(());
    }
    let schemas = if args.cluster {
        block_on(cluster_schemas(args))?
    } else {
        KindSchemas::builtin().map_err(|e| CliError::Cluster(e.to_string()))?
    };
    let mut observed = Vec::new();
    for path in &args.observed {
        observed.extend(super::read_objects(path)?);
    }
    let crds: Vec<Json> = crd_set.definitions().cloned().collect();
    let inputs = super::Inputs {
        samples: &args.resource,
        schemas,
        crds: &crds,
        observed: &observed,
    };
    match super::check_resources(&rules, inputs, out)?.errors {
        0 => Ok(()),
        n => Err(CliError::InvalidChildren(n)),
    }
}

type Warnings = Vec<(Location, String)>;

/// The errors and warnings of `r` against every CRD of its parent: its own `spec.crd`
/// (checked when it was compiled), and each of `sources` (files, the cluster) that has one,
/// each finding naming the CRD it comes from. With a `spec.crd`, a CRD of another source
/// that differs from the one it generates is an error: the controller meets that one.
fn against_schema(
    r: &LoadedRule,
    sources: &[&CrdSet],
    schemas_given: bool,
    out: &mut impl Write,
) -> Result<(Vec<RuleError>, Warnings), CliError> {
    let error = |location: Location, message: String| RuleError {
        file: r.path.clone(),
        location,
        message,
    };
    let rule = &r.rule;
    let own = match rule
        .spec
        .crd
        .as_ref()
        .map(|_| ruleop_lang::crd::generate(rule))
    {
        Some(Err(e)) => {
            return Ok((
                vec![error(rule.spans.find("spec.crd"), e.to_string())],
                Vec::new(),
            ));
        }
        Some(Ok(own)) => Some(own),
        None => None,
    };
    let parent = &rule.spec.parent;
    let (group, version) = rule::split_api_version(&parent.api_version);
    if ruleop_schema::status_shape::is_builtin_group(&parent.api_version) {
        // A built-in parent: its status is its own controller's (the embedded schemas).
        let warnings = KindSchemas::builtin()
            .map(|schemas| check::builtin_status(rule, &schemas))
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.location, f.message))
            .collect();
        let in_sources = sources
            .iter()
            .any(|crds| !matches!(crds.lookup(group, version, &parent.kind), Lookup::None));
        if group.is_empty() || !in_sources {
            return Ok((Vec::new(), warnings));
        }
    }
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mut found = own.is_some();
    for crds in sources {
        match crds.lookup(group, version, &parent.kind) {
            Lookup::Found(crd) => {
                found = true;
                for f in check::against_crd(rule, crd) {
                    match f.severity {
                        Severity::Error => errors.push(error(f.location, f.message)),
                        Severity::Warning => warnings.push((f.location, f.message)),
                    }
                }
                if let Some(own) = &own
                    && let Some(message) = crds::differs_from_spec_crd(own, crd)
                {
                    errors.push(error(rule.spans.find("spec.crd"), message));
                }
            }
            Lookup::NoVersion {
                crd,
                origin,
                versions,
            } => {
                found = true;
                errors.push(error(
                    rule.spans.find("spec.parent.apiVersion"),
                    format!(
                        "CRD {crd} ({origin}) has no version {version:?} (it has: {}); use one \
                         of those in spec.parent.apiVersion or add the version to the CRD",
                        versions.join(", ")
                    ),
                ));
            }
            Lookup::None => {}
        }
    }
    if !found && schemas_given {
        writeln!(
            out,
            "note  {}: no CRD given for {}: its parent fields and status are not checked",
            r.path.display(),
            rule.parent_key()
        )?;
    }
    Ok((errors, warnings))
}

/// Runs `work` to completion on a small runtime of its own (`check` is synchronous).
fn block_on<T>(work: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Cluster(format!("cannot start the async runtime: {e}")))?
        .block_on(work)
}

async fn connect(args: &CheckArgs) -> Result<kube::Client, CliError> {
    crate::client::connect_to(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(|e| CliError::Cluster(e.to_string()))
}

/// The cluster's CRDs.
fn cluster_crds(args: &CheckArgs) -> Result<CrdSet, CliError> {
    block_on(async { Ok(super::crds::from_cluster(connect(args).await?).await?) })
}

/// The built-in kinds' schemas as the cluster serves them (`/openapi/v3`: every core and
/// group-version document; CRD kinds come from the CRDs).
async fn cluster_schemas(args: &CheckArgs) -> Result<KindSchemas, CliError> {
    let client = connect(args).await?;
    // The messages `check` has always given: the URL, or why no request could be built.
    let fetch_error = |e| match e {
        FetchError::Read { path, source } => CliError::Cluster(format!("GET {path}: {source}")),
        FetchError::Request { source, .. } => CliError::Cluster(source.to_string()),
        FetchError::Parse { path, source } => CliError::Cluster(format!("GET {path}: {source}")),
    };
    let index = openapi_fetch::get(&client, openapi_fetch::INDEX)
        .await
        .map_err(fetch_error)?;
    let mut documents = Vec::new();
    for (path, url) in openapi_fetch::published(&index) {
        if !(path.starts_with("api/") || path.starts_with("apis/")) {
            continue;
        }
        match openapi_fetch::get(&client, url).await {
            Ok(document) => documents.push(document),
            // Deleted between the index and this read (a CRD removed meanwhile: 404, or an
            // empty body): its kinds are gone too, so there is nothing to check against.
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(fetch_error(e)),
        }
    }
    Ok(KindSchemas::from_documents(
        &documents,
        "the cluster's OpenAPI schemas",
    ))
}

/// Whether a listed OpenAPI document no longer exists.
fn is_gone(e: &FetchError) -> bool {
    match e {
        FetchError::Read {
            source: kube::Error::Api(status),
            ..
        } => status.code == 404,
        FetchError::Parse { source, .. } => source.is_eof(),
        _ => false,
    }
}

/// Sorts the paths given into rule files, CRDs (from directories) and skipped files.
fn classify(paths: &[PathBuf]) -> Inputs {
    let mut inputs = Inputs::default();
    for path in paths {
        if !path.is_dir() {
            match objects(path) {
                Some((objects, source)) => inputs.errors.push(not_a_rule(path, &objects, &source)),
                None => inputs.rule_files.push(path.clone()),
            }
            continue;
        }
        let files = match ruleop_lang::load::rule_files(path) {
            Ok(files) => files,
            Err(e) => {
                inputs.errors.push(e);
                continue;
            }
        };
        let mut any_rule = false;
        for file in files {
            let Some((objects, _)) = objects(&file) else {
                any_rule = true;
                inputs.rule_files.push(file);
                continue;
            };
            let origin = file.display().to_string();
            let used: Vec<String> = objects
                .iter()
                .filter(|o| inputs.crds.add(o, &origin))
                .map(|o| ruleop_schema::meta::name(o).to_string())
                .collect();
            let note = if used.len() == objects.len() {
                format!(
                    "{origin}: CustomResourceDefinition {}: used as a parent schema, as with --crd",
                    used.join(", ")
                )
            } else {
                format!("{origin}: skipped, not a Rule ({})", describe(&objects))
            };
            inputs.notes.push(note);
        }
        if !any_rule {
            inputs.errors.push(RuleError {
                file: path.clone(),
                location: Location::default(),
                message: "no rule files here (*.yaml or *.yml with kind: Rule)".into(),
            });
        }
    }
    inputs
}

/// The Kubernetes objects in `file` and its text, if it holds some and no Rule; `None` for a
/// Rule or anything else (which the rule loader then reports).
fn objects(file: &Path) -> Option<(Vec<Json>, String)> {
    let source = std::fs::read_to_string(file).ok()?;
    let objects = ruleop_lang::manifests::read_objects(file).ok()?;
    let is_object = |o: &Json| {
        !ruleop_schema::meta::kind(o).is_empty() && !ruleop_schema::meta::api_version(o).is_empty()
    };
    let is_rule = |o: &Json| {
        ruleop_lang::load::is_rule_object(
            ruleop_schema::meta::api_version(o),
            ruleop_schema::meta::kind(o),
        )
    };
    if objects.is_empty() || !objects.iter().all(is_object) || objects.iter().any(is_rule) {
        return None;
    }
    Some((objects, source))
}

/// `a Memcached (cache.example.com/v1alpha1)`, `2 objects: ...`.
fn describe(objects: &[Json]) -> String {
    let one = |o: &Json| {
        format!(
            "a {} ({})",
            ruleop_schema::meta::kind(o),
            ruleop_schema::meta::api_version(o)
        )
    };
    match objects {
        [o] => one(o),
        _ => objects.iter().map(one).collect::<Vec<_>>().join(", "),
    }
}

/// The error for a file named on the command line that is not a Rule.
fn not_a_rule(path: &Path, objects: &[Json], source: &str) -> RuleError {
    let message = if objects.iter().all(crds::is_crd) {
        let names: Vec<&str> = objects.iter().map(ruleop_schema::meta::name).collect();
        format!(
            "not a Rule: this is a CustomResourceDefinition ({}); pass it with --crd",
            names.join(", ")
        )
    } else {
        format!(
            "not a Rule: this is {}; ruleop check takes Rule files (and CRDs with --crd)",
            describe(objects)
        )
    };
    RuleError {
        file: path.to_path_buf(),
        location: Spans::index(source).find("kind"),
        message,
    }
}

/// `FILE: rule NAME governs KIND (2 children, 1 related kind, 0 status fields[, finalizer])`.
fn summary(r: &LoadedRule) -> String {
    let spec = &r.rule.spec;
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}: rule {} governs {} ({}, {}, {}{})",
        r.path.display(),
        r.rule.name,
        r.rule.parent_key(),
        count(spec.children.len(), "child", "children"),
        count(spec.related.len(), "related kind", "related kinds"),
        count(spec.status.fields.len(), "status field", "status fields"),
        if r.rule.needs_finalizer() {
            ", finalizer"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use crate::controller::openapi_fetch::FetchError;

    #[test]
    fn a_document_deleted_after_the_index_was_read_is_gone_not_a_failure() {
        use kube::core::Status;
        let api = |code| FetchError::Read {
            path: "p".into(),
            source: kube::Error::Api(Box::new(Status::failure("x", "y").with_code(code))),
        };
        assert!(super::is_gone(&api(404)));
        assert!(!super::is_gone(&api(403)));
        let parse = |text| FetchError::Parse {
            path: "p".into(),
            source: serde_json::from_str::<serde_json::Value>(text).unwrap_err(),
        };
        assert!(super::is_gone(&parse("")));
        assert!(!super::is_gone(&parse("{]")));
    }

    use super::*;

    #[test]
    fn a_summary_counts_in_words_and_leaves_names_alone() {
        let source = include_str!("../../rules/memcached.yaml").replacen(
            "name: memcached",
            "name: childs",
            1,
        );
        let path = PathBuf::from("rules/memcached.yaml");
        let rule = ruleop_lang::load::parse_rule(&path, &source).unwrap();
        let loaded = LoadedRule {
            path,
            hash: String::new(),
            rule: std::sync::Arc::new(rule),
        };
        let line = summary(&loaded);
        assert!(
            line.starts_with("rules/memcached.yaml: rule childs governs "),
            "{line}"
        );
        let counts = line.split_once(" (").unwrap().1;
        assert!(
            counts.starts_with(&format!("{} children, ", loaded.rule.spec.children.len())),
            "{line}"
        );
    }
}
