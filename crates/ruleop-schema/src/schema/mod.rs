//! The schemas of the kinds ruleop may write, for offline checks: built-in kinds from an
//! embedded OpenAPI v3 snapshot (or a live cluster's documents), CRD kinds from their CRDs.

pub mod json_schema;
pub mod validate;
mod values;

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::crds::{CrdVersion, VERSIONS, defined_kind};
use crate::meta;
use crate::meta::split_api_version;
pub use json_schema::{Gvk, JsonSchema, field_schema};
use json_schema::{OBJECT_META, components_of, kind_index};
pub use validate::{Dialect, Problem, Validator, Violation};

/// The trimmed OpenAPI v3 schemas of the built-in kinds, written by `hack/openapi-snapshot.sh`.
const SNAPSHOT: &str = include_str!("builtin.json");
/// Why schemas could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The embedded snapshot is not what `hack/openapi-snapshot.sh` writes.
    #[error("the embedded OpenAPI snapshot is broken: {0}")]
    Snapshot(String),
    /// A CustomResourceDefinition lacks what defines a kind.
    #[error("CustomResourceDefinition {name:?}: {message}")]
    Crd {
        /// The CRD's name.
        name: String,
        /// What is missing.
        message: String,
    },
}

/// Schemas by group, version and kind.
#[derive(Debug, Default, Clone)]
pub struct KindSchemas {
    /// Components shared by the built-in kinds (targets of `$ref`).
    components: Map<String, Json>,
    /// Built-in kinds → their component.
    builtin: HashMap<Gvk, String>,
    /// CRD kinds → the version's `openAPIV3Schema`.
    crds: HashMap<Gvk, Json>,
    /// Where the built-in schemas come from, for messages.
    source: String,
}

impl KindSchemas {
    /// The built-in kinds of the embedded snapshot.
    pub fn builtin() -> Result<KindSchemas, SchemaError> {
        let snapshot: Json =
            serde_json::from_str(SNAPSHOT).map_err(|e| SchemaError::Snapshot(e.to_string()))?;
        let version = snapshot
            .get("kubernetesVersion")
            .and_then(Json::as_str)
            .ok_or_else(|| SchemaError::Snapshot("no kubernetesVersion".into()))?;
        let components = snapshot
            .get("schemas")
            .and_then(Json::as_object)
            .ok_or_else(|| SchemaError::Snapshot("no schemas".into()))?;
        Ok(KindSchemas::from_components(
            components.clone(),
            format!("the Kubernetes {version} schemas built in"),
        ))
    }

    /// The built-in kinds of OpenAPI v3 documents as served at `/openapi/v3/<path>` (a
    /// live cluster's), described as `source` in messages.
    pub fn from_documents(documents: &[Json], source: &str) -> KindSchemas {
        let mut components = Map::new();
        for doc in documents {
            if let Some(schemas) = components_of(doc) {
                components.extend(schemas.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        KindSchemas::from_components(components, source.to_string())
    }

    fn from_components(components: Map<String, Json>, source: String) -> KindSchemas {
        KindSchemas {
            builtin: kind_index(&components),
            components,
            crds: HashMap::new(),
            source,
        }
    }

    /// Where the built-in schemas come from ("the Kubernetes v1.36.3 schemas built in").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Adds the kinds a CustomResourceDefinition defines (each version with a schema); they
    /// take precedence over built-in kinds of the same name.
    pub fn add_crd(&mut self, crd: &Json) -> Result<(), SchemaError> {
        let err = |message: &str| SchemaError::Crd {
            name: meta::name(crd).to_string(),
            message: message.to_string(),
        };
        let (group, kind) = defined_kind(crd);
        let group = group.ok_or_else(|| err("no spec.group"))?;
        let kind = kind.ok_or_else(|| err("no spec.names.kind"))?;
        if crd.pointer(VERSIONS).and_then(Json::as_array).is_none() {
            return Err(err("no spec.versions"));
        }
        for version in CrdVersion::all(crd, "").filter(CrdVersion::has_schema) {
            self.crds.insert(
                (group.to_string(), version.version, kind.to_string()),
                version.schema,
            );
        }
        Ok(())
    }

    /// Whether the schema of `api_version`/`kind` is known.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        let key = gvk(api_version, kind);
        self.crds.contains_key(&key) || self.builtin.contains_key(&key)
    }

    /// The schema of `api_version`/`kind`, for the shape of a parent's status.
    pub fn schema_of(&self, api_version: &str, kind: &str) -> Option<JsonSchema<'_>> {
        let key = gvk(api_version, kind);
        if let Some(schema) = self.crds.get(&key) {
            return Some(JsonSchema::new(schema, None));
        }
        let component = self.components.get(self.builtin.get(&key)?)?;
        Some(JsonSchema::new(component, Some(&self.components)))
    }

    /// Every violation of its kind's schema by `object`; `None` when the kind is unknown.
    pub fn validate(&self, object: &Json) -> Option<Vec<Violation>> {
        let key = gvk(meta::api_version(object), meta::kind(object));
        if let Some(schema) = self.crds.get(&key) {
            return Some(self.validate_custom(schema, object));
        }
        let schema = self.components.get(self.builtin.get(&key)?)?;
        Some(Validator::new(&self.components, Dialect::Builtin).validate(schema, object))
    }

    /// A custom resource: the API server handles `apiVersion`, `kind` and `metadata` itself
    /// (metadata as the built-in ObjectMeta, whatever the CRD says, dropping what ObjectMeta
    /// does not have); the rest is the CRD's.
    fn validate_custom(&self, schema: &Json, object: &Json) -> Vec<Violation> {
        let mut rest = object.clone();
        let metadata = rest
            .as_object_mut()
            .and_then(|m| {
                m.remove("apiVersion");
                m.remove("kind");
                m.remove("metadata")
            })
            .unwrap_or(Json::Null);
        let mut violations = Validator::new(&self.components, Dialect::Crd).validate(schema, &rest);
        if let Some(meta_schema) = self.components.get(OBJECT_META) {
            let found =
                Validator::new(&self.components, Dialect::Crd).validate(meta_schema, &metadata);
            violations.extend(found.into_iter().map(|mut v| {
                v.path = if v.path.is_empty() {
                    "metadata".into()
                } else if v.path.starts_with('[') {
                    format!("metadata{}", v.path)
                } else {
                    format!("metadata.{}", v.path)
                };
                v
            }));
            violations.sort_by(|a, b| a.path.cmp(&b.path));
        }
        violations
    }
}

fn gvk(api_version: &str, kind: &str) -> Gvk {
    let (group, version) = split_api_version(api_version);
    (group.to_string(), version.to_string(), kind.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_snapshot_loads_and_knows_the_kinds_rules_write() {
        let schemas = KindSchemas::builtin().unwrap();
        assert!(
            schemas.source().contains("Kubernetes v1."),
            "{}",
            schemas.source()
        );
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Service"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("batch/v1", "CronJob"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("policy/v1", "PodDisruptionBudget"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("coordination.k8s.io/v1", "Lease"),
            ("storage.k8s.io/v1", "StorageClass"),
        ] {
            assert!(schemas.knows(api_version, kind), "{api_version} {kind}");
        }
        assert!(!schemas.knows("example.com/v1", "Widget"));
        assert!(
            schemas
                .validate(&json!({"apiVersion": "example.com/v1", "kind": "Widget"}))
                .is_none()
        );
    }

    #[test]
    fn builtin_kinds_are_checked_against_the_snapshot() {
        let schemas = KindSchemas::builtin().unwrap();
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"replicas": "2", "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "imagePullPolicy": "Sometimes",
                     "resources": {"limits": {"cpu": "500m", "memory": 1073741824}},
                     "ports": [{"containerPort": 80}], "livenessProbe": {"httpGet": {"port": "http"}}}]}}}});
        let found: Vec<String> = schemas
            .validate(&deployment)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("spec.replicas: expected integer"),
            "{found:#?}"
        );
        assert!(found[1].starts_with("spec.template.spec.containers[0].imagePullPolicy: string \"Sometimes\" is not one of"), "{found:#?}");
    }

    #[test]
    fn live_documents_replace_the_snapshot() {
        let doc = json!({"components": {"schemas": {"io.k8s.api.core.v1.ConfigMap": {
            "type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "ConfigMap"}],
            "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}}}}}});
        let schemas = KindSchemas::from_documents(&[doc], "the cluster");
        assert_eq!(schemas.source(), "the cluster");
        assert!(!schemas.knows("apps/v1", "Deployment"));
        let found = schemas
            .validate(&json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}}))
            .unwrap();
        assert_eq!(found.len(), 3, "{found:?}"); // apiVersion, kind (undeclared here) and data.a
    }

    #[test]
    fn a_crd_version_without_a_schema_leaves_its_kind_unchecked() {
        let mut schemas = KindSchemas::default();
        let crd = json!({"kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget"}, "versions": [
                {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v2"}]}});
        schemas.add_crd(&crd).unwrap();
        assert!(schemas.knows("example.com/v1", "Widget"));
        assert!(!schemas.knows("example.com/v2", "Widget"));
        let no_versions =
            json!({"metadata": {"name": "b"}, "spec": {"group": "g", "names": {"kind": "B"}}});
        assert!(
            schemas
                .add_crd(&no_versions)
                .unwrap_err()
                .to_string()
                .contains("no spec.versions")
        );
    }

    #[test]
    fn crd_kinds_use_their_schema_and_the_builtin_object_meta() {
        let mut schemas = KindSchemas::builtin().unwrap();
        let crd = json!({"kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget"}, "versions": [
                {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "metadata": {"type": "object"},
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
        schemas.add_crd(&crd).unwrap();
        let widget = |spec: Json, meta: Json| {
            schemas
                .validate(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}))
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(
            widget(
                json!({"size": 1}),
                json!({"name": "w", "labels": {"a": "b"}})
            )
            .is_empty()
        );
        assert_eq!(
            widget(
                json!({"size": "1", "colour": "red"}),
                json!({"name": "w", "lables": {}})
            ),
            [
                "metadata.lables: field not declared in the schema (the API server prunes it)",
                "spec.colour: field not declared in the schema (the API server prunes it)",
                "spec.size: expected integer, got string \"1\"",
            ]
        );
        assert!(!schemas.knows("example.com/v2", "Widget"));
        let broken = json!({"metadata": {"name": "b"}, "spec": {"names": {"kind": "B"}}});
        assert!(
            schemas
                .add_crd(&broken)
                .unwrap_err()
                .to_string()
                .contains("no spec.group")
        );
    }
}
