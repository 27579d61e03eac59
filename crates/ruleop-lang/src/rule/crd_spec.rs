//! The compact CRD language of `spec.crd`: names, fields, columns and scale (the schema they
//! make is `crd::fields`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The parent kind's CRD, in short: names, the spec's fields and the status' types.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrdSpec {
    /// Plural resource name (default: the lowercase kind plus `s`).
    #[serde(default)]
    pub plural: Option<String>,
    /// Short names for kubectl, e.g. `[mc]`.
    #[serde(default)]
    pub short_names: Vec<String>,
    /// Categories for `kubectl get <category>` (default: `[ruleop]`).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// A description of the kind.
    #[serde(default)]
    pub description: Option<String>,
    /// The fields of `spec`, by name.
    #[serde(default)]
    pub spec: BTreeMap<String, Field>,
    /// Types of status fields the rule writes (`status.fields`, `status.onFailure`), by
    /// name; a written field not listed here keeps any value.
    #[serde(default)]
    pub status: BTreeMap<String, Field>,
    /// Printer columns shown by `kubectl get` before Ready and Age: a spec field, or
    /// `status.<field>` (default: the required scalar spec fields).
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
    /// The scale subresource (`kubectl scale`), e.g. `{specReplicas: replicas,
    /// statusReplicas: readyReplicas}`.
    #[serde(default)]
    pub scale: Option<Scale>,
}

/// One field of the parent's spec or status.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Field {
    /// `string`, `integer`, `number`, `boolean`, `array` or `object`.
    #[serde(rename = "type")]
    pub type_: FieldType,
    /// What the field means.
    #[serde(default)]
    pub description: Option<String>,
    /// The field must be set.
    #[serde(default)]
    pub required: bool,
    /// The value the API server fills in when the field is absent.
    #[serde(default)]
    pub default: Option<Json>,
    /// The allowed values.
    #[serde(default, rename = "enum")]
    pub enum_: Option<Vec<Json>>,
    /// Smallest allowed number.
    #[serde(default)]
    pub minimum: Option<f64>,
    /// Largest allowed number.
    #[serde(default)]
    pub maximum: Option<f64>,
    /// A regular expression strings must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Shortest allowed string.
    #[serde(default)]
    pub min_length: Option<u64>,
    /// Longest allowed string.
    #[serde(default)]
    pub max_length: Option<u64>,
    /// The OpenAPI format, e.g. `int32`, `int64`, `date-time`.
    #[serde(default)]
    pub format: Option<String>,
    /// For an array: its entries.
    #[serde(default)]
    pub items: Option<Box<Field>>,
    /// For an object: its fields (none: any keys, string values).
    #[serde(default)]
    pub fields: Option<BTreeMap<String, Field>>,
    /// CEL rules on the value (`x-kubernetes-validations`), enforced by the API server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<super::CelValidation>,
}

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    /// Text.
    String,
    /// Whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list (`items` says of what).
    Array,
    /// A mapping (`fields` says which).
    Object,
}

impl FieldType {
    /// The OpenAPI type name.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    /// Neither a list nor a mapping.
    pub fn scalar(self) -> bool {
        !matches!(self, Self::Array | Self::Object)
    }
}

/// A printer column: the field's path alone, or with a title, priority and description.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Column {
    /// A spec field (`size`) or a status field (`status.readyReplicas`).
    Field(String),
    /// The field and how to show it.
    Full(ColumnSpec),
}

/// A printer column in full.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ColumnSpec {
    /// A spec field (`size`) or a status field (`status.readyReplicas`).
    pub field: String,
    /// The column's title (default: the field's name in words, `readyMembers` → `Ready
    /// Members`).
    #[serde(default)]
    pub name: Option<String>,
    /// 0 shows it always, 1 and more only with `kubectl get -o wide`.
    #[serde(default)]
    pub priority: Option<u32>,
    /// What the column shows.
    #[serde(default)]
    pub description: Option<String>,
}

impl Column {
    /// The field's path as written.
    pub fn field(&self) -> &str {
        match self {
            Self::Field(f) => f,
            Self::Full(c) => &c.field,
        }
    }
}

/// The scale subresource: which spec field holds the desired replicas and which status
/// field the observed ones.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scale {
    /// An integer spec field.
    pub spec_replicas: String,
    /// A status field the rule writes.
    pub status_replicas: String,
}
