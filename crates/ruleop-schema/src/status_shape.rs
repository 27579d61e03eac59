//! Which of ruleop's status keys a parent's schema lets it write: decided once per rule and
//! parent kind, from the parent's schema (the cluster's OpenAPI, a CRD, the built-in snapshot).
//!
//! The API server refuses a status apply naming a field its schema does not declare, so
//! ruleop leaves out what the schema lacks instead of losing the whole status. On a built-in
//! kind (a Deployment) the declared status fields belong to its own controller: ruleop writes
//! there only its conditions, as entries of a `conditions` list keyed by `type`
//! (`Available` stays the Deployment controller's, `Ready` is ruleop's).

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

use crate::schema::{JsonSchema, field_schema};

/// `status.conditions`.
pub const CONDITIONS: &str = "conditions";
/// `status.observedGeneration`, and the same key inside each condition.
pub const OBSERVED_GENERATION: &str = "observedGeneration";
/// The key of each condition (a `conditions` list ruleop shares is keyed by it).
pub const TYPE: &str = "type";
/// The condition keys ruleop always writes: without them there is no condition.
pub const REQUIRED_CONDITION_KEYS: [&str; 2] = [TYPE, "status"];
/// The condition keys ruleop writes when the condition schema has them.
pub const OPTIONAL_CONDITION_KEYS: [&str; 4] = [
    "reason",
    "message",
    "lastTransitionTime",
    OBSERVED_GENERATION,
];

/// A set of names that may be everything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// Any name (the schema keeps unknown fields, or is not known).
    Any,
    /// These names only.
    Only(BTreeSet<String>),
}

impl Allowed {
    fn contains(&self, name: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(names) => names.contains(name),
        }
    }
}

/// What of ruleop's part of a status may be written on a parent kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusShape {
    /// The rule's own status fields that may be written.
    fields: Allowed,
    /// Whether ruleop's conditions may be written at all.
    conditions: bool,
    /// Of [`OPTIONAL_CONDITION_KEYS`], those each condition may carry.
    condition_keys: Allowed,
    /// Whether `status.observedGeneration` may be written.
    observed_generation: bool,
    /// Whether the parent is a built-in kind (its status is its own controller's).
    builtin: bool,
}

impl Default for StatusShape {
    fn default() -> Self {
        Self::unknown()
    }
}

/// What the shape decision needs to ask of a schema (a live OpenAPI one, or a JSON one).
pub trait SchemaView: Sized {
    /// The schema of field `name` of a mapping here, when the mapping keeps that field
    /// (declared, or any field is); `None` when it would be refused or pruned.
    fn field(&self, name: &str) -> Option<Self>;
    /// Whether a mapping here keeps fields it does not declare.
    fn is_open(&self) -> bool;
    /// The schema of a list's entries, when this is a list.
    fn items(&self) -> Option<Self>;
    /// A list's map keys: `Some(keys)` for a map list, `Some([])` for another kind of list,
    /// `None` when the schema does not say (the built-in snapshot has no merge hints).
    fn map_keys(&self) -> Option<Vec<String>>;
}

impl StatusShape {
    /// The shape when the parent's schema is not known: everything ruleop writes.
    pub fn unknown() -> Self {
        Self {
            fields: Allowed::Any,
            conditions: true,
            condition_keys: Allowed::Any,
            observed_generation: true,
            builtin: false,
        }
    }

    /// Decides the shape from the schema of the whole parent object (`root`), for a rule
    /// writing the status fields `rule_fields`. `builtin`: the kind is served by the API
    /// server itself, its status written by its own controller.
    pub fn decide<'a, S: SchemaView>(
        root: &S,
        builtin: bool,
        rule_fields: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let none = || Allowed::Only(BTreeSet::new());
        let Some(status) = root.field("status") else {
            return Self {
                fields: none(),
                conditions: false,
                condition_keys: none(),
                observed_generation: false,
                builtin,
            };
        };
        let conditions = status.field(CONDITIONS).and_then(|c| {
            // A list the kind's controller writes too must be merged by type, else
            // ruleop's apply would replace its conditions.
            if builtin && c.map_keys().is_some_and(|k| k != [TYPE]) {
                return None;
            }
            let item = c.items()?;
            let has = |k: &str| item.field(k).is_some();
            if !REQUIRED_CONDITION_KEYS.iter().all(|k| has(k)) {
                return None;
            }
            Some(if item.is_open() {
                Allowed::Any
            } else {
                Allowed::Only(
                    OPTIONAL_CONDITION_KEYS
                        .iter()
                        .filter(|k| has(k))
                        .map(|k| (*k).to_string())
                        .collect(),
                )
            })
        });
        let fields = if builtin {
            // Every declared field is the kind's controller's; any other is refused.
            none()
        } else if status.is_open() {
            Allowed::Any
        } else {
            Allowed::Only(
                rule_fields
                    .into_iter()
                    .filter(|f| status.field(f).is_some())
                    .map(str::to_string)
                    .collect(),
            )
        };
        Self {
            fields,
            conditions: conditions.is_some(),
            condition_keys: conditions.unwrap_or_else(none),
            observed_generation: !builtin && status.field(OBSERVED_GENERATION).is_some(),
            builtin,
        }
    }

    /// Whether the parent is a built-in kind.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Whether the rule's status field `name` may be written.
    pub fn allows_field(&self, name: &str) -> bool {
        self.fields.contains(name)
    }

    /// Whether ruleop's conditions may be written.
    pub fn allows_conditions(&self) -> bool {
        self.conditions
    }

    /// Whether each condition may carry `key` (one of [`OPTIONAL_CONDITION_KEYS`]).
    pub fn allows_condition_key(&self, key: &str) -> bool {
        self.conditions && self.condition_keys.contains(key)
    }

    /// Whether `status.observedGeneration` may be written.
    pub fn allows_observed_generation(&self) -> bool {
        self.observed_generation
    }

    /// `condition` without the keys the condition schema lacks.
    pub fn condition(&self, mut condition: Json) -> Json {
        if let Some(c) = condition.as_object_mut() {
            for key in OPTIONAL_CONDITION_KEYS {
                if !self.allows_condition_key(key) {
                    c.remove(key);
                }
            }
        }
        condition
    }

    /// `status` (ruleop's part of a status) without what this shape does not allow.
    pub fn restrict(&self, status: Json) -> Json {
        let Json::Object(map) = status else {
            return status;
        };
        let out: Map<String, Json> = map
            .into_iter()
            .filter_map(|(k, v)| match k.as_str() {
                CONDITIONS if !self.conditions => None,
                CONDITIONS => {
                    let v = match v {
                        Json::Array(items) => {
                            Json::Array(items.into_iter().map(|c| self.condition(c)).collect())
                        }
                        other => other,
                    };
                    Some((k, v))
                }
                OBSERVED_GENERATION => self.observed_generation.then_some((k, v)),
                _ => self.allows_field(&k).then_some((k, v)),
            })
            .collect();
        Json::Object(out)
    }
}

/// Whether `api_version` is a group of the Kubernetes API itself (core, a group without a
/// dot such as `apps`, or `*.k8s.io`): its kinds' status is their own controllers'. A CRD
/// cannot take such a group without the API reviewers' approval.
pub fn is_builtin_group(api_version: &str) -> bool {
    let group = crate::meta::split_api_version(api_version).0;
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// The schema of a field an open mapping keeps without declaring it: anything goes below.
static ANYTHING: std::sync::LazyLock<Json> = std::sync::LazyLock::new(|| {
    let open = serde_json::json!({"x-kubernetes-preserve-unknown-fields": true});
    serde_json::json!({"x-kubernetes-preserve-unknown-fields": true, "items": open})
});

impl SchemaView for JsonSchema<'_> {
    fn field(&self, name: &str) -> Option<Self> {
        if let Some(n) = field_schema(self.node(), name) {
            return Some(self.at(n));
        }
        self.is_open().then(|| JsonSchema::new(&ANYTHING, None))
    }

    fn is_open(&self) -> bool {
        self.node()
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Json::as_bool)
            .unwrap_or(false)
            || self
                .node()
                .get("additionalProperties")
                .is_some_and(|a| a.is_object() || a == &Json::Bool(true))
    }

    fn items(&self) -> Option<Self> {
        self.node().get("items").map(|i| self.at(i))
    }

    fn map_keys(&self) -> Option<Vec<String>> {
        match self
            .node()
            .get("x-kubernetes-list-type")
            .and_then(Json::as_str)
        {
            Some("map") => Some(
                self.node()
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
            ),
            Some(_) => Some(Vec::new()),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::openapi::Document;
    use serde_json::json;

    const FIELDS: [&str; 2] = ["image", "size"];

    #[test]
    fn a_deployment_takes_ruleops_conditions_only() {
        let schemas = crate::schema::KindSchemas::builtin().unwrap();
        let deployment = schemas.schema_of("apps/v1", "Deployment").unwrap();
        let shape = StatusShape::decide(&deployment, is_builtin_group("apps/v1"), FIELDS);
        assert!(shape.is_builtin() && shape.allows_conditions());
        // DeploymentCondition has no observedGeneration; the status's own is the
        // Deployment controller's, as are its declared fields (`replicas`).
        assert!(!shape.allows_condition_key(OBSERVED_GENERATION));
        assert!(shape.allows_condition_key("lastTransitionTime"));
        assert!(!shape.allows_observed_generation());
        assert!(!shape.allows_field("image") && !shape.allows_field("replicas"));
        let written = shape.restrict(json!({
            "image": "nginx", "observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "", "lastTransitionTime": "t", "observedGeneration": 3}],
        }));
        assert_eq!(
            written,
            json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "", "lastTransitionTime": "t"}]})
        );
        // A Service's conditions are metav1.Condition: observedGeneration is kept there.
        let service = schemas.schema_of("v1", "Service").unwrap();
        let shape = StatusShape::decide(&service, true, FIELDS);
        assert!(shape.allows_condition_key(OBSERVED_GENERATION));
    }

    /// A served document of a built-in kind whose conditions list is `list_type`.
    fn served(conditions: Json) -> Arc<Document> {
        Arc::new(Document::parse(&json!({"components": {"schemas": {
            "k.Thing": {"type": "object",
                "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Thing"}],
                "properties": {"status": {"allOf": [{"$ref": "#/components/schemas/k.ThingStatus"}]}}},
            "k.ThingStatus": {"type": "object", "properties": {
                "observedGeneration": {"type": "integer"}, "replicas": {"type": "integer"},
                "conditions": conditions}},
            "k.ThingCondition": {"type": "object", "properties": {
                "type": {"type": "string"}, "status": {"type": "string"},
                "message": {"type": "string"}}},
        }}})))
    }

    use std::sync::Arc;

    #[test]
    fn a_built_in_conditions_list_must_be_keyed_by_type() {
        let items = json!({"allOf": [{"$ref": "#/components/schemas/k.ThingCondition"}]});
        let keyed = json!({"type": "array", "items": items,
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]});
        let doc = served(keyed);
        let kind = doc.kind("apps", "v1", "Thing").unwrap();
        let shape = StatusShape::decide(&kind.root(), true, FIELDS);
        assert!(shape.allows_conditions() && shape.allows_condition_key("message"));
        assert!(!shape.allows_condition_key("reason"));
        assert!(!shape.allows_observed_generation());
        // Atomic: ruleop's apply would replace the controller's conditions.
        let doc = served(json!({"type": "array", "items": items}));
        let kind = doc.kind("apps", "v1", "Thing").unwrap();
        let shape = StatusShape::decide(&kind.root(), true, FIELDS);
        assert!(!shape.allows_conditions());
        assert_eq!(shape.restrict(json!({"conditions": []})), json!({}));
    }

    #[test]
    fn a_crd_status_takes_what_it_declares() {
        let crd = json!({"type": "object", "properties": {"status": {"type": "object",
            "properties": {"size": {"type": "integer"}, "secretName": {"type": "string"}}}}});
        let shape = StatusShape::decide(&JsonSchema::new(&crd, None), false, FIELDS);
        assert!(shape.allows_field("size") && !shape.allows_field("image"));
        assert!(!shape.allows_conditions() && !shape.allows_observed_generation());
        assert_eq!(
            shape.restrict(json!({"size": 2, "image": "x", "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True"}]})),
            json!({"size": 2})
        );
        // An open status keeps everything; no status at all takes nothing.
        let open = json!({"properties": {"status": {"type": "object",
            "x-kubernetes-preserve-unknown-fields": true}}});
        let shape = StatusShape::decide(&JsonSchema::new(&open, None), false, FIELDS);
        assert!(shape.allows_field("image") && shape.allows_conditions());
        assert!(
            shape.allows_condition_key(OBSERVED_GENERATION) && shape.allows_observed_generation()
        );
        let none = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let shape = StatusShape::decide(&JsonSchema::new(&none, None), false, FIELDS);
        assert_eq!(shape.restrict(json!({"size": 1})), json!({}));
        // Unknown schema: everything, as before shapes.
        let all = json!({"size": 1, "observedGeneration": 2, "conditions": []});
        assert_eq!(StatusShape::unknown().restrict(all.clone()), all);
    }

    /// A CRD whose whole object keeps unknown fields, as the API server publishes it: no
    /// `status` schema at all, so everything ruleop writes is kept.
    #[test]
    fn a_served_crd_that_keeps_unknown_fields_takes_everything() {
        let doc = Arc::new(Document::parse(&json!({"components": {"schemas": {
            "test.w.v1.Widget": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [{"group": "w.test", "version": "v1", "kind": "Widget"}],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}},
        }}})));
        let kind = doc.kind("w.test", "v1", "Widget").unwrap();
        let shape = StatusShape::decide(&kind.root(), false, FIELDS);
        assert_eq!(shape, StatusShape::unknown());
    }

    #[test]
    fn kubernetes_groups_are_built_in() {
        assert!(is_builtin_group("v1") && is_builtin_group("apps/v1"));
        assert!(is_builtin_group("networking.k8s.io/v1"));
        assert!(!is_builtin_group("ownership.ruleop.test/v1"));
    }
}
