//! Server-side apply as ruleop's field manager: the request parameters, the create-only
//! precondition, the status body, and folding ownership ruleop left with non-apply requests
//! (earlier versions merge-patched the status) into its apply entry. Fields owned by such an
//! `Update` entry are not removed by an apply that leaves them out; once folded, ruleop is
//! the sole applier of its fields again.

use kube::api::PatchParams;
use serde_json::{Map, Value as Json, json};

use ruleop_schema::meta;

/// The `resourceVersion` a create is applied with. No stored object has it, so the API
/// server refuses the apply (409) when any object holds the name already, and creates the
/// object otherwise (a create ignores it): a create that cannot take over an object, with
/// the same server-side apply ownership as later applies.
pub const CREATE_ONLY: &str = "9223372036854775807";

/// Server-side apply as ruleop, forced: ruleop's fields are ruleop's.
pub fn params() -> PatchParams {
    PatchParams::apply(meta::FIELD_MANAGER).force()
}

/// The apply body that sets `status` (ruleop's part of it) on `parent`.
pub fn status_of(parent: &Json, status: &Json) -> Json {
    let mut metadata = json!({"name": meta::name(parent)});
    if !meta::namespace(parent).is_empty() {
        metadata["namespace"] = json!(meta::namespace(parent));
    }
    json!({
        "apiVersion": meta::api_version(parent),
        "kind": meta::kind(parent),
        "metadata": metadata,
        "status": status,
    })
}

fn is_ruleops(entry: &Json, operation: &str, subresource: &str) -> bool {
    let s = |k: &str| entry.get(k).and_then(Json::as_str);
    s("manager") == Some(meta::FIELD_MANAGER)
        && s("operation") == Some(operation)
        && s("subresource").unwrap_or_default() == subresource
}

/// Adds every field of the field set `from` to `into` (FieldsV1 sets are nested maps).
fn union(into: &mut Json, from: &Json) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            union(into.entry(k.clone()).or_insert_with(|| json!({})), v);
        }
    }
}

/// A merge patch of `obj`'s `metadata.managedFields` that moves the fields of ruleop's
/// `Update` entries for `subresource` (`""`: the main resource) into its `Apply` entry,
/// guarded by the object's `resourceVersion`; `None` when there is nothing to fold.
pub fn fold_update_entries(obj: &Json, subresource: &str) -> Option<Json> {
    let entries = obj.pointer("/metadata/managedFields")?.as_array()?;
    let (updates, mut kept): (Vec<&Json>, Vec<Json>) = {
        let mut updates = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            if is_ruleops(e, "Update", subresource) {
                updates.push(e);
            } else {
                kept.push(e.clone());
            }
        }
        (updates, kept)
    };
    let first = *updates.first()?;
    let index = match kept
        .iter()
        .position(|e| is_ruleops(e, "Apply", subresource))
    {
        Some(i) => i,
        None => {
            let mut entry = first.clone();
            entry["operation"] = json!("Apply");
            entry["fieldsV1"] = json!({});
            kept.push(entry);
            kept.len() - 1
        }
    };
    let fields = kept[index]
        .as_object_mut()?
        .entry("fieldsV1")
        .or_insert_with(|| Json::Object(Map::new()));
    for u in &updates {
        if let Some(f) = u.get("fieldsV1") {
            union(fields, f);
        }
    }
    Some(json!({"metadata": {
        "resourceVersion": obj.pointer("/metadata/resourceVersion"),
        "managedFields": kept,
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_ruleops_update_entry_of_the_status_into_its_apply_entry() {
        let obj = json!({"metadata": {"resourceVersion": "7", "managedFields": [
            {"manager": "ruleop", "operation": "Apply", "fieldsV1": {"f:spec": {"f:size": {}}}},
            {"manager": "ruleop", "operation": "Apply", "subresource": "status",
             "fieldsV1": {"f:status": {"f:ready": {}}}},
            {"manager": "ruleop", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {".": {}, "f:nodes": {}}}},
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}},
        ]}});
        let patch = fold_update_entries(&obj, "status").unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let entries = patch["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:status": {"f:ready": {}, ".": {}, "f:nodes": {}}})
        );
        // Nothing to fold for the main resource, nor once folded.
        assert!(fold_update_entries(&obj, "").is_none());
        let folded = json!({"metadata": patch["metadata"].clone()});
        assert!(fold_update_entries(&folded, "status").is_none());
    }

    #[test]
    fn an_update_entry_alone_becomes_the_apply_entry() {
        let obj = json!({"metadata": {"resourceVersion": "1", "managedFields": [
            {"manager": "ruleop", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {"f:nodes": {}}}},
        ]}});
        let patch = fold_update_entries(&obj, "status").unwrap();
        assert_eq!(
            patch["metadata"]["managedFields"],
            json!([{"manager": "ruleop", "operation": "Apply", "subresource": "status",
                    "fieldsV1": {"f:status": {"f:nodes": {}}}}])
        );
    }
}
