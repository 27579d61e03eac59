//! Which parents read an object by name (`spec.lookups`), so a change of that object
//! reconciles exactly those parents.

use std::collections::{HashMap, HashSet};

use crate::cache::{GroupKind, ObjKey};

/// `(kind, namespace, name)` of a looked-up object; the namespace is empty for a
/// cluster-scoped kind.
pub type Target = (GroupKind, String, String);

/// Parents by the objects they look up.
#[derive(Default)]
pub struct LookupIndex {
    by_parent: HashMap<(String, ObjKey), Vec<Target>>,
    by_target: HashMap<Target, HashSet<(String, ObjKey)>>,
}

impl LookupIndex {
    /// Records what a parent of `rule` reads, replacing what was recorded before.
    pub fn set(&mut self, rule: &str, parent: ObjKey, targets: Vec<Target>) {
        let key = (rule.to_string(), parent);
        if self.by_parent.get(&key) == Some(&targets) {
            return;
        }
        self.remove(rule, &key.1);
        for t in &targets {
            self.by_target
                .entry(t.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_parent.insert(key, targets);
    }

    /// Forgets a parent.
    pub fn remove(&mut self, rule: &str, parent: &ObjKey) {
        let key = (rule.to_string(), parent.clone());
        let Some(targets) = self.by_parent.remove(&key) else {
            return;
        };
        for t in targets {
            if let Some(set) = self.by_target.get_mut(&t) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_target.remove(&t);
                }
            }
        }
    }

    /// Forgets every parent of a rule.
    pub fn remove_rule(&mut self, rule: &str) {
        let parents: Vec<ObjKey> = self
            .by_parent
            .keys()
            .filter(|(r, _)| r == rule)
            .map(|(_, p)| p.clone())
            .collect();
        for p in parents {
            self.remove(rule, &p);
        }
    }

    /// `(rule, parent)` of every parent that reads the object `target`.
    pub fn readers(&self, target: &Target) -> Vec<(String, ObjKey)> {
        let mut out: Vec<_> = self
            .by_target
            .get(target)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gk(kind: &str) -> GroupKind {
        GroupKind {
            group: String::new(),
            kind: kind.into(),
        }
    }

    fn target(kind: &str, ns: &str, name: &str) -> Target {
        (gk(kind), ns.into(), name.into())
    }

    #[test]
    fn routes_an_object_to_exactly_its_readers() {
        let mut index = LookupIndex::default();
        let a = ("ns".to_string(), "a".to_string());
        let b = ("ns".to_string(), "b".to_string());
        index.set(
            "r",
            a.clone(),
            vec![target("Secret", "ns", "s1"), target("Theme", "", "dark")],
        );
        index.set(
            "r",
            b.clone(),
            vec![target("Secret", "ns", "s2"), target("Theme", "", "dark")],
        );
        assert_eq!(
            index.readers(&target("Secret", "ns", "s1")),
            [("r".to_string(), a.clone())]
        );
        assert_eq!(index.readers(&target("Theme", "", "dark")).len(), 2);
        assert!(index.readers(&target("Secret", "other", "s1")).is_empty());
        // A parent that now reads another object moves.
        index.set("r", a.clone(), vec![target("Secret", "ns", "s3")]);
        assert!(index.readers(&target("Secret", "ns", "s1")).is_empty());
        assert_eq!(
            index.readers(&target("Theme", "", "dark")),
            [("r".to_string(), b.clone())]
        );
        index.remove_rule("r");
        assert!(index.by_parent.is_empty() && index.by_target.is_empty());
    }
}
