//! Putting back keyed lists edited by hand when the API server refuses ruleop's apply.
//!
//! Server-side apply merges keyed lists by key: after someone changes a key field (a
//! Service's `spec.ports[0].port`), ruleop's apply adds its entry beside the edited one, and
//! the server may reject the result (`Duplicate value` for the port name). The planner then
//! supplies a JSON patch that replaces those lists as observed (guarded by `test`), sent with
//! a field manager of its own; the apply follows, and that manager's record is removed so
//! ruleop's applied configuration alone owns the fields (a field the rule stops rendering is
//! still removed by a later apply).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value as Json, json};

use crate::telemetry::Metrics;
use ruleop_schema::meta;

/// Why a repair did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The planner's patch is not a JSON patch.
    #[error("malformed repair patch: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The API server refused a request.
    #[error("{step}: {source}")]
    Api {
        /// Which request.
        step: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Whether the API server refused a write as invalid (422).
pub fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}

/// Replaces the lists in `patch`, applies `object` again, then drops the repair's
/// managed-fields record.
pub async fn put_back(
    api: &Api<DynamicObject>,
    name: &str,
    object: &Json,
    patch: &Json,
    metrics: &Metrics,
) -> Result<(), RepairError> {
    let step = |step: &'static str| move |source| RepairError::Api { step, source };
    let ops = serde_json::from_value(patch.clone())?;
    let params = PatchParams {
        field_manager: Some(meta::REPAIR_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    metrics.write("repair");
    api.patch(name, &params, &Patch::<Json>::Json(ops))
        .await
        .map_err(step("replace edited lists"))?;
    metrics.write("apply");
    let applied = api
        .patch(
            name,
            &PatchParams::apply(meta::FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(step("apply after replacing edited lists"))?;
    let Some(release) = release_patch(&serde_json::to_value(&applied)?) else {
        return Ok(());
    };
    metrics.write("repair");
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::<Json>::Json(serde_json::from_value(release)?),
    )
    .await
    .map_err(step("drop the repair's managed fields"))?;
    Ok(())
}

/// A JSON patch removing the repair field manager's entries from `metadata.managedFields`,
/// each guarded by a `test` of its manager.
fn release_patch(object: &Json) -> Option<Json> {
    let fields = object.pointer("/metadata/managedFields")?.as_array()?;
    let ops: Vec<Json> = fields
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, f)| f.get("manager").and_then(Json::as_str) == Some(meta::REPAIR_FIELD_MANAGER))
        .flat_map(|(i, _)| {
            let path = format!("/metadata/managedFields/{i}");
            [
                json!({"op": "test", "path": format!("{path}/manager"), "value": meta::REPAIR_FIELD_MANAGER}),
                json!({"op": "remove", "path": path}),
            ]
        })
        .collect();
    (!ops.is_empty()).then_some(Json::Array(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_repair_managers_records_are_released_last_first() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "ruleop", "operation": "Apply"},
            {"manager": "ruleop-repair", "operation": "Update"},
            {"manager": "kubectl", "operation": "Update"},
            {"manager": "ruleop-repair", "operation": "Update"}]}});
        assert_eq!(
            release_patch(&object).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/managedFields/3/manager", "value": "ruleop-repair"},
                {"op": "remove", "path": "/metadata/managedFields/3"},
                {"op": "test", "path": "/metadata/managedFields/1/manager", "value": "ruleop-repair"},
                {"op": "remove", "path": "/metadata/managedFields/1"},
            ])
        );
        assert_eq!(
            release_patch(&json!({"metadata": {"managedFields": [{"manager": "ruleop"}]}})),
            None
        );
        assert_eq!(release_patch(&json!({"metadata": {}})), None);
    }

    #[test]
    fn a_planner_patch_parses_as_a_json_patch() {
        let ops = json!([
            {"op": "test", "path": "/spec/ports", "value": []},
            {"op": "replace", "path": "/spec/ports", "value": [{"port": 80}]}]);
        assert!(serde_json::from_value(ops).map(Patch::<Json>::Json).is_ok());
        let bad = json!([{"op": "frobnicate"}]);
        assert!(
            serde_json::from_value(bad)
                .map(Patch::<Json>::Json)
                .is_err()
        );
    }
}
