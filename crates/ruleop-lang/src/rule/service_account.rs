//! `spec.serviceAccount`: the identity a rule's writes go out as. The runtime impersonates
//! `system:serviceaccount:NAMESPACE:NAME` for every write to the rule's parents and children,
//! so RBAC bounds what one rule may do; reads and watches stay the operator's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RuleSpec;
use super::compile::Checker;

/// The ServiceAccount a rule writes as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// The ServiceAccount's name. Every write for this rule's parents and children (applies,
    /// deletes, the finalizer, the status) impersonates it; what its RBAC denies fails with
    /// `Forbidden` on the parent.
    pub name: String,
    /// The ServiceAccount's namespace. Default: the operator's own namespace
    /// (`$POD_NAMESPACE`, else the namespace of `--rules-configmap`); required when the
    /// operator knows neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ServiceAccountRef {
    /// The account in `namespace` when it names none, `None` when neither knows one.
    pub fn resolve(&self, default_namespace: Option<&str>) -> Option<ServiceAccount> {
        let namespace = self.namespace.as_deref().or(default_namespace)?;
        Some(ServiceAccount {
            namespace: namespace.to_string(),
            name: self.name.clone(),
        })
    }
}

/// A ServiceAccount with its namespace known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccount {
    /// The user name the API server knows it by, as impersonated.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount {}/{}", self.namespace, self.name)
    }
}

/// A DNS subdomain (a ServiceAccount's name): lowercase alphanumerics, `-` and `.`, at most
/// 253, starting and ending alphanumeric.
fn is_dns_subdomain(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 253
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// A DNS label (a namespace's name).
fn is_dns_label(s: &str) -> bool {
    is_dns_subdomain(s) && s.len() <= 63 && !s.contains('.')
}

/// The names must be ones Kubernetes accepts: a typo would otherwise show only as every
/// write of the rule failing.
pub(super) fn check(c: &mut Checker<'_>, spec: &RuleSpec) {
    let Some(account) = &spec.service_account else {
        return;
    };
    if !is_dns_subdomain(&account.name) {
        c.error(
            "spec.serviceAccount.name",
            format!(
                "{:?} is not a ServiceAccount name (a DNS subdomain: lowercase letters, digits, '-' and '.')",
                account.name
            ),
        );
    }
    if let Some(ns) = account.namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
        c.error(
            "spec.serviceAccount.namespace",
            format!(
                "{ns:?} is not a namespace name (a DNS label: lowercase letters, digits and '-')"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, namespace: Option<&str>) -> ServiceAccountRef {
        ServiceAccountRef {
            name: name.into(),
            namespace: namespace.map(str::to_string),
        }
    }

    #[test]
    fn the_namespace_defaults_to_the_operators() {
        let own = account("deployer", Some("team-a")).resolve(Some("ruleop-system"));
        assert_eq!(
            own.map(|a| a.username()),
            Some("system:serviceaccount:team-a:deployer".into())
        );
        let defaulted = account("deployer", None).resolve(Some("ruleop-system"));
        assert_eq!(
            defaulted.map(|a| a.to_string()),
            Some("ServiceAccount ruleop-system/deployer".into())
        );
        assert_eq!(account("deployer", None).resolve(None), None);
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("team-a.deployer"));
        assert!(!is_dns_subdomain("Deployer"));
        assert!(!is_dns_subdomain("-x"));
        assert!(!is_dns_subdomain(""));
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("team.a"));
    }
}

#[cfg(test)]
mod check_tests {
    #[test]
    fn a_bad_name_is_refused_where_it_is_written() {
        let source = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n  parent: {apiVersion: x.dev/v1, kind: Site}\n  serviceAccount:\n    name: Deployer\n    namespace: team.a\n";
        let err = crate::load::parse_rule("r.yaml".as_ref(), source)
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(err.contains("r.yaml:7:"), "{err}");
        assert!(
            err.contains("\"Deployer\" is not a ServiceAccount name"),
            "{err}"
        );
        assert!(err.contains("r.yaml:8:"), "{err}");
        let ok = source
            .replace("Deployer", "deployer")
            .replace("team.a", "team-a");
        let rule = crate::load::parse_rule("r.yaml".as_ref(), &ok).unwrap();
        let account = rule.spec.service_account.as_ref().unwrap();
        assert_eq!(account.namespace.as_deref(), Some("team-a"));
    }
}
