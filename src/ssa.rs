//! Server-side apply ownership of ruleop's field manager. Fields ruleop wrote with a non-apply
//! request (earlier versions merge-patched the status) stay owned by an `Update` entry, and an
//! apply that leaves them out does not remove them; folding that entry into ruleop's `Apply`
//! entry makes ruleop the sole applier of its fields again.

use serde_json::{Map, Value as Json, json};

use crate::meta;

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
