//! The rule file format (`ruleop.dev/v1alpha1`, `kind: Rule`): types, loading and compilation.
//!
//! A rule maps one parent kind to templated children, observed related objects, a status
//! projection and optional cleanup. The types here are the schema users write; `compile`
//! turns a parsed file into a [`CompiledRule`] that the planner evaluates.

mod compile;
mod compile_language;
mod compiled;
pub mod crd_spec;
mod decorations;
mod language;
mod locate;
mod reads;
mod same_names;
mod scope;
mod selector;
mod service_account;
mod staging;
mod validation;

pub use crate::template::Limits;
pub use compile::{CompiledRule, compile};
pub use compile_language::ON_FAILURE_PATH;
pub use compiled::{
    ChildTemplates, CleanupTemplates, Compiled, ConditionTemplates, ForEachTemplates, LookupNames,
    LookupTemplates, ReplicasTemplates, ValidateTemplates,
};
pub use crd_spec::CrdSpec;
pub use decorations::{Decoration, DecorationTarget, DecorationTemplates};
pub use language::{
    Definitions, FailureFields, ForEach, Lookup, NamedValue, ReplicaDeletion, Rollout,
};
pub use locate::{Location, Spans};
pub use reads::Reads;
pub use ruleop_schema::kinds::builtin_cluster_scoped;
pub use ruleop_schema::meta::split_api_version;
pub use scope::known_scope;
pub use selector::{AnnotationSelector, LabelSelector, Operator, Requirement};
pub use service_account::{ServiceAccount, ServiceAccountRef};
pub use staging::{MaxFailures, StagingPolicy, StagingSelector, StagingStep, StagingStrategy};
pub use validation::{CelValidation, Validation};

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `apiVersion` a rule file may declare.
pub const RULE_API_VERSION: &str = "ruleop.dev/v1alpha1";
/// The only `kind` a rule file may declare.
pub const RULE_KIND: &str = "Rule";

/// A rule file: one parent kind and everything ruleop does for each of its objects.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "ruleop Rule")]
pub struct RuleFile {
    /// Always `ruleop.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Rule`.
    pub kind: String,
    /// The rule's name; it labels every child the rule creates.
    pub metadata: RuleMeta,
    /// What the rule does.
    pub spec: RuleSpec,
}

/// Rule metadata.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleMeta {
    /// A DNS label (lowercase letters, digits, `-`), unique among loaded rules.
    pub name: String,
}

/// The body of a rule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    /// The kind this rule governs. One rule per parent kind.
    pub parent: ParentRef,
    /// The kinds this rule may create. Every child and cleanup step must use one of them.
    #[serde(default)]
    pub allow: Vec<AllowedKind>,
    /// Checks on the parent. A failing check sets `Ready=False` and the plan is empty.
    #[serde(default)]
    pub validate: Vec<Validation>,
    /// Objects rendered for each parent, owned by it.
    #[serde(default)]
    pub children: Vec<Child>,
    /// Objects observed (never written) for use in templates and status, selected by labels.
    #[serde(default)]
    pub related: Vec<Related>,
    /// Objects read by kind and name (never written), e.g. a Secret the parent names.
    #[serde(default)]
    pub lookups: Vec<Lookup>,
    /// Labels and annotations set on objects the rule does not own (never other fields).
    /// Declaring any adds a finalizer to parents, which removes them.
    #[serde(default)]
    pub decorations: Vec<Decoration>,
    /// Values and macros shared by every template, expression and status field.
    #[serde(default)]
    pub definitions: Definitions,
    /// What is written to the parent's status subresource.
    #[serde(default)]
    pub status: StatusSpec,
    /// Cleanup run before the parent goes away. Declaring it adds a finalizer to parents.
    #[serde(default)]
    pub finalizer: Option<FinalizerSpec>,
    /// Reconcile every parent at least this often, e.g. `30s`, `5m`, `1h`.
    #[serde(default)]
    pub resync: Option<String>,
    /// What happens to children when this rule is removed from the rule set.
    #[serde(default)]
    pub on_rule_removal: RemovalPolicy,
    /// Sandbox limits for this rule's templates.
    #[serde(default)]
    pub limits: Limits,
    /// The parent's spec in short, to generate its CRD (`ruleop crd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crd: Option<CrdSpec>,
    /// How a change of this rule reaches its parents: `Immediate` (default) or `Staged`.
    #[serde(default, skip_serializing_if = "StagingPolicy::is_default")]
    pub rollout: StagingPolicy,
    /// The ServiceAccount this rule's writes impersonate (default: the operator's own identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,
}

/// The parent kind.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParentRef {
    /// `group/version` of the parent, e.g. `cache.example.com/v1alpha1`.
    pub api_version: String,
    /// The parent's kind, e.g. `Memcached`.
    pub kind: String,
    /// `Namespaced` (default) or `Cluster`.
    #[serde(default)]
    pub scope: Scope,
    /// Only parents whose labels match are governed (a Kubernetes label selector); others
    /// get no finalizer, condition or child. A parent that stops matching is released
    /// (`spec.onRuleRemoval` says what happens to its children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Only parents whose annotations match are governed, e.g. `matchExpressions: [{key:
    /// service-per-pod-label, operator: Exists}]`; as `selector`, over annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<AnnotationSelector>,
    /// What happens to the children of a parent that stops matching the selectors:
    /// `KeepChildren` (default) or `DeleteChildren`. Either way ruleop's finalizer and
    /// condition are removed from it.
    #[serde(default, skip_serializing_if = "RemovalPolicy::is_default")]
    pub on_release: RemovalPolicy,
}

/// Whether a kind lives in namespaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Scope {
    /// Objects live in a namespace.
    #[default]
    Namespaced,
    /// Objects are cluster-wide.
    Cluster,
}

/// One kind the rule may create.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllowedKind {
    /// `group/version` (or `v1` for the core group).
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Children of this kind may name a namespace other than the parent's. Only a
    /// cluster-scoped parent can use it: Kubernetes cannot garbage-collect a namespaced
    /// child of a parent in another namespace.
    #[serde(default)]
    pub cross_namespace: bool,
    /// Whether objects of this kind are `Namespaced` or `Cluster`-scoped. Built-in kinds are
    /// known (a `Namespace` or `ClusterRole` is cluster-scoped); other kinds are namespaced
    /// unless declared here. The controller checks it against the cluster's discovery.
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// A child object rendered for each parent.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Child {
    /// The child's id within the rule (`children.<name>` in templates and status).
    pub name: String,
    /// `group/version` of the child; the template may omit `apiVersion`.
    pub api_version: String,
    /// Kind of the child; the template may omit `kind`.
    pub kind: String,
    /// A minijinja expression; the child exists only while it is true.
    #[serde(default)]
    pub when: Option<String>,
    /// A minijinja template rendering one manifest. Interpolated values are inserted as
    /// YAML values, never as YAML text, so they cannot change the manifest's structure.
    pub template: String,
    /// Render several copies of this child, scaled one step at a time.
    #[serde(default)]
    pub replicas: Option<Replicas>,
    /// Render one copy per item of a list (a collection), named from the item.
    #[serde(default)]
    pub for_each: Option<ForEach>,
    /// An expression over `child` that says the child is ready (default: its `Ready`
    /// condition is `True`, or it is a Pod in phase `Running`, or it has no readiness signal).
    #[serde(default)]
    pub ready: Option<String>,
    /// `Delete` (default): the parent owns the child and deletion cascades.
    /// `Retain`: no ownerReference; the child outlives the parent and is never pruned.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Apply` (default): server-side apply in place. `Recreate`: delete and create again
    /// when the rendered object changes (for objects with immutable fields, such as Jobs).
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    /// Dotted field paths ruleop neither sets nor corrects (e.g. `spec.replicas` under an HPA).
    #[serde(default)]
    pub managed_elsewhere: Vec<String>,
}

/// How a replicated child is counted, named and stepped.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replicas {
    /// A minijinja expression for the desired count, e.g. `parent.spec.replicas`.
    pub count: String,
    /// `Generated` (`<prefix><5 chars>`, default) or `Ordinal` (`<prefix>-<index>`).
    #[serde(default)]
    pub naming: Naming,
    /// A minijinja expression for the name prefix (default: `parent.metadata.name ~ "-" ~ <child name>`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// How many replicas change per reconcile.
    #[serde(default)]
    pub policy: StepPolicy,
    /// How replicas whose rendering changed are replaced.
    #[serde(default)]
    pub rollout: Rollout,
}

/// Names of replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Naming {
    /// `<prefix><suffix>`, the suffix derived from the parent's uid and the replica's sequence.
    #[default]
    Generated,
    /// `<prefix>-<index>`, the lowest free index first.
    Ordinal,
}

/// How fast replicas change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum StepPolicy {
    /// One replica created or deleted per step; the next step waits until the last one is
    /// observed (created replica seen, deleted replica gone).
    #[default]
    OneAtATime,
    /// Every missing replica is created and every extra one deleted at once.
    AllAtOnce,
    /// Like `OneAtATime`, and a new replica also waits for all existing ones to be ready.
    Ordered,
}

/// What happens to a child when its parent is deleted or the child is no longer rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Owned by the parent: pruned when no longer rendered, garbage-collected with the parent.
    #[default]
    Delete,
    /// Not owned: left in place.
    Retain,
}

/// How a changed child is updated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum UpdateStrategy {
    /// Server-side apply.
    #[default]
    Apply,
    /// Delete, then create with the new content.
    Recreate,
}

/// What happens to a removed rule's children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum RemovalPolicy {
    /// Children stay; ruleop only removes its finalizer from the parents.
    #[default]
    KeepChildren,
    /// Children are deleted too.
    DeleteChildren,
}

/// Objects observed but not owned.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Related {
    /// The id (`related.<name>` in templates and status).
    pub name: String,
    /// `group/version` of the objects.
    pub api_version: String,
    /// Kind of the objects.
    pub kind: String,
    /// Label selector (`matchLabels`); values are templates, e.g. `"{{ parent.metadata.name }}"`.
    pub selector: BTreeMap<String, String>,
}

/// The status written to the parent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusSpec {
    /// Status fields, each a JSONPath or an expression.
    #[serde(default)]
    pub fields: BTreeMap<String, Projection>,
    /// When the parent is `Ready` (default: every rendered child exists and is ready).
    #[serde(default)]
    pub ready: Option<ConditionRule>,
    /// Further conditions.
    #[serde(default)]
    pub conditions: Vec<DeclaredCondition>,
    /// Status fields written when the plan fails (validation, missing lookup, render
    /// error), over the context plus `failure` (`reason`, `message`), e.g.
    /// `phase: {expr: "'Error'"}`. They are merged over the fields already in the status.
    #[serde(default)]
    pub on_failure: FailureFields,
}

/// One status field.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Projection {
    /// A JSONPath over `{parent, children, related}`, e.g.
    /// `$.related.pods[*].metadata.name`. A path with wildcards, filters, slices or
    /// `..` yields a list; otherwise the single value.
    #[serde(default)]
    pub path: Option<String>,
    /// A minijinja expression (instead of `path`).
    #[serde(default)]
    pub expr: Option<String>,
    /// Sort a list result.
    #[serde(default)]
    pub sort: bool,
    /// The value when nothing matches (default: the field is omitted; `[]` for list paths).
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// When a condition holds.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConditionRule {
    /// A minijinja expression; `True` when it is true.
    pub when: String,
    /// The reason when true (default: the condition type).
    #[serde(default)]
    pub reason: Option<String>,
    /// The reason when false (default: `Not<type>`).
    #[serde(default)]
    pub false_reason: Option<String>,
    /// A message template.
    #[serde(default)]
    pub message: Option<String>,
}

/// A condition the rule declares beside `Ready`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeclaredCondition {
    /// The condition type, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A minijinja expression; `True` when it is true.
    pub when: String,
    /// The reason when true (default: the condition type).
    #[serde(default)]
    pub reason: Option<String>,
    /// The reason when false (default: `Not<type>`).
    #[serde(default)]
    pub false_reason: Option<String>,
    /// A message template.
    #[serde(default)]
    pub message: Option<String>,
}

/// Cleanup before the parent goes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FinalizerSpec {
    /// Objects created in order on deletion, each waited for before the next.
    #[serde(default)]
    pub cleanup: Vec<CleanupStep>,
    /// Children (by name) deleted in this order, each gone before the next; the rest
    /// are left to garbage collection.
    #[serde(default)]
    pub delete_order: Vec<String>,
    /// How a replicated child in `deleteOrder` is deleted.
    #[serde(default)]
    pub delete_replicas: ReplicaDeletion,
}

/// One cleanup step: an object to create and wait for.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CleanupStep {
    /// The step's id.
    pub name: String,
    /// `group/version` of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// A template rendering the object.
    pub template: String,
    /// An expression over `child` saying the step is done, e.g. `child.status.succeeded >= 1`.
    pub until: String,
    /// Give up waiting after this long (from the object's creation) and go on with a
    /// Warning event, e.g. `10m`. Default: wait forever.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// Parses durations such as `30s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
    }
    if !digits.is_empty() || total == 0 {
        return None;
    }
    Some(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30s"),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("1h30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("0s"), None);
    }

    #[test]
    fn api_versions() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
