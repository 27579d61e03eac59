//! Names ruleop writes onto objects (labels, annotations, finalizer, field manager) and small
//! accessors for untyped Kubernetes objects.

use serde_json::{Value as Json, json};

/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "ruleop";
/// The field manager of the patch that puts back lists edited by hand (see `repair`); its
/// record is removed right after.
pub const REPAIR_FIELD_MANAGER: &str = "ruleop-repair";
/// The field manager that keeps `managedElsewhere` fields ruleop stopped sending, at their
/// value, until another manager takes them.
pub const HANDOVER_MANAGER: &str = "ruleop-handover";
/// Standard label marking objects ruleop manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "ruleop";
/// The rule that rendered the object.
pub const RULE_LABEL: &str = "ruleop.dev/rule";
/// The uid of the parent the object was rendered for.
pub const OWNER_LABEL: &str = "ruleop.dev/owner";
/// The child (or cleanup step) name within the rule.
pub const CHILD_LABEL: &str = "ruleop.dev/child";
/// A replica's sequence number; newest is highest.
pub const REPLICA_ANNOTATION: &str = "ruleop.dev/replica";
/// A collection item's key (children with `forEach`).
pub const ITEM_ANNOTATION: &str = "ruleop.dev/item";
/// Hash of the rendered manifest, to tell template changes from no change.
pub const HASH_ANNOTATION: &str = "ruleop.dev/hash";
/// The finalizer of rules that declare cleanup.
pub const FINALIZER: &str = "ruleop.dev/cleanup";
/// On a parent: the number of the rule revision that last planned it (`RuleRevision`).
pub const REVISION_LABEL: &str = "ruleop.dev/revision";

/// `group`, `version` of an `apiVersion` (`v1` is the core group `""`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// `metadata.name`.
pub fn name(obj: &Json) -> &str {
    str_at(obj, "/metadata/name")
}

/// `metadata.namespace` (empty when cluster-scoped).
pub fn namespace(obj: &Json) -> &str {
    str_at(obj, "/metadata/namespace")
}

/// `metadata.uid`.
pub fn uid(obj: &Json) -> &str {
    str_at(obj, "/metadata/uid")
}

/// `kind`.
pub fn kind(obj: &Json) -> &str {
    str_at(obj, "/kind")
}

/// `apiVersion`.
pub fn api_version(obj: &Json) -> &str {
    str_at(obj, "/apiVersion")
}

/// The API group of `apiVersion` (empty for the core group).
pub fn group(obj: &Json) -> &str {
    split_api_version(api_version(obj)).0
}

/// A label's value.
pub fn label<'a>(obj: &'a Json, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("labels")?.get(key)?.as_str()
}

/// An annotation's value.
pub fn annotation<'a>(obj: &'a Json, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// Whether the object is being deleted.
pub fn is_deleting(obj: &Json) -> bool {
    at(obj, "/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Whether `metadata.finalizers` holds `finalizer`.
pub fn has_finalizer(obj: &Json, finalizer: &str) -> bool {
    at(obj, "/metadata/finalizers")
        .and_then(Json::as_array)
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(finalizer)))
}

/// Whether an ownerReference points at `owner_uid`.
pub fn is_owned_by(obj: &Json, owner_uid: &str) -> bool {
    at(obj, "/metadata/ownerReferences")
        .and_then(Json::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Json::as_str) == Some(owner_uid))
        })
}

/// The uid of the object's controller (the ownerReference with `controller: true`).
pub fn controller_uid(obj: &Json) -> Option<&str> {
    at(obj, "/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Json::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// Whether field manager `manager` has written the object (its `managedFields` name it).
pub fn written_by(obj: &Json, manager: &str) -> bool {
    at(obj, "/metadata/managedFields")
        .and_then(Json::as_array)
        .is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e.get("manager").and_then(Json::as_str) == Some(manager))
        })
}

/// The controller ownerReference that makes `parent` own a child.
pub fn owner_reference(parent: &Json) -> Json {
    json!({
        "apiVersion": api_version(parent),
        "kind": kind(parent),
        "name": name(parent),
        "uid": uid(parent),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Identity of an object: group, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ObjectKey {
    /// `apiVersion` as rendered.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `obj`.
    pub fn of(obj: &Json) -> Self {
        Self {
            api_version: api_version(obj).to_string(),
            kind: kind(obj).to_string(),
            namespace: namespace(obj).to_string(),
            name: name(obj).to_string(),
        }
    }

    /// Whether `obj` is this object ([`ObjectKey::same_object`] without building its key).
    pub fn is(&self, obj: &Json) -> bool {
        self.kind == kind(obj)
            && self.name == name(obj)
            && self.namespace == namespace(obj)
            && split_api_version(&self.api_version).0 == split_api_version(api_version(obj)).0
    }

    /// Same object, ignoring the API version (a kind is one resource across versions).
    pub fn same_object(&self, other: &ObjectKey) -> bool {
        self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
            && split_api_version(&self.api_version).0 == split_api_version(&other.api_version).0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// `obj.pointer(pointer)` without allocating: the planner reads metadata fields of every
/// observed object many times per plan. A pointer with escapes (`~0`, `~1`) takes the slow way.
pub fn at<'a>(obj: &'a Json, pointer: &str) -> Option<&'a Json> {
    if pointer.contains('~') {
        return obj.pointer(pointer);
    }
    let Some(path) = pointer.strip_prefix('/') else {
        return pointer.is_empty().then_some(obj);
    };
    path.split('/').try_fold(obj, |node, token| match node {
        Json::Object(map) => map.get(token),
        // As serde_json: no sign, no leading zero.
        Json::Array(items)
            if !token.starts_with('+') && (token == "0" || !token.starts_with('0')) =>
        {
            token.parse::<usize>().ok().and_then(|i| items.get(i))
        }
        _ => None,
    })
}

fn str_at<'a>(obj: &'a Json, pointer: &str) -> &'a str {
    at(obj, pointer).and_then(Json::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership() {
        let obj = json!({"metadata": {"ownerReferences": [{"uid": "u1"}], "finalizers": ["f"]}});
        assert!(is_owned_by(&obj, "u1"));
        assert!(!is_owned_by(&obj, "u2"));
        assert!(has_finalizer(&obj, "f"));
        assert_eq!(controller_uid(&obj), None);
        let controlled = json!({"metadata": {
            "ownerReferences": [{"uid": "u1"}, {"uid": "u2", "controller": true}],
            "managedFields": [{"manager": "kubectl"}, {"manager": FIELD_MANAGER}]}});
        assert_eq!(controller_uid(&controlled), Some("u2"));
        assert!(written_by(&controlled, FIELD_MANAGER));
        assert!(!written_by(&obj, FIELD_MANAGER));
    }

    #[test]
    fn pointers_read_like_serde_json() {
        let obj = json!({"a": {"b/c": 1, "l": [{"x": 2}], "m~n": 3}, "": 4});
        for p in [
            "", "/a", "/a/l/0/x", "/a/l/1", "/a/b~1c", "/a/m~0n", "/a/l/x", "/a/l/00", "/a/l/+0",
            "/", "a", "/z/y",
        ] {
            assert_eq!(at(&obj, p), obj.pointer(p), "{p}");
        }
    }
}
