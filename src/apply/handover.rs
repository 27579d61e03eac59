//! Handing fields over to other managers under server-side apply: a field ruleop stops
//! sending (`managedElsewhere`) is first co-owned, at its live value, by a second field
//! manager, so ruleop's next apply without it releases the field instead of removing it.

use serde_json::{Map, Value as Json, json};

use ruleop_schema::meta;

/// The `managedFields` entry of `manager`'s server-side applies to the object itself (not
/// to a subresource such as `status`).
fn applied_fields<'a>(live: &'a Json, manager: &str) -> impl Iterator<Item = &'a Json> {
    live.pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| {
            e.get("manager").and_then(Json::as_str) == Some(manager)
                && e.get("operation").and_then(Json::as_str) == Some("Apply")
                && e.get("subresource")
                    .and_then(Json::as_str)
                    .is_none_or(str::is_empty)
        })
        .filter_map(|e| e.get("fieldsV1"))
}

/// Whether the field set `fields` (FieldsV1) holds the dotted `path` or anything below it.
fn holds(fields: &Json, path: &str) -> bool {
    path.split('.')
        .try_fold(fields, |set, part| set.get(format!("f:{part}")))
        .is_some()
}

/// Those of the dotted `paths` that `manager` owns on `live` through server-side apply and
/// that have a value there: the fields to hand over before `manager` stops sending them.
pub fn owned_by(live: &Json, manager: &str, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter(|p| value_at(live, p).is_some())
        .filter(|p| applied_fields(live, manager).any(|f| holds(f, p)))
        .cloned()
        .collect()
}

/// Sets `parts` (a path of keys) in `target` to `value`, creating mappings on the way.
fn insert(target: &mut Json, parts: &[&str], value: Json) -> bool {
    let Some(map) = target.as_object_mut() else {
        return false;
    };
    match parts {
        [] => false,
        [last] => {
            map.insert((*last).into(), value);
            true
        }
        [first, rest @ ..] => insert(map.entry(*first).or_insert_with(|| json!({})), rest, value),
    }
}

fn value_at<'a>(obj: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(obj, |v, part| v.get(part))
}

/// An apply configuration naming `live` and carrying exactly `paths` at their live values
/// (paths without a value are left out); `None` when there is nothing to carry.
pub fn configuration(live: &Json, paths: &[String]) -> Option<Json> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(meta::name(live)));
    if !meta::namespace(live).is_empty() {
        metadata.insert("namespace".into(), json!(meta::namespace(live)));
    }
    let mut out = json!({
        "apiVersion": meta::api_version(live),
        "kind": meta::kind(live),
        "metadata": metadata,
    });
    let mut carried = false;
    for path in paths {
        let Some(value) = value_at(live, path) else {
            continue;
        };
        let parts: Vec<&str> = path.split('.').collect();
        carried |= insert(&mut out, &parts, value.clone());
    }
    carried.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(managed: Json) -> Json {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "managedFields": managed},
            "spec": {"replicas": 3, "paused": false,
                "template": {"metadata": {"annotations": {"a": "1"}}}}})
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_fields_the_manager_applied_are_handed_over() {
        let live = deployment(json!([
            {"manager": "ruleop", "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:metadata": {"f:annotations": {"f:a": {}}}}}}},
            {"manager": "ruleop", "operation": "Apply", "subresource": "status",
             "fieldsV1": {"f:spec": {"f:paused": {}}}},
            {"manager": "kubectl", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:paused": {}}}},
        ]));
        let wanted = paths(&[
            "spec.replicas",
            "spec.paused",
            "spec.template.metadata.annotations",
            "spec.missing",
        ]);
        assert_eq!(
            owned_by(&live, "ruleop", &wanted),
            ["spec.replicas", "spec.template.metadata.annotations"]
        );
        assert!(owned_by(&live, "other", &wanted).is_empty());
        // Another manager's update took it: nothing of ruleop's to hand over.
        let taken = deployment(json!([
            {"manager": "ruleop", "operation": "Apply", "fieldsV1": {"f:spec": {"f:paused": {}}}},
            {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        ]));
        assert!(owned_by(&taken, "ruleop", &paths(&["spec.replicas"])).is_empty());
        assert!(owned_by(&deployment(json!(null)), "ruleop", &wanted).is_empty());
    }

    #[test]
    fn the_configuration_carries_exactly_the_live_values() {
        let live = deployment(json!([]));
        let config = configuration(
            &live,
            &paths(&[
                "spec.replicas",
                "spec.template.metadata.annotations",
                "spec.nope",
            ]),
        )
        .unwrap();
        assert_eq!(
            config,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "ns"},
                "spec": {"replicas": 3, "template": {"metadata": {"annotations": {"a": "1"}}}}})
        );
        assert!(configuration(&live, &paths(&["spec.nope"])).is_none());
        let cluster_scoped = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}});
        assert_eq!(
            configuration(&cluster_scoped, &paths(&["spec.finalizers"])).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"},
                "spec": {"finalizers": ["kubernetes"]}})
        );
    }
}
