//! The defaults of a CRD's structural schema applied to an object, as the API server does
//! on create, so `ruleop render`, `check --resource` and `test` plan a sample as the cluster
//! would see it (the CRD given with `--crd`, else the rule's own `spec.crd`).

use serde_json::{Map, Value as Json};

use crate::crds::{CrdSet, Lookup};
use crate::meta;
use crate::meta::split_api_version;

/// Why defaults could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DefaultsError {
    /// None of the given CRDs defines the object's kind.
    #[error("no CustomResourceDefinition given for {kind} in group {group:?}")]
    NoCrd {
        /// The object's group.
        group: String,
        /// The object's kind.
        kind: String,
    },
    /// The CRD has no such version, or it has no schema.
    #[error("CustomResourceDefinition {crd} has no schema for version {version:?}")]
    NoSchema {
        /// The CRD's name.
        crd: String,
        /// The object's version.
        version: String,
    },
}

/// Applies the defaults of the CRD in `crds` that defines `object`'s group, kind and version.
pub fn apply_crd_defaults(crds: &CrdSet, object: &mut Json) -> Result<(), DefaultsError> {
    let (group, version) = split_api_version(meta::api_version(object));
    let kind = meta::kind(object);
    let no_schema = |crd: &str| DefaultsError::NoSchema {
        crd: crd.to_string(),
        version: version.to_string(),
    };
    let schema = match crds.lookup(group, version, kind) {
        Lookup::Found(v) if v.has_schema() => &v.schema,
        Lookup::Found(v) => return Err(no_schema(&v.crd)),
        Lookup::NoVersion { crd, .. } => return Err(no_schema(crd)),
        Lookup::None => {
            return Err(DefaultsError::NoCrd {
                group: group.to_string(),
                kind: kind.to_string(),
            });
        }
    };
    default_value(schema, object);
    Ok(())
}

/// Fills `value`'s missing fields from `schema`'s `default`s, then descends into them.
pub fn default_value(schema: &Json, value: &mut Json) {
    match value {
        Json::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Json::as_object) {
                for (name, prop) in properties {
                    fill(map, name, prop);
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for v in map.values_mut() {
                    default_value(extra, v);
                }
            }
        }
        Json::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_value(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn fill(map: &mut Map<String, Json>, name: &str, prop: &Json) {
    let nullable = prop.get("nullable").and_then(Json::as_bool) == Some(true);
    // The API server drops a null of a non-nullable field before defaulting it.
    let missing = match map.get(name) {
        None => true,
        Some(Json::Null) => !nullable,
        Some(_) => false,
    };
    if missing {
        match prop.get("default") {
            Some(default) => {
                map.insert(name.to_string(), default.clone());
            }
            None => {
                if map.get(name).is_some_and(Json::is_null) {
                    map.remove(name);
                }
                return;
            }
        }
    }
    if let Some(v) = map.get_mut(name) {
        default_value(prop, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Json {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "sites.x.dev"},
            "spec": {"group": "x.dev", "names": {"kind": "Site"}, "versions": [
                {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "default": {}, "properties": {
                        "replicas": {"type": "integer", "default": 2},
                        "tls": {"type": "object", "properties": {
                            "enabled": {"type": "boolean", "default": true}}},
                        "ports": {"type": "array", "items": {"type": "object", "properties": {
                            "protocol": {"type": "string", "default": "TCP"}}}},
                        "labels": {"type": "object", "additionalProperties": {
                            "type": "object", "properties": {"weight": {"type": "integer", "default": 1}}}},
                        "note": {"type": "string", "nullable": true, "default": "n"}}}}}}}]}})
    }

    #[test]
    fn fills_missing_fields_nested_lists_and_maps() {
        let mut site = json!({"apiVersion": "x.dev/v1", "kind": "Site", "metadata": {"name": "s"},
            "spec": {"replicas": null, "tls": {}, "ports": [{"port": 80}, {"protocol": "UDP"}],
                "labels": {"a": {}}, "note": null}});
        apply_crd_defaults(&CrdSet::of([&crd()], "test"), &mut site).unwrap();
        assert_eq!(
            site["spec"],
            json!({"replicas": 2, "tls": {"enabled": true},
                "ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}],
                "labels": {"a": {"weight": 1}}, "note": null})
        );
        // A defaulted object gets its own fields' defaults.
        let mut empty =
            json!({"apiVersion": "x.dev/v1", "kind": "Site", "metadata": {"name": "s"}});
        apply_crd_defaults(&CrdSet::of([&crd()], "test"), &mut empty).unwrap();
        assert_eq!(empty["spec"], json!({"replicas": 2, "note": "n"}));
    }

    #[test]
    fn a_missing_crd_or_version_is_an_error() {
        let mut other = json!({"apiVersion": "y.dev/v1", "kind": "Site"});
        assert!(matches!(
            apply_crd_defaults(&CrdSet::of([&crd()], "test"), &mut other),
            Err(DefaultsError::NoCrd { .. })
        ));
        let mut v2 = json!({"apiVersion": "x.dev/v2", "kind": "Site"});
        assert!(matches!(
            apply_crd_defaults(&CrdSet::of([&crd()], "test"), &mut v2),
            Err(DefaultsError::NoSchema { .. })
        ));
    }
}
