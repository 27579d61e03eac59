//! Writes to children: apply, recreate, hand fields over, delete with uid preconditions.

use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use serde_json::{Value as Json, json};

use super::error::{ActError, is_conflict, is_not_found};
use super::{Actor, Target, api_for, group_kind};
use crate::apply::repair;
use crate::apply::ssa;
use crate::cache::KindCache;
use ruleop_plan::{Action, Deletion, Desired};
use ruleop_schema::meta::{self, ObjectKey};

impl Actor {
    pub(super) async fn apply_one(
        &self,
        target: &Target<'_>,
        desired: &Desired,
    ) -> Result<ApplyResult, ActError> {
        let key = ObjectKey::of(&desired.object);
        let gk = group_kind(&key.api_version, &key.kind);
        let Some(cache) = target.kinds.get(&gk) else {
            return Ok(ApplyResult::Conflict(format!(
                "{key}: kind {gk} is not served by the cluster"
            )));
        };
        let api = api_for(&target.writer.client, cache, &key.namespace);
        let err = |verb: &'static str, source: kube::Error| ActError {
            verb,
            object: key.to_string(),
            source,
        };
        let parent_uid = meta::uid(target.parent);
        let rule = meta::label(&desired.object, meta::RULE_LABEL).unwrap_or_default();
        let not_ours = || ruleop_plan::not_owned_message(&key, meta::kind(target.parent));
        let mut uid = desired.uid.clone();
        match desired.action {
            Action::UpToDate => return Ok(ApplyResult::Done),
            Action::Conflict => return Ok(ApplyResult::Skipped),
            Action::Create => {
                let mut body = desired.object.clone();
                body["metadata"]["resourceVersion"] = json!(ssa::CREATE_ONLY);
                self.metrics.write("apply");
                let created = self.apply_json(&api, &key.name, &body, false).await;
                match created {
                    Ok(result) => {
                        // Recorded as the body an update of this object would send.
                        let mut update = desired.object.clone();
                        update["metadata"]["uid"] = json!(meta::uid(&result));
                        self.applied.record(key.clone(), &result, &update);
                        return Ok(ApplyResult::Done);
                    }
                    Err(e) if is_conflict(&e) => {
                        // The name is taken: by this parent's own child (a cache that has not
                        // seen it, or cannot, having lost its labels), or by someone else's.
                        let existing = api.get_opt(&key.name).await.map_err(|e| err("get", e))?;
                        let Some(existing) = existing else {
                            return Err(err("create", e));
                        };
                        let json = serde_json::to_value(&existing).unwrap_or(Json::Null);
                        if !ruleop_plan::is_ours(&json, rule, parent_uid) {
                            return Ok(ApplyResult::Conflict(not_ours()));
                        }
                        uid = Some(meta::uid(&json).to_string());
                    }
                    Err(e) => return Err(err("create", e)),
                }
            }
            Action::Recreate => {
                let old = uid
                    .clone()
                    .or_else(|| cache.get(&key.namespace, &key.name).map(|o| o.uid().into()));
                if let Some(old) = old {
                    self.metrics.write("delete");
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(old),
                            resource_version: None,
                        }),
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..DeleteParams::default()
                    };
                    match api.delete(&key.name, &dp).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(err("delete", e)),
                    }
                    // The deletion's watch event brings the next reconcile, which creates it anew.
                    return Ok(ApplyResult::Done);
                }
            }
            Action::Update => {
                let mut body = desired.object.clone();
                if let Some(uid) = &uid {
                    body["metadata"]["uid"] = json!(uid);
                }
                if let Some(observed) = cache.get(&key.namespace, &key.name)
                    && self.applied.unchanged_since(&key, &observed.json(), &body)
                {
                    return Ok(ApplyResult::Unchanged);
                }
                self.hand_over(&api, &key, &desired.handover).await?
            }
        }
        // The uid makes the API server refuse the apply if another object took the name since
        // it was observed (the object is only ever this one).
        let mut body = desired.object.clone();
        if let Some(uid) = &uid {
            body["metadata"]["uid"] = json!(uid);
        }
        self.metrics.write("apply");
        match self.apply_json(&api, &key.name, &body, false).await {
            Ok(result) => {
                self.applied.record(key.clone(), &result, &body);
                Ok(ApplyResult::Done)
            }
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("metadata.uid") => {
                Ok(ApplyResult::Conflict(not_ours()))
            }
            // Refused: maybe a hand-edited keyed list clashes with ours. Put it back, else
            // report the server's own reason.
            Err(e) if repair::is_invalid(&e) && desired.action == Action::Update => {
                let Some(patch) = &desired.repair else {
                    return Err(err("apply", e));
                };
                match repair::put_back(&api, &key.name, &body, patch, &self.metrics).await {
                    Ok(()) => {
                        tracing::info!(object = %key, "put back lists edited by hand");
                        Ok(ApplyResult::Done)
                    }
                    Err(why) => {
                        tracing::info!(object = %key, error = %why, "cannot put back edited lists");
                        Err(err("apply", e))
                    }
                }
            }
            Err(e) => Err(err("apply", e)),
        }
    }

    pub(super) async fn delete_one(
        &self,
        target: &Target<'_>,
        deletion: &Deletion,
    ) -> Result<(), ActError> {
        let gk = group_kind(&deletion.key.api_version, &deletion.key.kind);
        match target.kinds.get(&gk) {
            Some(cache) => self.delete_in(&target.writer.client, cache, deletion).await,
            None => Ok(()),
        }
    }

    async fn delete_in(
        &self,
        client: &kube::Client,
        cache: &KindCache,
        deletion: &Deletion,
    ) -> Result<(), ActError> {
        let api = api_for(client, cache, &deletion.key.namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(deletion.uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        self.metrics.write("delete");
        self.applied.forget(&deletion.key);
        match api.delete(&deletion.key.name, &dp).await {
            Ok(_) => Ok(()),
            // Gone already, or a newer object of that name: nothing of ours to delete.
            Err(e) if is_not_found(&e) || matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                Ok(())
            }
            Err(e) => Err(ActError {
                verb: "delete",
                object: deletion.key.to_string(),
                source: e,
            }),
        }
    }

    /// Before an update stops sending `fields` (`managedElsewhere`), gives those ruleop still
    /// owns to [`meta::HANDOVER_MANAGER`] at their live value: applying without them then
    /// releases them instead of removing them (a Deployment would fall back to 1 replica).
    async fn hand_over(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        fields: &[String],
    ) -> Result<(), ActError> {
        if fields.is_empty() {
            return Ok(());
        }
        let err = |verb: &'static str, source: kube::Error| ActError {
            verb,
            object: key.to_string(),
            source,
        };
        // The cache drops managedFields, so ownership is read from the live object.
        let Some(live) = api.get_opt(&key.name).await.map_err(|e| err("get", e))? else {
            return Ok(());
        };
        let live = serde_json::to_value(&live).unwrap_or(Json::Null);
        let owned = crate::apply::handover::owned_by(&live, meta::FIELD_MANAGER, fields);
        let Some(config) = crate::apply::handover::configuration(&live, &owned) else {
            return Ok(());
        };
        tracing::info!(object = %key, fields = ?owned, "handing fields over before ruleop stops setting them");
        self.metrics.write("apply");
        // Not forced: should another manager hold a field by now, nothing is overwritten.
        api.patch(
            &key.name,
            &PatchParams::apply(meta::HANDOVER_MANAGER),
            &Patch::Apply(&config),
        )
        .await
        .map_err(|e| err("hand over fields of", e))?;
        Ok(())
    }

    /// Deletes `obj` (of `cache`'s kind) through `client` if it is still the same object.
    pub async fn delete_object(
        &self,
        client: &kube::Client,
        cache: &KindCache,
        obj: &Json,
    ) -> Result<(), ActError> {
        let deletion = Deletion {
            child: String::new(),
            key: ObjectKey::of(obj),
            uid: meta::uid(obj).to_string(),
            reason: String::new(),
        };
        self.delete_in(client, cache, &deletion).await
    }
}

/// What became of one desired child.
pub(super) enum ApplyResult {
    /// Applied, or nothing to apply.
    Done,
    /// Not sent: the object is exactly what ruleop's last apply of this body produced.
    Unchanged,
    /// Left alone: the plan found the name taken.
    Skipped,
    /// Left alone: the API server found the name taken by an object that is not ours.
    Conflict(String),
}
