//! How test files name objects: `Kind/name`, or `Kind/namespace/name` when one kind and
//! name exist in several namespaces.

use serde_json::Value as Json;

use ruleop_schema::meta::{self, ObjectKey};

/// An object's kind, namespace (empty when cluster-scoped) and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestKey<'a> {
    /// Kind.
    pub kind: &'a str,
    /// Namespace, empty when cluster-scoped.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
}

impl<'a> TestKey<'a> {
    /// The key of an object.
    pub fn of(obj: &'a Json) -> Self {
        Self {
            kind: meta::kind(obj),
            namespace: meta::namespace(obj),
            name: meta::name(obj),
        }
    }

    /// The key of an object key.
    pub fn of_key(key: &'a ObjectKey) -> Self {
        Self {
            kind: &key.kind,
            namespace: &key.namespace,
            name: &key.name,
        }
    }

    /// Whether `written` (`Kind/name` or `Kind/namespace/name`) names this object.
    pub fn matches(&self, written: &str) -> bool {
        match written.splitn(3, '/').collect::<Vec<_>>().as_slice() {
            [kind, name] => *kind == self.kind && *name == self.name,
            [kind, ns, name] => *kind == self.kind && *ns == self.namespace && *name == self.name,
            _ => false,
        }
    }

    fn short(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    fn full(&self) -> String {
        if self.namespace.is_empty() {
            self.short()
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// How to show each of `keys`: `Kind/name`, or `Kind/namespace/name` where another of
/// `keys` has the same kind and name.
pub fn shown(keys: &[TestKey<'_>]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let twins = keys
                .iter()
                .filter(|o| o.kind == k.kind && o.name == k.name)
                .count();
            if twins > 1 { k.full() } else { k.short() }
        })
        .collect()
}

/// Why a written key names no single object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Nothing matches.
    Missing,
    /// Several objects match (a `Kind/name` in several namespaces).
    Ambiguous(String),
}

/// The index of the one object of `keys` that `written` names.
pub fn resolve(written: &str, keys: &[TestKey<'_>]) -> Result<usize, Unresolved> {
    let found: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].matches(written))
        .collect();
    match found.as_slice() {
        [i] => Ok(*i),
        [] => Err(Unresolved::Missing),
        many => {
            let list: Vec<String> = many.iter().map(|&i| keys[i].full()).collect();
            Err(Unresolved::Ambiguous(format!(
                "{written} names {} objects ({}): write Kind/namespace/name",
                many.len(),
                list.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(kind: &str, ns: &str, name: &str) -> Json {
        json!({"kind": kind, "metadata": {"namespace": ns, "name": name}})
    }

    #[test]
    fn kind_name_resolves_when_unambiguous_and_namespaces_tell_twins_apart() {
        let objects = [
            obj("RoleBinding", "team-a", "devs"),
            obj("RoleBinding", "team-b", "devs"),
            obj("ConfigMap", "team-a", "settings"),
        ];
        let keys: Vec<TestKey<'_>> = objects.iter().map(TestKey::of).collect();
        assert_eq!(resolve("ConfigMap/settings", &keys), Ok(2));
        assert_eq!(resolve("ConfigMap/team-a/settings", &keys), Ok(2));
        assert_eq!(resolve("RoleBinding/team-b/devs", &keys), Ok(1));
        assert_eq!(
            resolve("RoleBinding/team-c/devs", &keys),
            Err(Unresolved::Missing)
        );
        assert!(matches!(
            resolve("RoleBinding/devs", &keys),
            Err(Unresolved::Ambiguous(m)) if m.contains("RoleBinding/team-a/devs, RoleBinding/team-b/devs")
        ));
        assert_eq!(
            shown(&keys),
            [
                "RoleBinding/team-a/devs",
                "RoleBinding/team-b/devs",
                "ConfigMap/settings"
            ]
        );
    }
}
