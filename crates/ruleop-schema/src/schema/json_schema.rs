//! OpenAPI v3 schemas as JSON, the one place that knows how they refer to each other: the
//! `$ref` form and its limits, the one resolver, which component describes which kind, and
//! [`JsonSchema`], a position in a schema with its references followed.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

/// How `$ref`s into a document's own components start.
pub const COMPONENTS: &str = "#/components/schemas/";
/// The component every resource quantity refers to.
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
/// The component every object's `metadata` refers to.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// References followed in a row at most: more is a cycle, a broken document.
pub const MAX_REF_HOPS: usize = 32;

/// (group, version, kind).
pub type Gvk = (String, String, String);

/// The components of an OpenAPI v3 document, the targets of its `$ref`s.
pub fn components_of(doc: &Json) -> Option<&Map<String, Json>> {
    doc.pointer("/components/schemas").and_then(Json::as_object)
}

/// The component `schema` refers to, when it is a `$ref`.
pub fn ref_name(schema: &Json) -> Option<&str> {
    let r = schema.get("$ref")?.as_str()?;
    Some(r.strip_prefix(COMPONENTS).unwrap_or(r))
}

/// The schema a lone-`allOf` wrapper holds: v3 wraps a `$ref` in `allOf` so that it can carry
/// a default and a description. A wrapper with its own fields or items is a schema itself.
pub fn wrapped(schema: &Json) -> Option<&Json> {
    match schema.get("allOf")?.as_array()?.as_slice() {
        [only] if schema.get("properties").is_none() && schema.get("items").is_none() => Some(only),
        _ => None,
    }
}

/// Where resolving a schema stopped short: at a `$ref` to a missing component, or after
/// [`MAX_REF_HOPS`] references (a cycle).
#[derive(Debug, Clone, Copy)]
pub struct Unresolved<'a> {
    /// The last schema reached.
    pub at: &'a Json,
    /// The missing component's name; `None` for a cycle.
    pub missing: Option<&'a str>,
}

impl std::fmt::Display for Unresolved<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.missing {
            Some(name) => write!(f, "no schema named {name:?}"),
            None => write!(f, "schema nested too deep"),
        }
    }
}

/// Follows `schema`'s `$ref`s into `components` to the schema they name; with `wrappers`,
/// lone-`allOf` wrappers too (the validator does not: it judges an `allOf` member's fields
/// with its object).
pub fn resolve<'a>(
    components: Option<&'a Map<String, Json>>,
    mut schema: &'a Json,
    wrappers: bool,
) -> Result<&'a Json, Unresolved<'a>> {
    for _ in 0..MAX_REF_HOPS {
        schema = if let Some(name) = ref_name(schema) {
            let missing = Unresolved {
                at: schema,
                missing: Some(name),
            };
            components.and_then(|c| c.get(name)).ok_or(missing)?
        } else if let Some(inner) = wrapped(schema).filter(|_| wrappers) {
            inner
        } else {
            return Ok(schema);
        };
    }
    Err(Unresolved {
        at: schema,
        missing: None,
    })
}

/// Which component describes which kind (`x-kubernetes-group-version-kind`).
pub fn kind_index(components: &Map<String, Json>) -> HashMap<Gvk, String> {
    let mut kinds = HashMap::new();
    for (name, schema) in components {
        for gvk in kinds_of(schema) {
            kinds.insert(gvk, name.clone());
        }
    }
    kinds
}

/// The kinds one component describes (`x-kubernetes-group-version-kind`).
pub fn kinds_of(schema: &Json) -> impl Iterator<Item = Gvk> + '_ {
    let gvks = schema
        .get("x-kubernetes-group-version-kind")
        .and_then(Json::as_array);
    gvks.into_iter().flatten().map(|gvk| {
        let s = |f: &str| gvk.get(f).and_then(Json::as_str).unwrap_or("").to_string();
        (s("group"), s("version"), s("kind"))
    })
}

/// The schema of field `name` of an object of schema `schema`: its own property, else the
/// schema every other key has (`additionalProperties` given as a schema, not as `true`).
pub fn field_schema<'a>(schema: &'a Json, name: &str) -> Option<&'a Json> {
    schema
        .get("properties")
        .and_then(|p| p.get(name))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// A JSON schema (a CRD version's `openAPIV3Schema`, or a component of OpenAPI documents
/// with `$ref`s into `components`), its references followed.
#[derive(Debug, Clone, Copy)]
pub struct JsonSchema<'a> {
    node: &'a Json,
    components: Option<&'a Map<String, Json>>,
}

impl<'a> JsonSchema<'a> {
    /// `node`, resolving `$ref`s in `components`; a broken reference stays where it stopped.
    pub fn new(node: &'a Json, components: Option<&'a Map<String, Json>>) -> Self {
        let node = resolve(components, node, true).unwrap_or_else(|stop| stop.at);
        Self { node, components }
    }

    /// The schema here, resolved.
    pub fn node(&self) -> &'a Json {
        self.node
    }

    /// `node`, a schema below this one, resolved in the same components.
    pub fn at(&self, node: &'a Json) -> Self {
        Self::new(node, self.components)
    }
}
