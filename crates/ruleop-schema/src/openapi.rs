//! What the API server's OpenAPI v3 documents say about a kind's fields that matters when
//! comparing objects: each list's merge semantics (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`) and which values are resource quantities.
//!
//! Pure data: the controller fetches the documents (`controller::schemas`), the planner
//! only reads them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::schema::json_schema::{
    Gvk, MAX_REF_HOPS, QUANTITY, components_of, kinds_of, ref_name, wrapped,
};
use crate::status_shape::{SchemaView, StatusShape};

/// How server-side apply merges a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The list is replaced whole.
    Atomic,
    /// Scalars, each present once; entries from several managers are merged.
    Set,
    /// Mappings identified by the values of these fields; entries are merged by key.
    Map(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Object {
        properties: HashMap<String, Node>,
        additional: Option<Box<Node>>,
        /// `x-kubernetes-preserve-unknown-fields`: fields not declared are kept too.
        open: bool,
    },
    Array {
        items: Box<Node>,
        list: ListType,
    },
    Quantity,
    Ref(String),
    Other,
}

/// One parsed OpenAPI v3 document (one group-version).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Document {
    types: HashMap<String, Node>,
    /// (group, version, kind) → component name.
    kinds: HashMap<Gvk, String>,
}

impl Document {
    /// Parses a document as served at `/openapi/v3/apis/<group>/<version>`. Parts it does not
    /// understand are kept as "no information".
    pub fn parse(doc: &Json) -> Document {
        let mut document = Document::default();
        for (name, schema) in components_of(doc).into_iter().flatten() {
            document.add(name.clone(), schema);
        }
        document
    }

    /// Adds the component `name` (its schema `schema`): a reader can build a document one
    /// component at a time and drop each one's JSON at once.
    pub fn add(&mut self, name: String, schema: &Json) {
        for gvk in kinds_of(schema) {
            self.kinds.insert(gvk, name.clone());
        }
        self.types.insert(name, parse_node(schema));
    }

    /// The schema of `kind` in this document, if it describes that kind.
    pub fn kind(self: &Arc<Self>, group: &str, version: &str, kind: &str) -> Option<KindSchema> {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        let root = self.kinds.get(&key)?.clone();
        Some(KindSchema {
            doc: self.clone(),
            root,
        })
    }

    fn resolve<'a>(&'a self, mut node: &'a Node) -> Option<&'a Node> {
        for _ in 0..MAX_REF_HOPS {
            match node {
                Node::Ref(name) => node = self.types.get(name)?,
                other => return Some(other),
            }
        }
        None
    }
}

fn parse_node(v: &Json) -> Node {
    if let Some(name) = ref_name(v) {
        return if name == QUANTITY {
            Node::Quantity
        } else {
            Node::Ref(name.to_string())
        };
    }
    if let Some(only) = wrapped(v) {
        return parse_node(only);
    }
    if let Some(items) = v.get("items") {
        return Node::Array {
            items: Box::new(parse_node(items)),
            list: list_type(v),
        };
    }
    let properties = v.get("properties").and_then(Json::as_object);
    let additional = v
        .get("additionalProperties")
        .filter(|a| a.is_object())
        .map(|a| Box::new(parse_node(a)));
    let open = v
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if properties.is_none() && additional.is_none() && !open {
        return Node::Other;
    }
    Node::Object {
        properties: properties
            .into_iter()
            .flatten()
            .map(|(k, s)| (k.clone(), parse_node(s)))
            .collect(),
        additional,
        open,
    }
}

/// A list's semantics: `x-kubernetes-list-type`, else the strategic-merge extensions that
/// older built-in types still carry, else atomic (server-side apply's default).
fn list_type(v: &Json) -> ListType {
    let merge_key = v
        .get("x-kubernetes-patch-merge-key")
        .and_then(Json::as_str)
        .map(str::to_string);
    match v.get("x-kubernetes-list-type").and_then(Json::as_str) {
        Some("map") => {
            let keys: Vec<String> = v
                .get("x-kubernetes-list-map-keys")
                .and_then(Json::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .or_else(|| merge_key.map(|k| vec![k]))
                .unwrap_or_default();
            if keys.is_empty() {
                ListType::Atomic
            } else {
                ListType::Map(keys)
            }
        }
        Some("set") => ListType::Set,
        Some(_) => ListType::Atomic,
        None => {
            let merges = v
                .get("x-kubernetes-patch-strategy")
                .and_then(Json::as_str)
                .is_some_and(|s| s.split(',').any(|p| p == "merge"));
            match (merges, merge_key) {
                (true, Some(key)) => ListType::Map(vec![key]),
                (true, None) => ListType::Set,
                _ => ListType::Atomic,
            }
        }
    }
}

/// The schema of one kind (shares its document with the other kinds of the group-version).
#[derive(Clone)]
pub struct KindSchema {
    doc: Arc<Document>,
    root: String,
}

impl KindSchema {
    /// Whether `other` describes the kind as this does (read from an equal document).
    pub fn same_as(&self, other: &KindSchema) -> bool {
        self.root == other.root && (Arc::ptr_eq(&self.doc, &other.doc) || self.doc == other.doc)
    }
}

impl std::fmt::Debug for KindSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KindSchema({})", self.root)
    }
}

impl KindSchema {
    /// The schema of the whole object.
    pub fn root(&self) -> Schema<'_> {
        Schema {
            doc: &self.doc,
            node: self.doc.types.get(&self.root),
        }
    }
}

/// A position in a kind's schema. A position the schema does not describe (a field under
/// `x-kubernetes-preserve-unknown-fields`, or not declared) has no information: its lists are
/// atomic and its values plain, as server-side apply treats them.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    doc: &'a Document,
    node: Option<&'a Node>,
}

impl<'a> Schema<'a> {
    fn at(&self, node: Option<&'a Node>) -> Schema<'a> {
        Schema {
            doc: self.doc,
            node: node.and_then(|n| self.doc.resolve(n)),
        }
    }

    fn resolved(&self) -> Option<&'a Node> {
        self.node.and_then(|n| self.doc.resolve(n))
    }

    /// The schema of field `name` of a mapping here.
    pub fn field(&self, name: &str) -> Schema<'a> {
        match self.resolved() {
            Some(Node::Object {
                properties,
                additional,
                ..
            }) => self.at(properties.get(name).or(additional.as_deref())),
            _ => self.at(None),
        }
    }

    /// The schema of the entries of a list here.
    pub fn items(&self) -> Schema<'a> {
        match self.resolved() {
            Some(Node::Array { items, .. }) => self.at(Some(items)),
            _ => self.at(None),
        }
    }

    /// How a list here merges (atomic when the schema does not say).
    pub fn list_type(&self) -> &'a ListType {
        match self.resolved() {
            Some(Node::Array { list, .. }) => list,
            _ => &ListType::Atomic,
        }
    }

    /// Whether values here are mappings with declared fields (a struct, kept even when
    /// empty), not free-form maps.
    pub fn is_struct(&self) -> bool {
        matches!(self.resolved(), Some(Node::Object { properties, .. }) if !properties.is_empty())
    }

    /// Whether a mapping here keeps field `name`: declared, or any field is (a schema for
    /// every other key, or `x-kubernetes-preserve-unknown-fields`).
    pub fn declares(&self, name: &str) -> bool {
        match self.resolved() {
            Some(Node::Object {
                properties,
                additional,
                open,
            }) => *open || additional.is_some() || properties.contains_key(name),
            _ => false,
        }
    }

    /// Whether any field of a mapping here is kept (`x-kubernetes-preserve-unknown-fields`
    /// or a schema for every key).
    pub fn is_open(&self) -> bool {
        matches!(self.resolved(), Some(Node::Object { open, additional, .. }) if *open || additional.is_some())
    }

    /// Whether the schema says nothing here (a field kept by an open mapping).
    pub fn is_unknown(&self) -> bool {
        self.resolved().is_none()
    }

    /// Whether values here are lists.
    pub fn is_list(&self) -> bool {
        matches!(self.resolved(), Some(Node::Array { .. }))
    }

    /// Whether values here are resource quantities.
    pub fn is_quantity(&self) -> bool {
        matches!(self.resolved(), Some(Node::Quantity))
    }
}

/// The schemas of the kinds a rule writes, by API group and kind.
#[derive(Debug, Clone)]
pub struct Schemas {
    kinds: HashMap<(String, String), KindSchema>,
    /// What of ruleop's status the parent's schema allows, once that schema is known.
    status: Option<Arc<StatusShape>>,
    /// Different for every content (a copy keeps it): remembered plans name the schemas
    /// they were compared with.
    version: u64,
}

impl Default for Schemas {
    fn default() -> Self {
        Self {
            kinds: HashMap::new(),
            status: None,
            version: next_version(),
        }
    }
}

fn next_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Schemas {
    /// Records the schema of `kind` in `group`.
    pub fn insert(&mut self, group: &str, kind: &str, schema: KindSchema) {
        self.kinds
            .insert((group.to_string(), kind.to_string()), schema);
        self.version = next_version();
    }

    /// Records the shape of the parent's status.
    pub fn set_status_shape(&mut self, shape: StatusShape) {
        self.status = Some(Arc::new(shape));
        self.version = next_version();
    }

    /// What of ruleop's status the parent's schema allows, when known.
    pub fn status_shape(&self) -> Option<&Arc<StatusShape>> {
        self.status.as_ref()
    }

    /// Identifies this content: two schemas with the same version hold the same schemas.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The schema of objects of `api_version`/`kind`, if known.
    pub fn get(&self, api_version: &str, kind: &str) -> Option<&KindSchema> {
        let group = crate::meta::split_api_version(api_version).0;
        self.kinds.get(&(group.to_string(), kind.to_string()))
    }

    /// Adds every schema of `other`.
    pub fn extend(&mut self, other: Schemas) {
        self.kinds.extend(other.kinds);
        if other.status.is_some() {
            self.status = other.status;
        }
        self.version = next_version();
    }

    /// Whether every schema of `other` is known here, the same.
    pub fn holds(&self, other: &Schemas) -> bool {
        other
            .kinds
            .iter()
            .all(|(k, schema)| self.kinds.get(k).is_some_and(|s| s.same_as(schema)))
    }

    /// Whether the schema of `group`/`kind` is known.
    pub fn contains(&self, group: &str, kind: &str) -> bool {
        self.kinds
            .contains_key(&(group.to_string(), kind.to_string()))
    }
}

impl SchemaView for Schema<'_> {
    fn field(&self, name: &str) -> Option<Self> {
        // Below a field an open mapping keeps (a CRD whose root keeps unknown fields has no
        // `status` schema at all), anything goes.
        (self.declares(name) || self.is_unknown()).then(|| Schema::field(self, name))
    }

    fn is_open(&self) -> bool {
        // No information: a field an open mapping keeps, anything goes below.
        Schema::is_open(self) || self.is_unknown()
    }

    fn items(&self) -> Option<Self> {
        (self.is_list() || self.is_unknown()).then(|| Schema::items(self))
    }

    fn map_keys(&self) -> Option<Vec<String>> {
        // The served documents carry every list's semantics: no hint means atomic.
        Some(match self.list_type() {
            ListType::Map(keys) => keys.clone(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trimmed copy of what the API server publishes for core/v1.
    fn core_v1() -> Json {
        json!({"components": {"schemas": {
            "io.k8s.api.core.v1.Pod": {
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
                "properties": {
                    "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                    "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}
                }
            },
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
            }},
            "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
                "containers": {"type": "array", "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]},
                    "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map"},
                "volumes": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Volume"}]},
                    "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge,retainKeys"},
                "tolerations": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Toleration"}]},
                    "x-kubernetes-list-type": "atomic"},
                "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
            }},
            "io.k8s.api.core.v1.Container": {"type": "object", "properties": {
                "name": {"type": "string"},
                "ports": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}]},
                    "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map"},
                "resources": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"}]},
                "volumeMounts": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.VolumeMount"}]},
                    "x-kubernetes-list-map-keys": ["mountPath"], "x-kubernetes-list-type": "map"}
            }},
            "io.k8s.api.core.v1.ResourceRequirements": {"type": "object", "properties": {
                "limits": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}}
            }},
            "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
            "io.k8s.api.core.v1.Loop": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Loop"}
        }}})
    }

    fn pod() -> KindSchema {
        Arc::new(Document::parse(&core_v1()))
            .kind("", "v1", "Pod")
            .unwrap()
    }

    #[test]
    fn list_types_come_from_the_extensions() {
        let pod = pod();
        let spec = pod.root().field("spec");
        assert_eq!(
            spec.field("containers").list_type(),
            &ListType::Map(vec!["name".into()])
        );
        // Strategic-merge extensions only: keyed by the patch merge key.
        assert_eq!(
            spec.field("volumes").list_type(),
            &ListType::Map(vec!["name".into()])
        );
        assert_eq!(spec.field("tolerations").list_type(), &ListType::Atomic);
        assert_eq!(spec.field("finalizers").list_type(), &ListType::Set);
        let container = spec.field("containers").items();
        assert_eq!(
            container.field("ports").list_type(),
            &ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert!(
            container
                .field("resources")
                .field("limits")
                .field("memory")
                .is_quantity()
        );
        assert!(!container.field("name").is_quantity());
    }

    #[test]
    fn unknown_positions_have_no_information() {
        let pod = pod();
        let nowhere = pod.root().field("spec").field("nope").field("deeper");
        assert_eq!(nowhere.items().list_type(), &ListType::Atomic);
        assert!(!nowhere.is_quantity());
        // Labels are a map of strings: any key has the value schema.
        assert!(
            !pod.root()
                .field("metadata")
                .field("labels")
                .field("x")
                .is_quantity()
        );
        let doc = Arc::new(Document::parse(&core_v1()));
        assert!(doc.kind("", "v1", "Service").is_none());
        assert!(doc.kind("apps", "v1", "Pod").is_none());
        // A ref cycle ends in "no information", not a hang.
        let looped = Schema {
            doc: &doc,
            node: doc.types.get("io.k8s.api.core.v1.Loop"),
        };
        assert_eq!(looped.at(looped.node).list_type(), &ListType::Atomic);
    }

    #[test]
    fn schemas_are_found_by_group_and_kind_across_versions() {
        let mut schemas = Schemas::default();
        schemas.insert("", "Pod", pod());
        assert!(schemas.get("v1", "Pod").is_some());
        assert!(schemas.get("apps/v1", "Pod").is_none());
        assert!(schemas.contains("", "Pod"));
    }
}
