//! The one routing index: which parents a watched object concerns, for every way a parent
//! reads objects it does not own. A parent's last plan records what it read: related objects
//! by label selector, looked-up objects by name, and objects holding a name it wants (a
//! `Conflict`); a change of such an object reconciles exactly the parents recorded for it.
//!
//! Related selectors are indexed under one of their labels, their anchor, so a related
//! object's change visits only the parents anchored at one of the object's own labels instead
//! of every parent in the namespace (which made routing O(parents) per Pod event).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cache::{Cached, GroupKind, ObjKey};
use ruleop_plan::Selector;

/// A parent: its rule's name and its key.
pub type Parent = (String, ObjKey);

/// What a parent's plan read, as the watch sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interest {
    /// One object: kind, namespace (empty for a cluster-scoped kind) and name.
    Object(GroupKind, String, String),
    /// Objects carrying a label, for one related entry of one rule: `(rule, related entry,
    /// namespace scope (None: every namespace), label, value)`.
    Label(String, usize, Option<String>, String, String),
}

/// Why a parent holds an interest; each is recorded and replaced on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facet {
    /// `spec.related`: label selectors.
    Related,
    /// `spec.lookups`: objects by name.
    Lookups,
    /// Children whose name another object holds.
    Conflicts,
    /// `spec.decorations` targets by name (those by selector are indexed as related
    /// selectors after the rule's own, at `related.len() + i`).
    Decorations,
}

/// Parents by what they read.
#[derive(Default)]
pub struct Routes {
    interests: HashMap<(Facet, Parent), Vec<Interest>>,
    parents: HashMap<Interest, HashSet<(Facet, Parent)>>,
    /// Each parent's rendered related selectors (one per related entry of its rule).
    selectors: HashMap<Parent, Vec<Selector>>,
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

impl Routes {
    /// Records what `parent` read for `facet`, replacing what was recorded before (nothing:
    /// forgets it).
    pub fn set(&mut self, facet: Facet, parent: Parent, interests: Vec<Interest>) {
        let key = (facet, parent);
        if self.interests.get(&key) == Some(&interests) {
            return;
        }
        self.forget(&key);
        if interests.is_empty() {
            return;
        }
        for i in &interests {
            self.parents
                .entry(i.clone())
                .or_default()
                .insert(key.clone());
        }
        self.interests.insert(key, interests);
    }

    fn forget(&mut self, key: &(Facet, Parent)) {
        let Some(interests) = self.interests.remove(key) else {
            return;
        };
        for i in interests {
            if let Some(set) = self.parents.get_mut(&i) {
                set.remove(key);
                if set.is_empty() {
                    self.parents.remove(&i);
                }
            }
        }
    }

    /// Records a parent's rendered related selectors, replacing what was recorded before.
    /// `scopes[i]` is the namespace entry `i` selects in (the parent's), or `None` when it
    /// selects in every namespace (a cluster-scoped parent or related kind); `anchor_keys[i]`
    /// is from [`anchor_key`].
    pub fn set_selectors(
        &mut self,
        parent: Parent,
        scopes: &[Option<String>],
        selectors: Vec<Selector>,
        anchor_keys: &[Option<&str>],
    ) {
        if self.selectors.get(&parent) == Some(&selectors) {
            return;
        }
        let anchors = selectors
            .iter()
            .zip(anchor_keys)
            .enumerate()
            .filter_map(|(i, (sel, k))| {
                let (k, v) = sel.get_key_value((*k)?)?;
                let scope = scopes.get(i).cloned().flatten();
                Some(Interest::Label(
                    parent.0.clone(),
                    i,
                    scope,
                    k.clone(),
                    v.clone(),
                ))
            })
            .collect();
        self.set(Facet::Related, parent.clone(), anchors);
        self.selectors.insert(parent, selectors);
    }

    /// Forgets a parent.
    pub fn remove(&mut self, parent: &Parent) {
        for facet in [
            Facet::Related,
            Facet::Lookups,
            Facet::Conflicts,
            Facet::Decorations,
        ] {
            self.forget(&(facet, parent.clone()));
        }
        self.selectors.remove(parent);
    }

    /// Forgets every parent of a rule (the rule changed or went away).
    pub fn remove_rule(&mut self, rule: &str) {
        let keys: Vec<(Facet, Parent)> = self
            .interests
            .keys()
            .filter(|(_, (r, _))| r == rule)
            .cloned()
            .collect();
        for key in keys {
            self.forget(&key);
        }
        self.selectors.retain(|(r, _), _| r != rule);
    }

    /// The parents that read the object `kind` `obj` by name (a lookup), or wait for the
    /// name it holds (a conflict), sorted.
    pub fn by_name(&self, kind: &GroupKind, obj: &Cached) -> Vec<Parent> {
        let object = Interest::Object(kind.clone(), obj.namespace().into(), obj.name().into());
        let mut found: Vec<Parent> = self
            .parents
            .get(&object)
            .into_iter()
            .flatten()
            .map(|(_, p)| p.clone())
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// The parents of `rule` whose selector for related entry `related` matches `obj`.
    pub fn matching(&self, rule: &str, related: usize, obj: &Cached) -> Vec<ObjKey> {
        let mut found = Vec::new();
        for scope in [Some(obj.namespace().to_string()), None] {
            for (k, v) in obj.labels() {
                let anchor =
                    Interest::Label(rule.into(), related, scope.clone(), k.into(), v.into());
                for (_, parent) in self.parents.get(&anchor).into_iter().flatten() {
                    let matches = self
                        .selectors
                        .get(parent)
                        .and_then(|s| s.get(related))
                        .is_some_and(|sel| sel.iter().all(|(k, v)| obj.label(k) == Some(v)));
                    if matches {
                        found.push(parent.1.clone());
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.interests.is_empty() && self.parents.is_empty() && self.selectors.is_empty()
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
