//! Which parents a related object (e.g. a Pod) concerns. Each parent's rendered selector is
//! indexed under one of its labels, its anchor, so a related object's change visits only the
//! parents anchored at one of the object's own labels instead of every parent in the
//! namespace (which made routing O(parents) per Pod event).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cache::{Cached, ObjKey};
use ruleop_plan::Selector;

/// `(rule, related entry, namespace scope (None: every namespace), anchor label, value)`.
type Anchor = (String, usize, Option<String>, String, String);

struct Entry {
    selectors: Vec<Selector>,
    anchors: Vec<Anchor>,
}

/// Parents by the labels their related selectors require.
#[derive(Default)]
pub struct RelatedIndex {
    parents: HashMap<(String, ObjKey), Entry>,
    anchors: HashMap<Anchor, HashSet<ObjKey>>,
}

/// The selector key to index a related entry under: the first whose value is templated (it
/// differs per parent, so few parents share it), else the first.
pub fn anchor_key(selector: &BTreeMap<String, String>) -> Option<&str> {
    selector
        .iter()
        .find(|(_, v)| v.contains("{{"))
        .or_else(|| selector.iter().next())
        .map(|(k, _)| k.as_str())
}

impl RelatedIndex {
    /// Records a parent's rendered selectors (one per related entry of the rule), replacing
    /// what was recorded before. `scopes[i]` is the namespace entry `i` selects in (the
    /// parent's), or `None` when it selects in every namespace (a cluster-scoped parent or
    /// related kind); `anchor_keys[i]` is from [`anchor_key`].
    pub fn set(
        &mut self,
        rule: &str,
        parent: ObjKey,
        scopes: &[Option<String>],
        selectors: Vec<Selector>,
        anchor_keys: &[Option<&str>],
    ) {
        let key = (rule.to_string(), parent);
        if let Some(old) = self.parents.get(&key)
            && old.selectors == selectors
        {
            return;
        }
        self.remove(rule, &key.1);
        let anchors: Vec<Anchor> = selectors
            .iter()
            .zip(anchor_keys)
            .enumerate()
            .filter_map(|(i, (sel, k))| {
                let (k, v) = sel.get_key_value((*k)?)?;
                Some((
                    rule.to_string(),
                    i,
                    scopes.get(i).cloned().flatten(),
                    k.clone(),
                    v.clone(),
                ))
            })
            .collect();
        for a in &anchors {
            self.anchors
                .entry(a.clone())
                .or_default()
                .insert(key.1.clone());
        }
        self.parents.insert(key, Entry { selectors, anchors });
    }

    /// Forgets a parent.
    pub fn remove(&mut self, rule: &str, parent: &ObjKey) {
        let Some(entry) = self.parents.remove(&(rule.to_string(), parent.clone())) else {
            return;
        };
        for a in entry.anchors {
            if let Some(set) = self.anchors.get_mut(&a) {
                set.remove(parent);
                if set.is_empty() {
                    self.anchors.remove(&a);
                }
            }
        }
    }

    /// Forgets every parent of a rule (the rule changed or went away).
    pub fn remove_rule(&mut self, rule: &str) {
        let parents: Vec<ObjKey> = self
            .parents
            .keys()
            .filter(|(r, _)| r == rule)
            .map(|(_, p)| p.clone())
            .collect();
        for p in parents {
            self.remove(rule, &p);
        }
    }

    /// A parent's recorded selectors.
    pub fn selectors(&self, rule: &str, parent: &ObjKey) -> Option<&[Selector]> {
        self.parents
            .get(&(rule.to_string(), parent.clone()))
            .map(|e| e.selectors.as_slice())
    }

    /// The parents of `rule` whose selector for related entry `related` matches `obj`.
    pub fn matching(&self, rule: &str, related: usize, obj: &Cached) -> Vec<ObjKey> {
        let mut found = Vec::new();
        for scope in [Some(obj.namespace().to_string()), None] {
            for (k, v) in obj.labels() {
                let anchor = (
                    rule.to_string(),
                    related,
                    scope.clone(),
                    k.to_string(),
                    v.to_string(),
                );
                let Some(parents) = self.anchors.get(&anchor) else {
                    continue;
                };
                for p in parents {
                    let matches = self
                        .selectors(rule, p)
                        .and_then(|s| s.get(related))
                        .is_some_and(|sel| sel.iter().all(|(k, v)| obj.label(k) == Some(v)));
                    if matches {
                        found.push(p.clone());
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, labels: serde_json::Value) -> Cached {
        Cached::new(json!({"metadata": {"namespace": ns, "name": "p", "labels": labels}}))
    }

    fn key(ns: &str, name: &str) -> ObjKey {
        (ns.to_string(), name.to_string())
    }

    fn sel(pairs: &[(&str, &str)]) -> Selector {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn anchors_on_the_templated_label() {
        let raw: BTreeMap<String, String> = [
            ("app".to_string(), "memcached".to_string()),
            ("cr".to_string(), "{{ parent.metadata.name }}".to_string()),
        ]
        .into();
        assert_eq!(anchor_key(&raw), Some("cr"));
        let fixed: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        assert_eq!(anchor_key(&fixed), Some("app"));
    }

    #[test]
    fn finds_exactly_the_parents_whose_whole_selector_matches() {
        let mut index = RelatedIndex::default();
        let anchors = [Some("cr")];
        for name in ["one", "two"] {
            index.set(
                "mc",
                key("a", name),
                &[Some("a".into())],
                vec![sel(&[("app", "mc"), ("cr", name)])],
                &anchors,
            );
        }
        // The same names in another namespace, and a cluster-wide parent.
        index.set(
            "mc",
            key("b", "one"),
            &[Some("b".into())],
            vec![sel(&[("app", "mc"), ("cr", "one")])],
            &anchors,
        );
        index.set(
            "mc",
            key("", "all"),
            &[None],
            vec![sel(&[("app", "mc"), ("cr", "one")])],
            &anchors,
        );
        let found = index.matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "one"})));
        assert_eq!(found, [key("", "all"), key("a", "one")]);
        // Every label of the selector must match, not only the anchor.
        assert!(
            index
                .matching("mc", 0, &pod("a", json!({"app": "other", "cr": "two"})))
                .is_empty()
        );
        assert!(
            index
                .matching(
                    "other-rule",
                    0,
                    &pod("a", json!({"app": "mc", "cr": "one"}))
                )
                .is_empty()
        );
        // A parent whose selector changed moves; a removed one is gone.
        index.set(
            "mc",
            key("a", "one"),
            &[Some("a".into())],
            vec![sel(&[("app", "mc"), ("cr", "uno")])],
            &anchors,
        );
        assert_eq!(
            index.matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "uno"}))),
            [key("a", "one")]
        );
        index.remove("mc", &key("a", "one"));
        assert!(
            index
                .matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "uno"})))
                .is_empty()
        );
        index.remove_rule("mc");
        assert!(index.parents.is_empty() && index.anchors.is_empty());
    }
}
