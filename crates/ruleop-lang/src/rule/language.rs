//! Rule-format types of the language features: shared definitions, collections (`forEach`),
//! lookups by name (one or a list), replica rollouts and status fields written on failure.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Projection;

/// Values and macros defined once and usable in every template, expression and status field.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Definitions {
    /// Named expressions evaluated once per reconcile, in order (each may use the ones
    /// before it), available as `values.<name>`.
    #[serde(default)]
    pub values: Vec<NamedValue>,
    /// A template of `{% macro %}` definitions, callable as `macros.<name>(...)`. Macros see
    /// only their arguments, so pass what they need (e.g. `macros.tier(parent)`).
    #[serde(default)]
    pub macros: Option<String>,
}

/// One shared value.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedValue {
    /// The name (`values.<name>`): letters, digits and `_`, not starting with a digit.
    pub name: String,
    /// A minijinja expression over the context (`parent`, `children`, `related`, `lookups`,
    /// `now` and earlier `values`).
    pub expr: String,
}

/// A collection: the child is rendered once per item of a list.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForEach {
    /// A minijinja expression giving the list, e.g. `parent.spec.workers | default([])`.
    pub items: String,
    /// A minijinja expression over `item` giving its key, unique among the items and stable
    /// across reorderings (default: `item.name` for a mapping, the item itself for a string
    /// or number). The child's name should be built from it, never from the position.
    #[serde(default)]
    pub key: Option<String>,
}

/// One object read by kind and name (never written).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Lookup {
    /// The id (`lookups.<name>` in templates, expressions and status).
    pub name: String,
    /// `group/version` of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// A template for the object's name, e.g. `"{{ parent.spec.themeRef }}"`. Exactly one
    /// of `objectName` and `objectNames`.
    #[serde(default)]
    pub object_name: Option<String>,
    /// A minijinja expression giving a list of names, e.g.
    /// `(parent.metadata.annotations['reloader/configmaps'] | default('')) | split(',')`:
    /// every named object is read, and `lookups.<name>` is the list of the found ones, in the
    /// order of the names. Names are trimmed; empty ones and repeats are ignored; at most 100.
    #[serde(default)]
    pub object_names: Option<String>,
    /// A template for its namespace (default: the parent's), the same for every name of
    /// `objectNames`. Ignored for cluster-scoped kinds. A namespaced parent may only read
    /// from its own namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `false` (default): while the object is missing the plan stops with `Ready=False`,
    /// reason `LookupMissing`, and changes nothing. `true`: `lookups.<name>` is undefined
    /// (with `objectNames`: the missing objects are left out of the list).
    #[serde(default)]
    pub optional: bool,
}

/// How replicas whose rendering changed are replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Rollout {
    /// Changed replicas are updated in place by server-side apply (or recreated all at once
    /// under `updateStrategy: Recreate`).
    #[default]
    InPlace,
    /// One changed replica at a time is deleted and created again with the new rendering;
    /// the next goes only when every replica exists and is ready.
    RollingRecreate,
}

/// How the finalizer deletes a replicated child named in `deleteOrder`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ReplicaDeletion {
    /// Every replica at once.
    #[default]
    AllAtOnce,
    /// One replica at a time, highest index (newest) first, each gone before the next.
    OneAtATime,
}

/// Status fields written when a plan fails (validation, missing lookup, render error).
pub type FailureFields = BTreeMap<String, Projection>;
