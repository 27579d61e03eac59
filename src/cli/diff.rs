//! `ruleop diff`: plans every parent a rule governs against the cluster's objects, read
//! only (gets and lists), and prints what applying the rule would change.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value as Json;

use super::CliError;
use crate::cli::livediff::{self, ParentDiff};
use crate::controller::schemas::{ParentStatus, SchemaCache};
use ruleop_lang::rule::{CompiledRule, Scope, split_api_version};
use ruleop_plan::{self as plan, Action, Input};
use ruleop_schema::meta;

/// Options of `ruleop diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The rule file (the proposed version).
    #[arg(long)]
    pub rule: PathBuf,
    /// Only parents in these namespaces (repeatable; default: all).
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// A kind resolved through discovery.
#[derive(Clone)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
}

fn cluster_err(what: impl std::fmt::Display) -> CliError {
    CliError::Cluster(what.to_string())
}

struct Cluster {
    client: kube::Client,
    kinds: HashMap<(String, String), Kind>,
}

impl Cluster {
    async fn resolve(&mut self, api_version: &str, kind: &str) -> Result<Kind, CliError> {
        let (group, version) = split_api_version(api_version);
        let key = (group.to_string(), kind.to_string());
        if let Some(k) = self.kinds.get(&key) {
            return Ok(k.clone());
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| cluster_err(format!("{api_version}/{kind} is not served: {e}")))?;
        let k = Kind {
            resource,
            namespaced: caps.scope == kube::discovery::Scope::Namespaced,
        };
        self.kinds.insert(key, k.clone());
        Ok(k)
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if kind.namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &kind.resource)
            }
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// Objects of `kind` (in `namespace`, or everywhere) matching `labels`.
    async fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        labels: &str,
    ) -> Result<Vec<Json>, CliError> {
        let list = self
            .api(kind, namespace)
            .list(&ListParams::default().labels(labels))
            .await
            .map_err(|e| cluster_err(format!("cannot list {}: {e}", kind.resource.plural)))?;
        Ok(list.items.iter().map(|o| to_json(o, kind)).collect())
    }

    async fn get(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Json>, CliError> {
        let ns = (!namespace.is_empty()).then_some(namespace);
        self.api(kind, ns)
            .get_opt(name)
            .await
            .map(|o| o.map(|o| to_json(&o, kind)))
            .map_err(|e| cluster_err(format!("cannot get {} {name}: {e}", kind.resource.kind)))
    }
}

/// A listed object as JSON with its `apiVersion` and `kind` (lists leave them out).
fn to_json(obj: &DynamicObject, kind: &Kind) -> Json {
    let mut json = serde_json::to_value(obj).unwrap_or(Json::Null);
    json["apiVersion"] = Json::String(kind.resource.api_version.clone());
    json["kind"] = Json::String(kind.resource.kind.clone());
    json
}

fn selector_string(selector: &plan::Selector) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `ruleop diff`: prints per parent what the rule would change and a summary; true when
/// anything would change.
pub async fn diff(args: &DiffArgs, out: &mut impl Write) -> Result<bool, CliError> {
    let source = std::fs::read_to_string(&args.rule).map_err(|e| CliError::Input {
        path: args.rule.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let rule = ruleop_lang::load::parse_rule(&args.rule, &source).map_err(|errors| {
        for e in &errors {
            let _ = writeln!(std::io::stderr(), "error {e}");
        }
        CliError::InvalidRules(errors.len())
    })?;
    let client = crate::client::connect_to(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(cluster_err)?;
    let mut cluster = Cluster {
        client: client.clone(),
        kinds: HashMap::new(),
    };
    let spec = &rule.spec;
    let parent_kind = cluster
        .resolve(&spec.parent.api_version, &spec.parent.kind)
        .await?;
    let mut child_kinds: Vec<Kind> = Vec::new();
    let cleanup = spec.finalizer.iter().flat_map(|f| &f.cleanup);
    let wanted: Vec<(&str, &str)> = spec
        .children
        .iter()
        .map(|c| (c.api_version.as_str(), c.kind.as_str()))
        .chain(cleanup.map(|c| (c.api_version.as_str(), c.kind.as_str())))
        .collect();
    for (api_version, kind) in wanted {
        let k = cluster.resolve(api_version, kind).await?;
        if !child_kinds.iter().any(|c| c.resource == k.resource) {
            child_kinds.push(k);
        }
    }
    let mut related_kinds = Vec::new();
    for r in &spec.related {
        related_kinds.push(cluster.resolve(&r.api_version, &r.kind).await?);
    }
    // The same schemas as the controller, so "update" verdicts match its own.
    let schemas = SchemaCache::new(client)
        .for_children(
            &rule.name,
            child_kinds.iter().map(|k| k.resource.clone()).collect(),
            Some(ParentStatus::of(&rule, parent_kind.resource.clone())),
        )
        .await
        .current();

    let scopes: Vec<Option<&str>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut parents = Vec::new();
    for ns in &scopes {
        parents.extend(cluster.list(&parent_kind, *ns, "").await?);
    }
    parents.sort_by(|a, b| {
        (meta::namespace(a), meta::name(a)).cmp(&(meta::namespace(b), meta::name(b)))
    });
    if spec.rollout.is_staged() {
        // Only the first step's parents change when the rule is loaded: show those.
        let first = livediff::first_step(&spec.rollout, &parents);
        writeln!(
            out,
            "staged rollout: the first step moves {} of {} parents (the others stay on their revision until it is Ready):",
            first.len(),
            parents.len()
        )?;
        parents.retain(|p| first.contains(&livediff::parent_key(p)));
    }
    // ruleop's children anywhere (a cluster-scoped parent's may be in any namespace), by
    // the owner label the controller indexes them by.
    let managed = format!("{}={}", meta::MANAGED_BY_LABEL, meta::MANAGED_BY);
    let child_scopes = if spec.parent.scope == Scope::Cluster {
        vec![None]
    } else {
        scopes.clone()
    };
    let mut owned: HashMap<String, Vec<Json>> = HashMap::new();
    for kind in &child_kinds {
        for ns in &child_scopes {
            for obj in cluster.list(kind, *ns, &managed).await? {
                if let Some(owner) = meta::label(&obj, meta::OWNER_LABEL) {
                    owned.entry(owner.to_string()).or_default().push(obj);
                }
            }
        }
    }

    let now = Timestamp::now();
    let mut diffs: Vec<ParentDiff> = Vec::new();
    for parent in &parents {
        let mut observed = owned.remove(meta::uid(parent)).unwrap_or_default();
        if !spec.related.is_empty() {
            let selectors = plan::related_selectors(&rule, parent, now).unwrap_or_default();
            let namespace =
                (spec.parent.scope == Scope::Namespaced).then(|| meta::namespace(parent));
            for (kind, selector) in related_kinds.iter().zip(&selectors) {
                observed.extend(
                    cluster
                        .list(kind, namespace, &selector_string(selector))
                        .await?,
                );
            }
        }
        let plan = plan_parent(&rule, &cluster, parent, &mut observed, now, &schemas).await?;
        let d = livediff::diff(parent, &observed, &plan);
        let conflicts = d
            .children
            .iter()
            .any(|c| matches!(c, livediff::ChildChange::Conflict(_)));
        if d.changes() || conflicts || d.failure.is_some() {
            write!(out, "{}", livediff::render(&d))?;
        }
        diffs.push(d);
    }
    writeln!(out, "{}", livediff::summary(&diffs, parents.len()))?;
    Ok(diffs.iter().any(ParentDiff::changes))
}

/// Plans `parent`; when the plan would create a child, looks the name up first, as the
/// controller's caches would show an object of that name that ruleop does not manage
/// (a conflict, not a create), and plans again with it.
async fn plan_parent(
    rule: &CompiledRule,
    cluster: &Cluster,
    parent: &Json,
    observed: &mut Vec<Json>,
    now: Timestamp,
    schemas: &ruleop_schema::openapi::Schemas,
) -> Result<plan::Plan, CliError> {
    let plan_now = |observed: &[Json]| {
        plan::plan(
            rule,
            Input {
                parent,
                observed,
                now,
                schemas: Some(schemas),
            },
        )
    };
    let first = plan_now(observed);
    let mut found = false;
    for d in first.apply.iter().filter(|d| d.action == Action::Create) {
        let (group, _) = split_api_version(meta::api_version(&d.object));
        let Some(kind) = cluster
            .kinds
            .get(&(group.to_string(), meta::kind(&d.object).to_string()))
        else {
            continue;
        };
        if let Some(obj) = cluster
            .get(kind, meta::namespace(&d.object), meta::name(&d.object))
            .await?
        {
            observed.push(obj);
            found = true;
        }
    }
    Ok(if found { plan_now(observed) } else { first })
}
