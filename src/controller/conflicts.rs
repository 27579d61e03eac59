//! Parents waiting for a name another object holds (a `Conflict`): when that object changes
//! or goes away, they are reconciled at once instead of at their next periodic retry.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::queue::Key;
use crate::cache::{GroupKind, KindCache, ObjKey};
use ruleop_lang::rule::split_api_version;
use ruleop_plan::{Action, Plan};
use ruleop_schema::meta::ObjectKey;

/// The object keys each parent is in conflict over.
#[derive(Default)]
pub struct Conflicts {
    by_parent: HashMap<Key, Vec<(GroupKind, ObjKey)>>,
}

impl Conflicts {
    /// Records what `parent`'s last plan conflicted on (nothing: forgets it).
    pub fn set(&mut self, parent: &Key, objects: Vec<(GroupKind, ObjKey)>) {
        if objects.is_empty() {
            self.by_parent.remove(parent);
        } else {
            self.by_parent.insert(parent.clone(), objects);
        }
    }

    /// The parents in conflict over the object `kind` `key`.
    pub fn waiting_on(&self, kind: &GroupKind, key: &ObjKey) -> Vec<Key> {
        self.by_parent
            .iter()
            .filter(|(_, objects)| objects.iter().any(|(k, o)| k == kind && o == key))
            .map(|(parent, _)| parent.clone())
            .collect()
    }

    /// Forgets every parent of a rule.
    pub fn remove_rule(&mut self, rule: &str) {
        self.by_parent.retain(|k, _| k.rule != rule);
    }
}

/// Cached objects at the keys of the plan's creations.
pub fn name_holders(plan: &Plan, kinds: &HashMap<GroupKind, Arc<KindCache>>) -> Vec<Json> {
    plan.apply
        .iter()
        .filter(|d| d.action == Action::Create)
        .filter_map(|d| {
            let key = ObjectKey::of(&d.object);
            let gk = GroupKind {
                group: split_api_version(&key.api_version).0.to_string(),
                kind: key.kind.clone(),
            };
            kinds.get(&gk)?.get(&key.namespace, &key.name)
        })
        .map(|o| o.json())
        .collect()
}

/// The objects a plan leaves alone because another object holds their name.
pub fn conflicts_of(plan: &Plan) -> Vec<(GroupKind, ObjKey)> {
    plan.apply
        .iter()
        .filter(|d| d.action == Action::Conflict)
        .map(|d| {
            let key = ObjectKey::of(&d.object);
            let gk = GroupKind {
                group: split_api_version(&key.api_version).0.to_string(),
                kind: key.kind,
            };
            (gk, (key.namespace, key.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_parents_waiting_on_an_object_until_they_stop() {
        let cm = GroupKind {
            group: String::new(),
            kind: "ConfigMap".into(),
        };
        let shared = ("ns".to_string(), "shared".to_string());
        let parent = Key {
            rule: "beta".into(),
            namespace: "ns".into(),
            name: "b".into(),
        };
        let mut conflicts = Conflicts::default();
        conflicts.set(&parent, vec![(cm.clone(), shared.clone())]);
        assert_eq!(
            conflicts.waiting_on(&cm, &shared),
            std::slice::from_ref(&parent)
        );
        let other = ("ns".to_string(), "other".to_string());
        assert!(conflicts.waiting_on(&cm, &other).is_empty());
        conflicts.set(&parent, Vec::new());
        assert!(conflicts.waiting_on(&cm, &shared).is_empty());
        conflicts.set(&parent, vec![(cm.clone(), shared.clone())]);
        conflicts.remove_rule("beta");
        assert!(conflicts.waiting_on(&cm, &shared).is_empty());
    }
}
