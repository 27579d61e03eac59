//! The OpenAPI v3 schema of the fields a rule's `spec.crd` declares.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::rule::crd_spec::{Field, FieldType};

fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// The OpenAPI v3 schema of an object with `fields`.
pub(super) fn object_schema(fields: &BTreeMap<String, Field>, description: Option<&str>) -> Json {
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

/// The OpenAPI v3 schema of one field.
pub(super) fn field_schema(f: &Field) -> Json {
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
    set("format", f.format.clone().map(Json::String));
    set("default", f.default.clone());
    set("enum", f.enum_.clone().map(Json::Array));
    set("minimum", f.minimum.map(number));
    set("maximum", f.maximum.map(number));
    set("minLength", f.min_length.map(|n| json!(n)));
    set("maxLength", f.max_length.map(|n| json!(n)));
    set("pattern", f.pattern.clone().map(Json::String));
    if !f.validations.is_empty() {
        let rules = f
            .validations
            .iter()
            .map(|v| cel_rule(&v.rule, &v.message, v.message_expression.as_deref()));
        m.insert("x-kubernetes-validations".into(), rules.collect());
    }
    s
}

/// One `x-kubernetes-validations` entry.
pub(super) fn cel_rule(rule: &str, message: &str, message_expression: Option<&str>) -> Json {
    let mut v = json!({"rule": rule, "message": message});
    if let Some(m) = message_expression {
        v["messageExpression"] = json!(m);
    }
    v
}
