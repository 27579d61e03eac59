//! Generated CRDs: a rule's compact parent schema (`spec.crd`) and the complete
//! CustomResourceDefinition built from it and from what the rule writes to the status.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::rule::{CompiledRule, Scope, split_api_version};

/// The parent kind's CRD, in short: names and the spec's fields.
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
    /// Spec fields shown by `kubectl get` between Ready and Age (default: the required
    /// scalar fields).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// One field of the parent's spec.
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
    /// For an array: its entries.
    #[serde(default)]
    pub items: Option<Box<Field>>,
    /// For an object: its fields (none: any keys, string values).
    #[serde(default)]
    pub fields: Option<BTreeMap<String, Field>>,
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
    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    fn scalar(self) -> bool {
        !matches!(self, Self::Array | Self::Object)
    }
}

fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// The OpenAPI v3 schema of an object with `fields`.
fn object_schema(fields: &BTreeMap<String, Field>, description: Option<&str>) -> Json {
    let mut s = Map::new();
    s.insert("type".into(), json!("object"));
    if let Some(d) = description {
        s.insert("description".into(), json!(d));
    }
    let properties: Map<String, Json> = fields
        .iter()
        .map(|(k, f)| (k.clone(), field_schema(f)))
        .collect();
    s.insert("properties".into(), Json::Object(properties));
    let required: Vec<&String> = fields
        .iter()
        .filter(|(_, f)| f.required)
        .map(|(k, _)| k)
        .collect();
    if !required.is_empty() {
        s.insert("required".into(), json!(required));
    }
    Json::Object(s)
}

fn field_schema(f: &Field) -> Json {
    let mut s = match (f.type_, &f.fields) {
        (FieldType::Object, Some(fields)) => object_schema(fields, None),
        // An object without declared fields: a string map (labels, settings).
        (FieldType::Object, None) => {
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        }
        (FieldType::Array, _) => json!({
            "type": "array",
            "items": f.items.as_deref().map(field_schema).unwrap_or_else(|| json!({"type": "string"})),
        }),
        (t, _) => json!({"type": t.name()}),
    };
    let Some(m) = s.as_object_mut() else {
        return s;
    };
    let mut set = |k: &str, v: Option<Json>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    set("description", f.description.clone().map(Json::String));
    set("default", f.default.clone());
    set("enum", f.enum_.clone().map(Json::Array));
    set("minimum", f.minimum.map(number));
    set("maximum", f.maximum.map(number));
    set("pattern", f.pattern.clone().map(Json::String));
    s
}

/// The status schema: the fields the rule projects (any JSON value), its conditions and
/// `observedGeneration`, so the API server prunes nothing ruleop writes.
fn status_schema(rule: &CompiledRule) -> Json {
    let mut properties = Map::new();
    for name in rule.spec.status.fields.keys() {
        properties.insert(
            name.clone(),
            json!({"x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    properties.insert("observedGeneration".into(), json!({"type": "integer"}));
    properties.insert(
        "conditions".into(),
        json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                    "observedGeneration": {"type": "integer"},
                },
            },
        }),
    );
    json!({"type": "object", "properties": properties})
}

/// The printer column of a spec field.
fn column(name: &str, f: &Field) -> Json {
    let mut chars = name.chars();
    let title: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let type_ = match f.type_ {
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Boolean => "boolean",
        _ => "string",
    };
    json!({"name": title, "type": type_, "jsonPath": format!(".spec.{name}")})
}

/// English plural of a lowercase kind, for the usual endings (`spec.crd.plural` overrides).
fn plural_of(singular: &str) -> String {
    let consonant_y = singular.ends_with('y')
        && !singular.ends_with("ay")
        && !singular.ends_with("ey")
        && !singular.ends_with("oy");
    if consonant_y {
        format!("{}ies", &singular[..singular.len() - 1])
    } else if ["s", "x", "ch", "sh"].iter().any(|e| singular.ends_with(e)) {
        format!("{singular}es")
    } else {
        format!("{singular}s")
    }
}

/// Why a CRD cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The rule has no `spec.crd`.
    #[error("rule {0} has no spec.crd: add the parent's spec fields there to generate its CRD")]
    NoSpec(String),
    /// The parent is a core kind (no group): it has no CRD.
    #[error("the parent {0} is a built-in kind: it has no CRD")]
    BuiltIn(String),
    /// A column names a field the spec does not declare.
    #[error("spec.crd.columns names {0:?}, which is not in spec.crd.spec")]
    UnknownColumn(String),
}

/// The CustomResourceDefinition of `rule`'s parent.
pub fn generate(rule: &CompiledRule) -> Result<Json, CrdError> {
    let crd = rule
        .spec
        .crd
        .as_ref()
        .ok_or_else(|| CrdError::NoSpec(rule.name.clone()))?;
    let parent = &rule.spec.parent;
    let (group, version) = split_api_version(&parent.api_version);
    if group.is_empty() || !group.contains('.') {
        return Err(CrdError::BuiltIn(rule.parent_key()));
    }
    let singular = parent.kind.to_lowercase();
    let plural = crd.plural.clone().unwrap_or_else(|| plural_of(&singular));
    let columns: Vec<String> = match &crd.columns {
        Some(c) => c.clone(),
        None => crd
            .spec
            .iter()
            .filter(|(_, f)| f.required && f.type_.scalar())
            .map(|(k, _)| k.clone())
            .collect(),
    };
    let mut printer = vec![json!({
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
    })];
    for name in &columns {
        let f = crd
            .spec
            .get(name)
            .ok_or_else(|| CrdError::UnknownColumn(name.clone()))?;
        printer.push(column(name, f));
    }
    printer.push(json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}));
    let mut names = json!({
        "kind": parent.kind,
        "listKind": format!("{}List", parent.kind),
        "plural": plural,
        "singular": singular,
        "categories": crd.categories.clone().unwrap_or_else(|| vec!["ruleop".into()]),
    });
    if !crd.short_names.is_empty() {
        names["shortNames"] = json!(crd.short_names);
    }
    let mut root = Map::new();
    root.insert("type".into(), json!("object"));
    if let Some(d) = &crd.description {
        root.insert("description".into(), json!(d));
    }
    let mut spec_schema = object_schema(&crd.spec, None);
    if crd.spec.values().any(|f| f.required) {
        root.insert("required".into(), json!(["spec"]));
    } else {
        spec_schema["default"] = json!({});
    }
    root.insert(
        "properties".into(),
        json!({"spec": spec_schema, "status": status_schema(rule)}),
    );
    Ok(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{group}"),
        },
        "spec": {
            "group": group,
            "scope": match parent.scope { Scope::Namespaced => "Namespaced", Scope::Cluster => "Cluster" },
            "names": names,
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer,
                "schema": {"openAPIV3Schema": Json::Object(root)},
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(crd: &str, parent: &str) -> CompiledRule {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {parent}\n  status:\n    fields:\n      total: {{expr: \"1\"}}\n  crd:\n{crd}"
        );
        crate::rule::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap()
    }

    const FIELDS: &str = "    spec:\n      size: {type: integer, minimum: 1, maximum: 10, required: true}\n      mode: {type: string, enum: [a, b], default: a}\n      tags: {type: object}\n";

    #[test]
    fn a_crd_has_the_fields_the_status_and_printer_columns() {
        let crd = generate(&rule(
            FIELDS,
            "{apiVersion: shop.example.com/v2, kind: Policy}",
        ))
        .unwrap();
        assert_eq!(crd["metadata"]["name"], "policies.shop.example.com");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v2");
        assert_eq!(v["subresources"], json!({"status": {}}));
        let schema = &v["schema"]["openAPIV3Schema"];
        assert_eq!(schema["required"], json!(["spec"]));
        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["required"], json!(["size"]));
        assert_eq!(
            spec["properties"]["size"],
            json!({"type": "integer", "minimum": 1, "maximum": 10})
        );
        assert_eq!(
            spec["properties"]["mode"],
            json!({"type": "string", "enum": ["a", "b"], "default": "a"})
        );
        assert_eq!(
            spec["properties"]["tags"]["additionalProperties"],
            json!({"type": "string"})
        );
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["total"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-map-keys"],
            json!(["type"])
        );
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            ["Ready", "Size", "Age"],
            "required scalar fields by default"
        );
        assert_eq!(crd["spec"]["names"]["categories"], json!(["ruleop"]));
    }

    #[test]
    fn bad_columns_built_in_parents_and_plurals() {
        let bad = rule(
            &format!("{FIELDS}    columns: [sise]\n"),
            "{apiVersion: shop.example.com/v1, kind: Box}",
        );
        assert!(matches!(generate(&bad), Err(CrdError::UnknownColumn(c)) if c == "sise"));
        let core = rule(FIELDS, "{apiVersion: v1, kind: ConfigMap}");
        assert!(matches!(generate(&core), Err(CrdError::BuiltIn(_))));
        assert_eq!(plural_of("box"), "boxes");
        assert_eq!(plural_of("gateway"), "gateways");
        assert_eq!(plural_of("podset"), "podsets");
    }
}
