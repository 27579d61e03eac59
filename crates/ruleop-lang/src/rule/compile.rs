//! Compiles a parsed rule file: checks it, compiles every template, expression and JSONPath
//! once, and reports all problems at once with their positions.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;

use super::compiled::{
    ChildTemplates, CleanupTemplates, Compiled, ConditionTemplates, Draft, optional,
};
use super::{
    Location, RULE_API_VERSION, RULE_KIND, RuleFile, RuleSpec, Scope, Spans, known_scope,
    parse_duration,
};
use crate::template::{
    self, BUDGET_PER_OUTPUT_BYTE, ExprId, Handle, TemplateError, TemplateId, Templates,
};

/// A rule ready to plan with: its spec plus compiled templates, expressions and paths.
///
/// Templates are held by handles in [`Compiled`]; each is named by the YAML path of its source
/// (`spec.children[0].template`), so any evaluation error can be traced back to a file position.
#[derive(Debug)]
pub struct CompiledRule {
    /// `metadata.name`.
    pub name: String,
    /// The rule as written.
    pub spec: RuleSpec,
    /// The file it came from (for error messages).
    pub path: PathBuf,
    /// Positions of the file's nodes.
    pub spans: Spans,
    /// Compiled templates and expressions.
    pub templates: Templates,
    /// The handle of each compiled template and expression, in the shape of the spec.
    pub compiled: Compiled,
    /// Compiled JSONPath of each status field that has one.
    pub paths: HashMap<String, JpQuery>,
    /// `spec.resync`, parsed.
    pub resync: Option<Duration>,
    /// `spec.finalizer.cleanup[i].timeout`, parsed.
    pub cleanup_timeouts: Vec<Option<Duration>>,
    /// What `ruleop check` warns about: valid, but likely to fail or cost much at run time.
    pub warnings: Vec<(Location, String)>,
}

impl CompiledRule {
    /// The status field names the rule writes (`status.fields` and `status.onFailure`).
    pub fn status_fields(&self) -> impl Iterator<Item = &str> {
        let status = &self.spec.status;
        status
            .fields
            .keys()
            .chain(status.on_failure.keys())
            .map(String::as_str)
    }

    /// `Kind.group` of the parent (`Kind` for the core group), unique per rule set.
    pub fn parent_key(&self) -> String {
        let (group, _) = super::split_api_version(&self.spec.parent.api_version);
        if group.is_empty() {
            self.spec.parent.kind.clone()
        } else {
            format!("{}.{group}", self.spec.parent.kind)
        }
    }

    /// Whether parents of this rule carry ruleop's finalizer.
    pub fn needs_finalizer(&self) -> bool {
        self.spec.finalizer.is_some() || !self.spec.decorations.is_empty()
    }

    /// `file:line:col` of the template or expression registered as `name`, refined by the
    /// template's own line when the error carries one.
    pub fn locate(&self, name: &str, err: Option<&TemplateError>) -> String {
        let location = match err.and_then(TemplateError::template_line) {
            Some(line) if name.ends_with("template") || name.ends_with("message") => {
                self.spans.line_in(name, line)
            }
            _ => self.spans.find(name),
        };
        format!("{}:{location}", self.path.display())
    }

    /// [`Self::locate`] of the compiled template or expression `id`.
    pub fn locate_handle(&self, id: impl Handle, err: Option<&TemplateError>) -> String {
        self.locate(self.templates.name(id), err)
    }
}

pub(super) struct Checker<'a> {
    spans: &'a Spans,
    errors: Vec<(Location, String)>,
    warnings: Vec<(Location, String)>,
    pub(super) templates: Templates,
    /// The handles compiled so far.
    pub(super) draft: Draft,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push((self.spans.find(path), message.into()));
    }

    /// An error at `location` (a line inside a template: [`Spans::line_in`]).
    pub(super) fn error_at(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push((location, message.into()));
    }

    pub(super) fn spans(&self) -> &Spans {
        self.spans
    }

    pub(super) fn template(&mut self, path: &str, source: &str) -> Option<TemplateId> {
        let id = match self.templates.add_template(path, source) {
            Ok(id) => id,
            Err(e) => {
                let location = match e.template_line() {
                    Some(line) => self.spans.line_in(path, line),
                    None => self.spans.find(path),
                };
                self.errors
                    .push((location, format!("template does not compile: {e}")));
                return None;
            }
        };
        for (line, message) in template::lint(source) {
            self.warnings
                .push((self.spans.line_in(path, line), message));
        }
        for u in crate::template::names::unknown_names(&self.templates, path) {
            let location = self.spans.line_in(path, u.line);
            self.errors.push((location, u.message));
        }
        Some(id)
    }

    pub(super) fn expression(&mut self, path: &str, source: &str) -> Option<ExprId> {
        let id = match self.templates.add_expression(path, source) {
            Ok(id) => id,
            Err(e) => {
                self.error(path, format!("expression does not compile: {e}"));
                return None;
            }
        };
        for u in crate::template::names::unknown_names(&self.templates, path) {
            self.error(path, u.message);
        }
        Some(id)
    }

    fn duration(&mut self, path: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.error(
                path,
                format!("invalid duration {text:?} (use e.g. 30s, 5m, 1h)"),
            );
        }
        parsed
    }

    pub(super) fn name(&mut self, path: &str, name: &str, seen: &mut BTreeSet<String>) {
        if !is_dns_label(name) {
            self.error(
                path,
                format!("{name:?} is not a DNS label (lowercase letters, digits and '-')"),
            );
        }
        if !seen.insert(name.to_string()) {
            self.error(path, format!("duplicate name {name:?}"));
        }
    }
}

/// Condenses a parser's multi-line report (`--> 1:16`, a caret drawing, `= expected x`)
/// into one line, so each error stays one line of `ruleop check` output.
pub(super) fn one_line(report: &str) -> String {
    let column = report
        .split("-->")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pos| pos.split(':').nth(1));
    let expected = report.lines().find_map(|l| l.trim().strip_prefix("= "));
    match (column, expected) {
        (Some(col), Some(what)) => format!("at character {col}: {what}"),
        _ => report.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Scope rules: a declared scope agrees with what is known of built-in kinds,
/// `crossNamespace` only for namespaced kinds of cluster-scoped parents, and no
/// cluster-scoped child of a namespaced parent (Kubernetes garbage collection does not let a
/// namespaced owner own a cluster-scoped object).
fn check_scopes(c: &mut Checker<'_>, spec: &RuleSpec) {
    let parent = &spec.parent;
    if known_scope(&parent.api_version, &parent.kind) == Some(Scope::Cluster)
        && parent.scope == Scope::Namespaced
    {
        c.error(
            "spec.parent",
            format!(
                "{}/{} is cluster-scoped: set spec.parent.scope: Cluster",
                parent.api_version, parent.kind
            ),
        );
    }
    for (i, allowed) in spec.allow.iter().enumerate() {
        let what = format!("{}/{}", allowed.api_version, allowed.kind);
        if let (Some(declared), Some(known)) = (
            allowed.scope,
            known_scope(&allowed.api_version, &allowed.kind),
        ) && declared != known
        {
            c.error(
                &format!("spec.allow[{i}].scope"),
                format!("{what} is {known:?}-scoped, not {declared:?}"),
            );
        }
        let scope = allowed
            .scope
            .or_else(|| known_scope(&allowed.api_version, &allowed.kind))
            .unwrap_or_default();
        if allowed.cross_namespace && scope == Scope::Cluster {
            c.error(
                &format!("spec.allow[{i}].crossNamespace"),
                format!("{what} is cluster-scoped: its objects have no namespace"),
            );
        } else if allowed.cross_namespace && parent.scope == Scope::Namespaced {
            c.error(
                &format!("spec.allow[{i}].crossNamespace"),
                "crossNamespace needs a cluster-scoped parent: Kubernetes cannot garbage-collect a child in another namespace than its parent",
            );
        }
    }
    if parent.scope == Scope::Cluster {
        return;
    }
    let kinds = spec
        .children
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.children[{i}].kind"), &c.api_version, &c.kind))
        .chain(spec.finalizer.iter().flat_map(|f| {
            f.cleanup.iter().enumerate().map(|(i, s)| {
                (
                    format!("spec.finalizer.cleanup[{i}].kind"),
                    &s.api_version,
                    &s.kind,
                )
            })
        }));
    for (path, api_version, kind) in kinds {
        let declared = spec
            .allow
            .iter()
            .find(|a| &a.api_version == api_version && &a.kind == kind)
            .and_then(|a| a.scope);
        if declared.or_else(|| known_scope(api_version, kind)) == Some(Scope::Cluster) {
            c.error(
                &path,
                format!(
                    "{api_version}/{kind} is cluster-scoped and the parent {}/{} is namespaced: \
                     Kubernetes does not let a namespaced object own a cluster-scoped one \
                     (only a cluster-scoped parent, spec.parent.scope: Cluster, can have this child)",
                    parent.api_version, parent.kind
                ),
            );
        }
    }
}

/// Checks and compiles `file`; errors carry their positions from `spans`.
pub fn compile(
    file: RuleFile,
    spans: &Spans,
    path: PathBuf,
) -> Result<CompiledRule, Vec<(Location, String)>> {
    let spec = file.spec;
    let mut c = Checker {
        spans,
        errors: Vec::new(),
        warnings: Vec::new(),
        templates: Templates::new(&spec.limits),
        draft: Draft::new(),
    };
    limit_warnings(&mut c, &spec.limits);
    if file.api_version != RULE_API_VERSION {
        c.error(
            "apiVersion",
            format!(
                "apiVersion must be {RULE_API_VERSION}, got {:?}",
                file.api_version
            ),
        );
    }
    if file.kind != RULE_KIND {
        c.error(
            "kind",
            format!("kind must be {RULE_KIND}, got {:?}", file.kind),
        );
    }
    if !is_dns_label(&file.metadata.name) {
        c.error(
            "metadata.name",
            format!("{:?} is not a DNS label", file.metadata.name),
        );
    }
    // Macros first: every template and expression compiled after them can call them.
    super::compile_language::definitions(&mut c, &spec);
    let (_, version) = super::split_api_version(&spec.parent.api_version);
    if version.is_empty() || spec.parent.kind.is_empty() {
        c.error(
            "spec.parent",
            "parent needs apiVersion (group/version) and kind",
        );
    }

    check_scopes(&mut c, &spec);
    super::selector::check(&mut c, &spec.parent);
    let allowed = |api_version: &str, kind: &str| {
        spec.allow
            .iter()
            .any(|a| a.api_version == api_version && a.kind == kind)
    };
    let allowed_list = || {
        spec.allow
            .iter()
            .map(|a| format!("{}/{}", a.api_version, a.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };

    super::validation::compile(&mut c, &spec);

    let mut child_names = BTreeSet::new();
    for (i, child) in spec.children.iter().enumerate() {
        let base = format!("spec.children[{i}]");
        c.name(&format!("{base}.name"), &child.name, &mut child_names);
        if !allowed(&child.api_version, &child.kind) {
            c.error(
                &format!("{base}.kind"),
                format!(
                    "child kind {}/{} is not in spec.allow (allowed: {})",
                    child.api_version,
                    child.kind,
                    allowed_list()
                ),
            );
        }
        let template = c.template(&format!("{base}.template"), &child.template);
        let when = optional(child.when.as_deref(), |when| {
            c.expression(&format!("{base}.when"), when)
        });
        let ready = optional(child.ready.as_deref(), |ready| {
            c.expression(&format!("{base}.ready"), ready)
        });
        let for_each = super::compile_language::for_each(&mut c, &base, child);
        let replicas = super::compile_language::replicas(&mut c, &base, child);
        let compiled = (|| {
            Some(ChildTemplates {
                template: template?,
                when: when?,
                ready: ready?,
                for_each: for_each?,
                replicas: replicas?,
            })
        })();
        c.draft.children.push(compiled);
        for (j, field) in child.managed_elsewhere.iter().enumerate() {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                c.error(
                    &format!("{base}.managedElsewhere[{j}]"),
                    format!("invalid field path {field:?}"),
                );
            }
            if [
                "apiVersion",
                "kind",
                "metadata",
                "metadata.name",
                "metadata.namespace",
            ]
            .contains(&field.as_str())
            {
                c.error(
                    &format!("{base}.managedElsewhere[{j}]"),
                    format!("{field} cannot be managed elsewhere"),
                );
            }
        }
    }

    let mut related_names = BTreeSet::new();
    for (i, related) in spec.related.iter().enumerate() {
        let base = format!("spec.related[{i}]");
        c.name(&format!("{base}.name"), &related.name, &mut related_names);
        if related.selector.is_empty() {
            c.error(
                &format!("{base}.selector"),
                "a related selector needs at least one label",
            );
        }
        let selector: Vec<_> = related
            .selector
            .iter()
            .map(|(key, value)| {
                let id = c.template(&format!("{base}.selector.{key}"), value);
                id.map(|id| (key.clone(), id))
            })
            .collect();
        c.draft
            .related
            .push(selector.into_iter().collect::<Option<_>>());
    }

    super::compile_language::lookups(&mut c, &spec, &related_names);
    super::decorations::compile(&mut c, &spec);

    let mut paths = HashMap::new();
    for (name, projection) in &spec.status.fields {
        let base = format!("spec.status.fields.{name}");
        if ["conditions", "observedGeneration"].contains(&name.as_str()) {
            c.error(&base, format!("status.{name} is written by ruleop itself"));
        }
        match (&projection.path, &projection.expr) {
            (Some(p), None) => match parse_json_path(p) {
                Ok(query) => {
                    paths.insert(name.clone(), query);
                }
                Err(e) => c.error(
                    &format!("{base}.path"),
                    format!("invalid JSONPath {p:?}: {}", one_line(&e.to_string())),
                ),
            },
            (None, Some(e)) => {
                if let Some(id) = c.expression(&format!("{base}.expr"), e) {
                    c.draft.status_fields.insert(name.clone(), id);
                }
            }
            _ => c.error(&base, "a status field needs exactly one of path or expr"),
        }
    }
    super::compile_language::on_failure(&mut c, &spec, &mut paths);
    if let Some(ready) = &spec.status.ready {
        let when = c.expression("spec.status.ready.when", &ready.when);
        let message = optional(ready.message.as_deref(), |m| {
            c.template("spec.status.ready.message", m)
        });
        c.draft.ready = condition(when, message).map(Some);
    }
    let mut condition_types = BTreeSet::new();
    for (i, cond) in spec.status.conditions.iter().enumerate() {
        let base = format!("spec.status.conditions[{i}]");
        if cond.type_ == "Ready" {
            c.error(&format!("{base}.type"), "declare Ready under status.ready");
        }
        if !condition_types.insert(cond.type_.clone()) {
            c.error(
                &format!("{base}.type"),
                format!("duplicate condition type {:?}", cond.type_),
            );
        }
        let when = c.expression(&format!("{base}.when"), &cond.when);
        let message = optional(cond.message.as_deref(), |m| {
            c.template(&format!("{base}.message"), m)
        });
        c.draft.conditions.push(condition(when, message));
    }

    let mut cleanup_timeouts = Vec::new();
    if let Some(fin) = &spec.finalizer {
        let mut step_names = BTreeSet::new();
        for (i, step) in fin.cleanup.iter().enumerate() {
            let base = format!("spec.finalizer.cleanup[{i}]");
            c.name(&format!("{base}.name"), &step.name, &mut step_names);
            if child_names.contains(&step.name) {
                c.error(
                    &format!("{base}.name"),
                    format!("cleanup step {:?} has the name of a child", step.name),
                );
            }
            if !allowed(&step.api_version, &step.kind) {
                c.error(
                    &format!("{base}.kind"),
                    format!(
                        "cleanup kind {}/{} is not in spec.allow (allowed: {})",
                        step.api_version,
                        step.kind,
                        allowed_list()
                    ),
                );
            }
            let template = c.template(&format!("{base}.template"), &step.template);
            let until = c.expression(&format!("{base}.until"), &step.until);
            let compiled = template.zip(until);
            c.draft
                .cleanup
                .push(compiled.map(|(template, until)| CleanupTemplates { template, until }));
            cleanup_timeouts.push(c.duration(&format!("{base}.timeout"), step.timeout.as_deref()));
        }
        for (i, name) in fin.delete_order.iter().enumerate() {
            if !child_names.contains(name) {
                c.error(
                    &format!("spec.finalizer.deleteOrder[{i}]"),
                    format!("no child named {name:?}"),
                );
            }
        }
    }
    super::same_names::check(&mut c, &spec);
    super::staging::check(&mut c, &spec);
    super::service_account::check(&mut c, &spec);
    let resync = c.duration("spec.resync", spec.resync.as_deref());

    if !c.errors.is_empty() {
        c.errors.sort_by_key(|(l, _)| (l.line, l.column));
        return Err(c.errors);
    }
    let Some(compiled) = c.draft.finish() else {
        // Every template that failed to compile reported an error above.
        let location = spans.find("spec");
        return Err(vec![(location, "a template failed to compile".into())]);
    };
    let rule = CompiledRule {
        name: file.metadata.name,
        spec,
        path,
        spans: spans.clone(),
        templates: c.templates,
        compiled,
        paths,
        resync,
        cleanup_timeouts,
        warnings: c.warnings,
    };
    Ok(rule)
}

/// A condition's handles, when both compiled.
fn condition(
    when: Option<ExprId>,
    message: Option<Option<TemplateId>>,
) -> Option<ConditionTemplates> {
    Some(ConditionTemplates {
        when: when?,
        message: message?,
    })
}

/// Above these, one render can hold a core or a large share of the operator's memory.
const FUEL_WARNING: u64 = 10_000_000;
const OUTPUT_WARNING: usize = 4 << 20;

fn limit_warnings(c: &mut Checker<'_>, limits: &super::Limits) {
    if limits.fuel > FUEL_WARNING {
        let location = c.spans.find("spec.limits.fuel");
        c.warnings.push((
            location,
            format!(
                "fuel {} lets one render run for seconds before it is stopped",
                limits.fuel
            ),
        ));
    }
    if limits.max_output_bytes > OUTPUT_WARNING {
        let location = c.spans.find("spec.limits.maxOutputBytes");
        c.warnings.push((
            location,
            format!(
                "maxOutputBytes {} lets each render build up to {} MiB of values ({BUDGET_PER_OUTPUT_BYTE} × maxOutputBytes), and renders run in parallel",
                limits.max_output_bytes,
                limits.max_output_bytes.saturating_mul(BUDGET_PER_OUTPUT_BYTE) >> 20
            ),
        ));
    }
}
