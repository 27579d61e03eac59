//! Walks a structural OpenAPI v3 schema (a CRD version's) along a field path: which fields
//! can exist, as the API server's pruning decides.

use serde_json::{Value as Json, json};

use crate::schema::field_schema;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    /// A field (`.name` or `["name"]`).
    Field(String),
    /// An element of a list (`[0]`).
    Item,
}

/// Renders `path` as a template would write it: `spec.a[0].b`.
pub fn show(root: &str, path: &[Seg]) -> String {
    let mut out = root.to_string();
    for seg in path {
        match seg {
            Seg::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Seg::Item => out.push_str("[0]"),
        }
    }
    out
}

/// What a schema says of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Walk {
    /// The path can exist (or the schema does not restrict it).
    Allowed,
    /// `path[at]` cannot exist: the node before it has these fields (empty: none, e.g. a
    /// scalar or a closed object).
    Missing {
        /// Index of the first segment that cannot exist.
        at: usize,
        /// The fields the node before it allows.
        known: Vec<String>,
    },
}

/// The fields of ObjectMeta a template reads; anything below the maps and lists is allowed.
/// Deliberately looser than the real ObjectMeta component (`json_schema::OBJECT_META`): walking
/// needs no built-in components, and the real one would turn reads below those maps and lists
/// into findings.
fn object_meta() -> Json {
    let open = json!({"x-kubernetes-preserve-unknown-fields": true});
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let mut properties = serde_json::Map::new();
    for scalar in [
        "name",
        "namespace",
        "generateName",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        properties.insert(scalar.into(), json!({"type": "string"}));
    }
    properties.insert("labels".into(), map.clone());
    properties.insert("annotations".into(), map);
    for list in ["finalizers", "ownerReferences", "managedFields"] {
        properties.insert(list.into(), json!({"type": "array", "items": open}));
    }
    json!({"type": "object", "properties": properties})
}

/// Walks `schema` (a CRD's `openAPIV3Schema`, the whole object's) along `path`.
/// `apiVersion`, `kind` and `metadata` exist on every object whatever the schema says.
pub fn walk(schema: &Json, path: &[Seg]) -> Walk {
    let meta;
    let (start, rest) = match path.first() {
        Some(Seg::Field(f)) if f == "apiVersion" || f == "kind" => {
            return match path.len() {
                1 => Walk::Allowed,
                _ => Walk::Missing {
                    at: 1,
                    known: Vec::new(),
                },
            };
        }
        Some(Seg::Field(f)) if f == "metadata" => {
            meta = object_meta();
            (&meta, &path[1..])
        }
        _ => (schema, path),
    };
    let offset = path.len() - rest.len();
    match walk_node(start, rest) {
        Walk::Missing { at, known } => Walk::Missing {
            at: at + offset,
            known,
        },
        allowed => allowed,
    }
}

fn walk_node(schema: &Json, path: &[Seg]) -> Walk {
    let mut node = schema;
    for (i, seg) in path.iter().enumerate() {
        if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true))
            && !matches!(seg, Seg::Field(f) if has_property(node, f))
        {
            return Walk::Allowed;
        }
        let next = match seg {
            Seg::Field(name) => field_schema(node, name),
            // A numeric key of a map, or a list whose items say nothing: no verdict.
            Seg::Item => match node.get("items") {
                Some(items) => Some(items),
                None => return Walk::Allowed,
            },
        };
        match next {
            Some(n) => node = n,
            None if node.get("additionalProperties") == Some(&Json::Bool(true))
                || is_unstructured(node) =>
            {
                return Walk::Allowed;
            }
            None => {
                let known = node
                    .get("properties")
                    .and_then(Json::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                return Walk::Missing { at: i, known };
            }
        }
    }
    Walk::Allowed
}

fn has_property(node: &Json, name: &str) -> bool {
    node.get("properties").and_then(|p| p.get(name)).is_some()
}

/// A node that says nothing of its shape (`{}`, only combinators): no verdict below it.
fn is_unstructured(node: &Json) -> bool {
    node.get("type").is_none()
        && node.get("properties").is_none()
        && node.get("items").is_none()
        && node.get("x-kubernetes-int-or-string").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str) -> Vec<Seg> {
        path.split('.')
            .map(|s| match s {
                "[]" => Seg::Item,
                s => Seg::Field(s.to_string()),
            })
            .collect()
    }

    fn schema() -> Json {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "owner": {"type": "object", "properties": {"name": {"type": "string"}}},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "ports": {"type": "array", "items": {"type": "object",
                    "properties": {"port": {"type": "integer"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"known": {"type": "object", "properties": {}}}},
                "any": {"type": "object", "additionalProperties": true},
                "closed": {"type": "object"},
            }},
        }})
    }

    #[test]
    fn known_paths_are_allowed() {
        let s = schema();
        for p in [
            "spec.size",
            "spec.owner.name",
            "spec.tags.anything",
            "spec.ports.[].port",
            "spec.extra.whatever.deep",
            "spec.any.x.y",
            "metadata.name",
            "metadata.labels.app",
            "metadata.ownerReferences.[].uid",
            "kind",
        ] {
            assert_eq!(walk(&s, &f(p)), Walk::Allowed, "{p}");
        }
    }

    #[test]
    fn a_field_the_schema_prunes_is_missing_at_its_segment() {
        let s = schema();
        let missing = |p: &str| match walk(&s, &f(p)) {
            Walk::Missing { at, known } => (at, known.join(",")),
            Walk::Allowed => panic!("{p} allowed"),
        };
        assert_eq!(
            missing("spec.replcas"),
            (1, "any,closed,extra,owner,ports,size,tags".into())
        );
        assert_eq!(missing("spec.owner.nmae").0, 2);
        assert_eq!(missing("spec.ports.[].prot"), (3, "port".into()));
        assert_eq!(missing("spec.size.value"), (2, String::new()));
        assert_eq!(missing("spec.closed.x"), (2, String::new()));
        // Below a preserve-unknown node, a declared child's own schema still applies.
        assert_eq!(missing("spec.extra.known.x").0, 3);
        assert_eq!(missing("metadata.nmae").0, 1);
        assert_eq!(missing("status.phase"), (0, "spec".into()));
        assert_eq!(missing("kind.x").0, 1);
    }

    #[test]
    fn paths_show_as_written() {
        assert_eq!(
            show("parent", &f("spec.ports.[].port")),
            "parent.spec.ports[0].port"
        );
    }
}
