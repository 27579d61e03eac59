use super::*;
use serde_json::json;

fn components() -> Map<String, Json> {
    let c = json!({
        "io.k8s.api.core.v1.ConfigMap": {"type": "object", "properties": {
            "apiVersion": {"type": "string"},
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
            "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }},
        "io.k8s.api.core.v1.ServicePort": {"type": "object", "required": ["port"], "properties": {
            "port": {"type": "integer", "format": "int32"},
            "protocol": {"type": "string", "enum": ["SCTP", "TCP", "UDP"]},
            "targetPort": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
        }},
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
        "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "io.k8s.apimachinery.pkg.runtime.RawExtension": {"type": "object"},
        "Limits": {"type": "object", "properties": {
            "cpu": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"},
            "raw": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.runtime.RawExtension"},
            "port": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServicePort"}], "nullable": true}
        }},
        "Loop": {"$ref": "#/components/schemas/Loop"}
    });
    c.as_object().unwrap().clone()
}

fn builtin(component: &str, value: Json) -> Vec<String> {
    let c = components();
    let schema = json!({"$ref": format!("#/components/schemas/{component}")});
    Validator::new(&c, Dialect::Builtin)
        .validate(&schema, &value)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn crd(schema: Json, value: Json) -> Vec<String> {
    let c = Map::new();
    Validator::new(&c, Dialect::Crd)
        .validate(&schema, &value)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_valid_object_has_no_violations() {
    let cm = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "b"}},
        "data": {"k": "v"}, "binaryData": {"b": "aGVsbG8=\n"}});
    assert_eq!(
        builtin("io.k8s.api.core.v1.ConfigMap", cm),
        Vec::<String>::new()
    );
}

#[test]
fn wrong_types_are_reported_with_their_path() {
    let cm = json!({"data": {"port": 8080, "on": true, "ok": "x"}, "metadata": {"labels": []}});
    assert_eq!(
        builtin("io.k8s.api.core.v1.ConfigMap", cm),
        [
            "data.on: expected string, got boolean true",
            "data.port: expected string, got number 8080",
            "metadata.labels: expected object, got a list",
        ]
    );
}

#[test]
fn unknown_fields_say_what_the_api_server_does() {
    let cm = json!({"metadata": {"nmae": "x"}, "dta": {}});
    assert_eq!(
        builtin("io.k8s.api.core.v1.ConfigMap", cm),
        [
            "dta: field not declared in the schema (server-side apply rejects it)",
            "metadata.nmae: field not declared in the schema (server-side apply rejects it)",
        ]
    );
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    assert_eq!(
        crd(schema, json!({"spec": {"a": "x", "b": 1}})),
        ["spec.b: field not declared in the schema (the API server prunes it)"]
    );
}

#[test]
fn required_fields_must_be_set_and_not_null() {
    assert_eq!(
        builtin("io.k8s.api.core.v1.ServicePort", json!({"protocol": "TCP"})),
        ["port: required field is missing"]
    );
    assert_eq!(
        builtin("io.k8s.api.core.v1.ServicePort", json!({"port": null})),
        ["port: required field is missing"]
    );
    // Null elsewhere is "not set".
    assert!(
        builtin(
            "io.k8s.api.core.v1.ServicePort",
            json!({"port": 1, "protocol": null})
        )
        .is_empty()
    );
}

#[test]
fn enums_and_formats() {
    assert_eq!(
        builtin(
            "io.k8s.api.core.v1.ServicePort",
            json!({"port": 80, "protocol": "tcp"})
        ),
        [r#"protocol: string "tcp" is not one of string "SCTP", string "TCP", string "UDP""#]
    );
    assert_eq!(
        builtin(
            "io.k8s.api.core.v1.ServicePort",
            json!({"port": 4294967296_u64})
        ),
        ["port: number 4294967296 is not a valid int32"]
    );
    assert_eq!(
        builtin(
            "io.k8s.api.core.v1.ConfigMap",
            json!({"binaryData": {"b": "hello"}})
        ),
        [r#"binaryData.b: string "hello" is not a valid byte"#]
    );
    let ts = json!({"type": "string", "format": "date-time"});
    assert!(crd(ts.clone(), json!("2024-01-02T03:04:05Z")).is_empty());
    assert_eq!(crd(ts, json!("yesterday")).len(), 1);
}

#[test]
fn int_or_string_takes_either_but_nothing_else() {
    let port = |t: Json| {
        builtin(
            "io.k8s.api.core.v1.ServicePort",
            json!({"port": 80, "targetPort": t}),
        )
    };
    assert!(port(json!(8080)).is_empty());
    assert!(port(json!("http")).is_empty());
    assert_eq!(
        port(json!(true))[0],
        "targetPort: expected integer or string, got boolean true"
    );
    assert_eq!(
        port(json!(1.5))[0],
        "targetPort: expected integer or string, got number 1.5"
    );
    let crd_schema = json!({"x-kubernetes-int-or-string": true});
    assert!(crd(crd_schema.clone(), json!("25%")).is_empty());
    assert!(crd(crd_schema.clone(), json!(3)).is_empty());
    assert_eq!(
        crd(crd_schema, json!([1])),
        ["(the object): expected integer or string, got a list"]
    );
}

#[test]
fn quantities_parse() {
    let limits = |v: Json| builtin("Limits", json!({"cpu": v}));
    assert!(limits(json!("500m")).is_empty());
    assert!(limits(json!(2)).is_empty());
    assert_eq!(
        limits(json!("lots")),
        [r#"cpu: string "lots" is not a valid quantity"#]
    );
    assert_eq!(
        limits(json!({})),
        ["cpu: expected quantity (string or number), got a mapping"]
    );
}

#[test]
fn preserve_unknown_fields_allows_anything_below_but_checks_what_is_declared() {
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"size": {"type": "integer"}, "inner": {"type": "object", "properties": {}}}});
    assert!(
        crd(
            schema.clone(),
            json!({"size": 3, "free": {"any": [1, {"deep": true}]}})
        )
        .is_empty()
    );
    assert_eq!(
        crd(schema, json!({"size": "3", "inner": {"x": 1}})),
        [
            "inner.x: field not declared in the schema (the API server prunes it)",
            r#"size: expected integer, got string "3""#,
        ]
    );
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let schema = json!({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}});
    assert!(
        crd(
            schema.clone(),
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}}})
        )
        .is_empty()
    );
    assert_eq!(
        crd(schema, json!({"template": {"kind": "", "spec": {}}})),
        [
            "template: an embedded object needs a non-empty apiVersion",
            "template: an embedded object needs a non-empty kind",
        ]
    );
    // Without preserve-unknown-fields, apiVersion, kind and metadata are still declared.
    let strict =
        json!({"type": "object", "x-kubernetes-embedded-resource": true, "properties": {}});
    assert_eq!(
        crd(
            strict,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}})
        ),
        ["spec: field not declared in the schema (the API server prunes it)"]
    );
}

#[test]
fn builtin_objects_without_properties_are_free_form_but_crd_ones_are_not() {
    assert!(builtin("Limits", json!({"raw": {"anything": [1]}})).is_empty());
    let schema = json!({"type": "object", "properties": {"raw": {"type": "object"}}});
    assert_eq!(
        crd(schema, json!({"raw": {"anything": 1}})),
        ["raw.anything: field not declared in the schema (the API server prunes it)"]
    );
}

#[test]
fn all_of_members_declare_fields_and_are_checked() {
    // The v3 wrapping of a ref: `allOf: [ref]` next to other keys.
    assert!(builtin("Limits", json!({"port": {"port": 80}})).is_empty());
    assert_eq!(
        builtin("Limits", json!({"port": {"port": "80", "extra": 1}})),
        [
            "port.extra: field not declared in the schema (server-side apply rejects it)",
            r#"port.port: expected integer, got string "80""#,
        ]
    );
}

#[test]
fn any_of_and_one_of_alternatives_constrain_without_declaring() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert!(crd(schema.clone(), json!({"a": "x"})).is_empty());
    let errors = crd(schema, json!({}));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("(the object): matches none of the anyOf alternatives"),
        "{errors:?}"
    );
    let one_of = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert_eq!(
        crd(one_of, json!({"a": "x", "b": "y"})),
        ["(the object): matches more than one oneOf alternative"]
    );
}

#[test]
fn keys_that_are_not_identifiers_are_quoted_and_every_violation_is_reported() {
    let cm =
        json!({"metadata": {"labels": {"app.kubernetes.io/name": 1}}, "data": {"a": 1, "b": 2}});
    assert_eq!(
        builtin("io.k8s.api.core.v1.ConfigMap", cm),
        [
            "data.a: expected string, got number 1",
            "data.b: expected string, got number 2",
            r#"metadata.labels["app.kubernetes.io/name"]: expected string, got number 1"#,
        ]
    );
}

#[test]
fn broken_schemas_are_reported_not_looped_on() {
    assert_eq!(
        builtin("Missing", json!({})),
        [r#"(the object): cannot check: no schema named "Missing""#]
    );
    assert_eq!(
        builtin("Loop", json!({})),
        ["(the object): cannot check: schema nested too deep"]
    );
}
