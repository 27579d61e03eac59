//! Whether a kind's objects live in a namespace: built-in kinds from k8s-openapi, other
//! kinds as their `spec.allow` entry declares (namespaced by default).

use ruleop_schema::kinds::builtin_cluster_scoped;

use super::{CompiledRule, Scope, split_api_version};

/// The scope a kind is known to have without asking a cluster: `Cluster` for built-in
/// cluster-scoped kinds, `None` for any other kind.
pub fn known_scope(api_version: &str, kind: &str) -> Option<Scope> {
    builtin_cluster_scoped(split_api_version(api_version).0, kind).then_some(Scope::Cluster)
}

impl CompiledRule {
    /// The scope of a child or cleanup kind: as its `spec.allow` entry declares, else as
    /// known for built-in kinds, else namespaced.
    pub fn kind_scope(&self, api_version: &str, kind: &str) -> Scope {
        self.spec
            .allow
            .iter()
            .find(|a| a.api_version == api_version && a.kind == kind)
            .and_then(|a| a.scope)
            .or_else(|| known_scope(api_version, kind))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scopes_come_from_k8s_openapi() {
        assert_eq!(known_scope("v1", "Namespace"), Some(Scope::Cluster));
        assert_eq!(
            known_scope("rbac.authorization.k8s.io/v1", "ClusterRole"),
            Some(Scope::Cluster)
        );
        assert_eq!(known_scope("v1", "ConfigMap"), None);
        assert_eq!(known_scope("rbac.authorization.k8s.io/v1", "Role"), None);
        // The group matters, not only the kind.
        assert_eq!(known_scope("example.com/v1", "Namespace"), None);
    }

    fn errors(spec: &str) -> Vec<String> {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n{spec}"
        );
        match crate::load::parse_rule("r.yaml".as_ref(), &source) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const CHILD: &str = "  children:\n    - {name: ns, apiVersion: v1, kind: Namespace, template: 'metadata: {name: x}'}\n";

    #[test]
    fn check_rejects_a_cluster_scoped_child_of_a_namespaced_parent() {
        let namespaced = format!(
            "  parent: {{apiVersion: example.com/v1, kind: Team}}\n  allow: [{{apiVersion: v1, kind: Namespace}}]\n{CHILD}"
        );
        let errors = errors(&namespaced);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("r.yaml:8:40: ")
                && errors[0].contains("v1/Namespace is cluster-scoped and the parent example.com/v1/Team is namespaced"),
            "{errors:?}"
        );
        let cluster = namespaced.replace("kind: Team}", "kind: Team, scope: Cluster}");
        assert_eq!(self::errors(&cluster), Vec::<String>::new());
        // A CRD kind declared cluster-scoped counts the same.
        let declared = namespaced.replace(
            "allow: [{apiVersion: v1, kind: Namespace}]",
            "allow: [{apiVersion: v1, kind: Namespace}, {apiVersion: example.com/v1, kind: Zone, scope: Cluster}]",
        ).replace(
            "    - {name: ns, apiVersion: v1, kind: Namespace,",
            "    - {name: ns, apiVersion: example.com/v1, kind: Zone,",
        );
        assert!(self::errors(&declared)[0].contains("example.com/v1/Zone is cluster-scoped"));
    }

    #[test]
    fn check_rejects_scopes_that_contradict_what_is_known() {
        let errors = errors(
            "  parent: {apiVersion: v1, kind: Namespace}\n  allow:\n    - {apiVersion: v1, kind: Namespace, scope: Namespaced}\n    - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, crossNamespace: true}\n",
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("v1/Namespace is cluster-scoped: set spec.parent.scope: Cluster")
        );
        assert!(errors[1].contains("v1/Namespace is Cluster-scoped, not Namespaced"));
        assert!(errors[2].contains("ClusterRole is cluster-scoped: its objects have no namespace"));
    }
}
