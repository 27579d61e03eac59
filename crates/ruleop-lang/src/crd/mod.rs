//! Generated CRDs: a rule's compact parent schema (`spec.crd`) and the complete
//! CustomResourceDefinition built from it and from what the rule writes to the status.

mod defaults;
mod fields;

pub use defaults::apply_parent_defaults;

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json, json};

pub use crate::rule::crd_spec::{Column, ColumnSpec, CrdSpec, Field, FieldType, Scale};
use crate::rule::{CompiledRule, Scope, split_api_version};
use fields::{cel_rule, field_schema, object_schema};

/// The status schema: the fields the rule writes (typed as `spec.crd.status` says, else any
/// JSON value), its conditions and `observedGeneration`, so the API server prunes nothing
/// ruleop writes and checks what the rule declares.
fn status_schema(rule: &CompiledRule, crd: &CrdSpec) -> Json {
    let mut properties = Map::new();
    for name in written_status_fields(rule) {
        let schema = match crd.status.get(name) {
            Some(f) => field_schema(f),
            None => json!({"x-kubernetes-preserve-unknown-fields": true}),
        };
        properties.insert(name.to_string(), schema);
    }
    properties.insert(
        "observedGeneration".into(),
        json!({
            "description": "The metadata.generation ruleop last reconciled.",
            "type": "integer",
            "format": "int64",
        }),
    );
    properties.insert("conditions".into(), conditions_schema());
    json!({
        "description": "Observed state, written by ruleop through the status subresource.",
        "type": "object",
        "properties": properties,
    })
}

/// `metav1.Condition`'s schema, with its length limits.
fn conditions_schema() -> Json {
    json!({
        "description": "Standard conditions (Ready, ...), one entry per type.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": {"description": "Condition type in CamelCase, e.g. Ready.", "type": "string", "maxLength": 316},
                "status": {"description": "True, False or Unknown.", "type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"description": "Machine-readable CamelCase reason for the last transition.", "type": "string", "maxLength": 1024},
                "message": {"description": "Human-readable details about the last transition.", "type": "string", "maxLength": 32768},
                "lastTransitionTime": {"description": "When the condition last changed status.", "type": "string", "format": "date-time"},
                "observedGeneration": {"description": "The metadata.generation the condition was computed from.", "type": "integer", "format": "int64"},
            },
        },
    })
}

/// Every status field the rule writes: its projections and its `onFailure` fields.
fn written_status_fields(rule: &CompiledRule) -> BTreeSet<&str> {
    rule.status_fields().collect()
}

/// `readyMembers` → `Ready Members`.
fn title(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            if c.is_uppercase() {
                out.push(' ');
            }
            out.push(c);
        }
    }
    out
}

/// The printer column of `column`: a spec field or `status.<field>`.
fn column(rule: &CompiledRule, crd: &CrdSpec, column: &Column) -> Result<Json, CrdError> {
    let path = column.field();
    let unknown = || CrdError::UnknownColumn(path.to_string());
    let (name, json_path, field) = if let Some(name) = path.strip_prefix("status.") {
        if !written_status_fields(rule).contains(name) {
            return Err(unknown());
        }
        (name, format!(".status.{name}"), crd.status.get(name))
    } else {
        let name = path.strip_prefix("spec.").unwrap_or(path);
        let field = crd.spec.get(name).ok_or_else(unknown)?;
        (name, format!(".spec.{name}"), Some(field))
    };
    let type_ = match field.map(|f| f.type_) {
        Some(FieldType::Integer) => "integer",
        Some(FieldType::Number) => "number",
        Some(FieldType::Boolean) => "boolean",
        _ => "string",
    };
    let mut out = json!({"name": title(name), "type": type_, "jsonPath": json_path});
    if let Column::Full(c) = column {
        if let Some(n) = &c.name {
            out["name"] = json!(n);
        }
        if let Some(d) = &c.description {
            out["description"] = json!(d);
        }
        if let Some(p) = c.priority.filter(|p| *p > 0) {
            out["priority"] = json!(p);
        }
    }
    Ok(out)
}

/// The printer columns: the chosen ones, then Ready, its reason (wide only) and Age.
fn printer_columns(rule: &CompiledRule, crd: &CrdSpec) -> Result<Vec<Json>, CrdError> {
    let chosen: Vec<Column> = match &crd.columns {
        Some(c) => c.clone(),
        None => crd
            .spec
            .iter()
            .filter(|(_, f)| f.required && f.type_.scalar())
            .map(|(k, _)| Column::Field(k.clone()))
            .collect(),
    };
    let mut out = chosen
        .iter()
        .map(|c| column(rule, crd, c))
        .collect::<Result<Vec<_>, _>>()?;
    let ready = ".status.conditions[?(@.type==\"Ready\")]";
    out.push(json!({"name": "Ready", "type": "string", "jsonPath": format!("{ready}.status")}));
    out.push(json!({"name": "Reason", "type": "string", "jsonPath": format!("{ready}.reason"), "priority": 1}));
    out.push(json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}));
    Ok(out)
}

/// The scale subresource, checked against the fields it names.
fn scale(rule: &CompiledRule, crd: &CrdSpec, scale: &Scale) -> Result<Json, CrdError> {
    let spec_ok = crd
        .spec
        .get(&scale.spec_replicas)
        .is_some_and(|f| f.type_ == FieldType::Integer);
    if !spec_ok {
        return Err(CrdError::ScaleSpec(scale.spec_replicas.clone()));
    }
    if !written_status_fields(rule).contains(scale.status_replicas.as_str()) {
        return Err(CrdError::ScaleStatus(scale.status_replicas.clone()));
    }
    Ok(json!({
        "specReplicasPath": format!(".spec.{}", scale.spec_replicas),
        "statusReplicasPath": format!(".status.{}", scale.status_replicas),
    }))
}

/// English plural of a lowercase kind, for the usual endings (`spec.crd.plural` overrides).
pub(crate) fn plural_of(singular: &str) -> String {
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
    /// A column names a field the spec does not declare or the rule does not write.
    #[error(
        "spec.crd.columns names {0:?}, which is neither in spec.crd.spec nor status.<a field the rule writes>"
    )]
    UnknownColumn(String),
    /// `spec.crd.status` types a field the rule never writes.
    #[error(
        "spec.crd.status declares {0:?}, which the rule does not write (spec.status.fields or onFailure)"
    )]
    UnwrittenStatus(String),
    /// The scale subresource's spec field is not an integer spec field.
    #[error("spec.crd.scale.specReplicas {0:?} is not an integer field of spec.crd.spec")]
    ScaleSpec(String),
    /// The scale subresource's status field is not written by the rule.
    #[error("spec.crd.scale.statusReplicas {0:?} is not a status field the rule writes")]
    ScaleStatus(String),
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
    let written = written_status_fields(rule);
    if let Some(name) = crd.status.keys().find(|k| !written.contains(k.as_str())) {
        return Err(CrdError::UnwrittenStatus(name.clone()));
    }
    let singular = parent.kind.to_lowercase();
    let plural = crd.plural.clone().unwrap_or_else(|| plural_of(&singular));
    let printer = printer_columns(rule, crd)?;
    let mut subresources = json!({"status": {}});
    if let Some(s) = &crd.scale {
        subresources["scale"] = scale(rule, crd, s)?;
    }
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
    let spec_description = format!("Desired state of the {}.", parent.kind);
    let mut spec_schema = object_schema(&crd.spec, Some(&spec_description));
    if crd.spec.values().any(|f| f.required) {
        root.insert("required".into(), json!(["spec"]));
    } else {
        // Nothing required: an absent spec still gets the fields' defaults.
        spec_schema["default"] = json!({});
    }
    // `spec.validate[].cel` over the whole object, as `self` is in the planner.
    let checks = &rule.compiled.cel.validate;
    if !checks.is_empty() {
        let rules = checks.iter().map(|c| {
            let message_expression = c.message_expression.as_ref().map(|m| m.source.as_str());
            cel_rule(&c.rule.source, &c.message, message_expression)
        });
        root.insert("x-kubernetes-validations".into(), rules.collect());
    }
    root.insert(
        "properties".into(),
        json!({
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema(rule, crd),
        }),
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
                "subresources": subresources,
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
        crate::load::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap()
    }

    const FIELDS: &str = "    spec:\n      size: {type: integer, minimum: 1, maximum: 10, required: true}\n      mode: {type: string, enum: [a, b], default: a}\n      tags: {type: object}\n";

    /// The generated conditions schema declares what ruleop writes in a condition, no more.
    #[test]
    fn the_conditions_schema_has_the_keys_ruleop_writes() {
        use ruleop_schema::status_shape::{OPTIONAL_CONDITION_KEYS, REQUIRED_CONDITION_KEYS};
        let schema = conditions_schema();
        let declared: BTreeSet<&str> = schema["items"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let written: BTreeSet<&str> = REQUIRED_CONDITION_KEYS
            .into_iter()
            .chain(OPTIONAL_CONDITION_KEYS)
            .collect();
        assert_eq!(declared, written);
        assert_eq!(schema["items"]["required"], json!(REQUIRED_CONDITION_KEYS));
    }

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
            ["Size", "Ready", "Reason", "Age"],
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
        let unwritten = rule(
            &format!("{FIELDS}    columns: [status.totl]\n"),
            "{apiVersion: shop.example.com/v1, kind: Box}",
        );
        assert!(
            matches!(generate(&unwritten), Err(CrdError::UnknownColumn(c)) if c == "status.totl")
        );
        let core = rule(FIELDS, "{apiVersion: v1, kind: ConfigMap}");
        assert!(matches!(generate(&core), Err(CrdError::BuiltIn(_))));
        assert_eq!(plural_of("box"), "boxes");
        assert_eq!(plural_of("gateway"), "gateways");
        assert_eq!(plural_of("podset"), "podsets");
    }

    fn rule_with_failure(crd: &str) -> CompiledRule {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {{apiVersion: fleet.example.org/v3, kind: Rover}}\n  status:\n    fields:\n      wheels: {{expr: \"4\"}}\n      crew: {{path: \"$.parent.spec.crew\", default: []}}\n    onFailure:\n      phase: {{expr: \"'Error'\"}}\n  crd:\n    spec:\n      crew: {{type: array, items: {{type: string, minLength: 1, maxLength: 20}}}}\n      count: {{type: integer, format: int32, minimum: 0}}\n{crd}"
        );
        crate::load::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap()
    }

    #[test]
    fn status_types_on_failure_fields_formats_and_lengths() {
        let crd = generate(&rule_with_failure(
            "    status:\n      wheels: {type: integer, format: int32, description: Wheels.}\n",
        ))
        .unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["wheels"],
            json!({"type": "integer", "format": "int32", "description": "Wheels."})
        );
        // Undeclared written fields keep any value; onFailure fields are written too.
        assert_eq!(
            status["crew"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            status["phase"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        let message = &status["conditions"]["items"]["properties"]["message"];
        assert_eq!(message["maxLength"], 32768);
        let spec = &schema["properties"]["spec"];
        assert_eq!(
            spec["default"],
            json!({}),
            "nothing required: spec defaults"
        );
        assert_eq!(
            spec["properties"]["crew"]["items"],
            json!({"type": "string", "minLength": 1, "maxLength": 20})
        );
        assert_eq!(
            spec["properties"]["count"],
            json!({"type": "integer", "format": "int32", "minimum": 0})
        );
        let typo = rule_with_failure("    status:\n      wheelz: {type: integer}\n");
        assert!(matches!(generate(&typo), Err(CrdError::UnwrittenStatus(f)) if f == "wheelz"));
    }

    #[test]
    fn status_columns_full_columns_and_the_scale_subresource() {
        let crd = generate(&rule_with_failure(concat!(
            "    status:\n      wheels: {type: integer}\n",
            "    columns:\n      - count\n      - status.wheels\n",
            "      - {field: status.crew, name: Team, priority: 1, description: Who.}\n",
            "    scale: {specReplicas: count, statusReplicas: wheels}\n",
        )))
        .unwrap();
        let v = &crd["spec"]["versions"][0];
        let columns = v["additionalPrinterColumns"].as_array().unwrap();
        assert_eq!(
            columns[1],
            json!({"name": "Wheels", "type": "integer", "jsonPath": ".status.wheels"})
        );
        assert_eq!(
            columns[2],
            json!({"name": "Team", "type": "string", "jsonPath": ".status.crew", "priority": 1, "description": "Who."})
        );
        assert_eq!(columns[4]["name"], "Reason");
        assert_eq!(columns[4]["priority"], 1);
        assert_eq!(
            v["subresources"]["scale"],
            json!({"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.wheels"})
        );
        let bad_spec =
            rule_with_failure("    scale: {specReplicas: crew, statusReplicas: wheels}\n");
        assert!(matches!(generate(&bad_spec), Err(CrdError::ScaleSpec(f)) if f == "crew"));
        let bad_status =
            rule_with_failure("    scale: {specReplicas: count, statusReplicas: count}\n");
        assert!(matches!(generate(&bad_status), Err(CrdError::ScaleStatus(f)) if f == "count"));
        assert_eq!(title("readyMembers"), "Ready Members");
        assert_eq!(title("size"), "Size");
    }

    /// `validate[].cel` goes to the root of the schema, field rules to their fields; Jinja
    /// checks stay ruleop's.
    #[test]
    fn cel_rules_become_x_kubernetes_validations() {
        let source = concat!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n",
            "  parent: {apiVersion: shop.example.com/v1, kind: Box}\n",
            "  validate:\n",
            "    - {rule: parent.spec.size > 0, message: jinja}\n",
            "    - {cel: self.spec.size <= 10, message: at most 10, messageExpression: \"'got ' + string(self.spec.size)\"}\n",
            "  crd:\n    spec:\n      size: {type: integer}\n",
            "      name:\n        type: string\n",
            "        validations: [{rule: self == oldSelf, message: immutable}]\n",
        );
        let rule = crate::load::parse_rule(std::path::Path::new("r.yaml"), source).unwrap();
        let crd = generate(&rule).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            schema["x-kubernetes-validations"],
            json!([{"rule": "self.spec.size <= 10", "message": "at most 10", "messageExpression": "'got ' + string(self.spec.size)"}])
        );
        assert_eq!(
            schema["properties"]["spec"]["properties"]["name"]["x-kubernetes-validations"],
            json!([{"rule": "self == oldSelf", "message": "immutable"}])
        );
        assert!(
            schema["properties"]["spec"]["properties"]["size"]
                .get("x-kubernetes-validations")
                .is_none()
        );
    }
}
