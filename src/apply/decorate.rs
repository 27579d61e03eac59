//! Writes of decorations: labels and annotations on objects a rule does not own, applied
//! with server-side apply under the parent's decoration field manager, never forced (another
//! manager's key is never taken) and never creating the object.
//!
//! The body holds only `apiVersion`, `kind`, `metadata.name`/`namespace`/`uid` and the
//! labels and annotations: an apply owns exactly what its body holds, so no other field is
//! touched, and an apply without any label or annotation removes exactly the manager's keys.
//! The `uid` is the guard: an apply naming a uid never creates an object (the API server
//! refuses it: the object may have been deleted since the cache saw it), and never touches
//! another object that took the name.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value as Json, json};

use super::error::{ActError, is_conflict, is_not_found};
use super::{Actor, Target, api_for, group_kind};
use ruleop_plan::Decorate;

/// The apply body of `d`.
pub fn body(d: &Decorate) -> Json {
    let mut metadata = json!({"name": d.key.name, "uid": d.uid});
    if !d.key.namespace.is_empty() {
        metadata["namespace"] = json!(d.key.namespace);
    }
    // An empty map would be owned as a field of its own: left out instead.
    if !d.labels.is_empty() {
        metadata["labels"] = json!(d.labels);
    }
    if !d.annotations.is_empty() {
        metadata["annotations"] = json!(d.annotations);
    }
    json!({"apiVersion": d.key.api_version, "kind": d.key.kind, "metadata": metadata})
}

/// Applies `d` through `api`: `false` when the object is gone or was replaced meanwhile
/// (the API server answers 409 "uid mismatch" when no object exists, and creates nothing;
/// 422 "metadata.uid ... immutable" when another object took the name, and leaves it alone). That is no error: the watch event of the change reconciles the parent again.
pub async fn write(api: &Api<DynamicObject>, d: &Decorate) -> Result<bool, kube::Error> {
    let params = PatchParams::apply(&d.manager);
    match api
        .patch(&d.key.name, &params, &Patch::Apply(body(d)))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) || is_uid_mismatch(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Actor {
    /// Applies the plan's decorations and removals; the first failure stops the rest.
    pub(super) async fn decorate(
        &self,
        target: &Target<'_>,
        plan: &ruleop_plan::Plan,
    ) -> Result<(), ActError> {
        for d in plan.decorate.iter().chain(&plan.undecorate) {
            let gk = group_kind(&d.key.api_version, &d.key.kind);
            let Some(cache) = target.kinds.get(&gk) else {
                continue;
            };
            let api = api_for(&target.writer.client, cache, &d.key.namespace);
            self.metrics.write("decorate");
            match write(&api, d).await {
                Ok(_) => {}
                Err(source) => {
                    return Err(ActError {
                        verb: "decorate",
                        object: d.key.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

fn is_uid_mismatch(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s)
        if (is_conflict(e) && s.message.contains("uid mismatch"))
            || (s.code == 422 && s.message.contains("metadata.uid")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleop_schema::meta::ObjectKey;
    use std::collections::BTreeMap;

    #[test]
    fn the_body_holds_only_identity_labels_and_annotations() {
        let mut d = Decorate {
            key: ObjectKey {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: "ns".into(),
                name: "web-0".into(),
            },
            uid: "u1".into(),
            manager: "ruleop-decorate/r/p".into(),
            labels: BTreeMap::from([("pod-name".to_string(), "web-0".to_string())]),
            annotations: BTreeMap::new(),
        };
        assert_eq!(
            body(&d),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "web-0", "namespace": "ns", "uid": "u1", "labels": {"pod-name": "web-0"}}})
        );
        d.labels.clear();
        assert_eq!(
            body(&d),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "ns", "uid": "u1"}})
        );
    }
}
