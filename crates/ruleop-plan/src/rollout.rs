//! `replicas.rollout: RollingRecreate`: replicas whose rendering changed are replaced one at
//! a time (deleted, then created again by the scaling step), each only once every replica
//! exists and is ready, like a StatefulSet's rolling update.

use super::{Action, Deletion, Plan};
use crate::scale::ObservedReplica;
use ruleop_lang::rule::Child;
use ruleop_schema::meta::{self, ObjectKey};

/// Holds back the in-place update of changed replicas in `plan.apply[first..]` and, when the
/// replica set is `steady` and every replica ready, deletes the changed one with the highest
/// index.
pub(super) fn roll(
    child: &Child,
    observed: &[ObservedReplica<'_>],
    steady: bool,
    first: usize,
    plan: &mut Plan,
    waiting: &mut Vec<String>,
    held: &mut Vec<ObjectKey>,
) {
    // A replica is stale when its rendering changed (not mere drift, which apply repairs).
    let mut stale: Vec<&ObservedReplica<'_>> = Vec::new();
    let mut i = first;
    while i < plan.apply.len() {
        let d = &plan.apply[i];
        let key = ObjectKey::of(&d.object);
        let found = observed
            .iter()
            .find(|o| ObjectKey::of(o.object).same_object(&key));
        let changed = matches!(d.action, Action::Update | Action::Recreate)
            && found.is_some_and(|o| {
                meta::annotation(o.object, meta::HASH_ANNOTATION)
                    != meta::annotation(&d.object, meta::HASH_ANNOTATION)
            });
        match found {
            Some(o) if changed => {
                stale.push(o);
                held.push(key);
                plan.apply.remove(i);
            }
            _ => i += 1,
        }
    }
    if stale.is_empty() {
        return;
    }
    let all_ready = observed
        .iter()
        .all(|o| o.ready && !meta::is_deleting(o.object));
    if !steady || !all_ready {
        waiting.push(format!(
            "{}: rolling update, {} replica(s) to replace, waiting for every replica to be ready",
            child.name,
            stale.len()
        ));
        return;
    }
    stale.sort_by_key(|o| o.ordinal);
    let Some(next) = stale.pop() else { return };
    let key = ObjectKey::of(next.object);
    held.retain(|h| !h.same_object(&key));
    plan.delete.push(Deletion {
        child: child.name.clone(),
        key,
        uid: meta::uid(next.object).to_string(),
        reason: "rolling update: replaced with the new rendering".into(),
    });
    waiting.push(format!(
        "{}: rolling update, {} replica(s) to replace",
        child.name,
        stale.len() + 1
    ));
}
