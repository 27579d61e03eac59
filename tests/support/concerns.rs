//! The share of a cluster-wide operator's writes that concerns one parent, when tests run
//! beside each other on one control plane.

use std::collections::BTreeSet;

use super::audit::Write;
use super::{Scope, kubectl, live_objects};

/// What concerns one parent: the parent, its children wherever they are (cluster-scoped
/// ones included), and anything inside the namespaces among them or named by the test.
#[derive(Debug)]
pub struct Concerns {
    /// Plural resource and name of the parent.
    pub parent: (String, String),
    /// (resource, namespace, name) of every live child, by the owner label.
    pub children: BTreeSet<(String, String, String)>,
    /// Namespaces whose every object counts.
    pub namespaces: BTreeSet<String>,
}

impl Concerns {
    /// Reads the children of `kinds` (plural resources, as the audit log names them) that
    /// carry the uid of the cluster-scoped parent `what`/`name` (a namespaced parent's writes
    /// are counted by naming its namespace); `namespaces` adds the test's own namespaces.
    pub fn of(what: &str, name: &str, kinds: &[&str], namespaces: &[&str]) -> Concerns {
        let uid = kubectl(&["get", what, name, "-o", "jsonpath={.metadata.uid}"]);
        assert!(!uid.is_empty(), "{what} {name} has no uid");
        let selector = format!("ruleop.dev/owner={uid}");
        let mut children = BTreeSet::new();
        for kind in kinds {
            for obj in live_objects(Scope::All, kind, Some(&selector)) {
                let at = |f: &str| obj["metadata"][f].as_str().unwrap_or("").to_string();
                children.insert((kind.to_string(), at("namespace"), at("name")));
            }
        }
        let resource = what.split('.').next().unwrap_or(what);
        let mut concerns = Concerns {
            parent: (resource.to_string(), name.to_string()),
            children,
            namespaces: namespaces.iter().map(ToString::to_string).collect(),
        };
        let created: Vec<String> = concerns
            .created_namespaces()
            .into_iter()
            .map(String::from)
            .collect();
        concerns.namespaces.extend(created);
        concerns
    }

    /// The namespaces among the children.
    pub fn created_namespaces(&self) -> Vec<&str> {
        self.children
            .iter()
            .filter(|(kind, ns, _)| kind == "namespaces" && ns.is_empty())
            .map(|(_, _, n)| n.as_str())
            .collect()
    }

    /// Whether the write concerns the parent.
    pub fn contains(&self, w: &Write) -> bool {
        let parent =
            w.namespace.is_empty() && w.resource == self.parent.0 && w.name == self.parent.1;
        let key = (w.resource.clone(), w.namespace.clone(), w.name.clone());
        parent
            || self.children.contains(&key)
            || self.namespaces.contains(&w.namespace)
            || (w.resource == "namespaces" && self.namespaces.contains(&w.name))
    }
}
