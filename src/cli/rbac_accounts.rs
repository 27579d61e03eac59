//! `ruleop rbac` for rules with `spec.serviceAccount`: the operator may impersonate exactly
//! those accounts (a Role and RoleBinding in each account's namespace, `resourceNames` the
//! accounts), and each such rule's account gets the writes its rule makes (a ClusterRole and
//! a ClusterRoleBinding: parents and children may be in any namespace the operator serves).
//! Reads stay the operator's, so an account is granted no read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};

use super::rbac::{merge, plural};
use ruleop_lang::rule::{CompiledRule, ServiceAccount, split_api_version};
use ruleop_schema::meta::MANAGED_BY_LABEL;

/// What a rule's account writes to its children: server-side apply (`patch`, and `create`
/// for a new object), deletes (prune, `Recreate`, cleanup).
const CHILD_WRITES: &[&str] = &["create", "delete", "patch"];

/// The objects granting `rules`' accounts (in `namespace` when a rule names none) to the
/// operator running as `operator`, and each account its rule's writes; empty when no rule
/// has an account.
pub fn account_objects(
    name: &str,
    rules: &[&CompiledRule],
    operator: &ServiceAccount,
) -> Vec<Json> {
    let accounts: Vec<(&CompiledRule, ServiceAccount)> = rules
        .iter()
        .filter_map(|rule| {
            let account = rule
                .spec
                .service_account
                .as_ref()?
                .resolve(Some(&operator.namespace))?;
            Some((*rule, account))
        })
        .collect();
    let mut by_namespace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (_, account) in &accounts {
        by_namespace
            .entry(&account.namespace)
            .or_default()
            .insert(&account.name);
    }
    let mut out = Vec::new();
    let impersonate = format!("{name}-impersonate");
    for (namespace, names) in by_namespace {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": impersonate, "namespace": namespace, "labels": labels()},
            "rules": [{
                "apiGroups": [""],
                "resources": ["serviceaccounts"],
                "verbs": ["impersonate"],
                "resourceNames": names,
            }],
        }));
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": impersonate, "namespace": namespace, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": impersonate},
            "subjects": [subject(operator)],
        }));
    }
    for (rule, account) in &accounts {
        let role = format!("{name}-rule-{}", rule.name);
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role, "labels": labels()},
            "rules": writes_of(rule),
        }));
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject(account)],
        }));
    }
    out
}

fn labels() -> Json {
    json!({ MANAGED_BY_LABEL: "ruleop" })
}

fn subject(account: &ServiceAccount) -> Json {
    json!({"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace})
}

/// The writes `rule` makes: its parents' finalizer (`patch`), status (`patch`) and
/// `finalizers` subresource (`update`: children's `blockOwnerDeletion`), its children's, its
/// decorations'.
fn writes_of(rule: &CompiledRule) -> Vec<Json> {
    let mut grants: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    let mut grant = |api_version: &str, resource: String, verbs: &[&'static str]| {
        let group = split_api_version(api_version).0.to_string();
        grants
            .entry((group, resource))
            .or_default()
            .extend(verbs.iter().copied());
    };
    let spec = &rule.spec;
    let parent = plural(&spec.parent.kind);
    grant(&spec.parent.api_version, parent.clone(), &["patch"]);
    grant(
        &spec.parent.api_version,
        format!("{parent}/status"),
        &["patch"],
    );
    grant(
        &spec.parent.api_version,
        format!("{parent}/finalizers"),
        &["update"],
    );
    for allowed in &spec.allow {
        grant(&allowed.api_version, plural(&allowed.kind), CHILD_WRITES);
    }
    // Decorations: labels and annotations by server-side apply, never a create.
    for d in &spec.decorations {
        grant(&d.api_version, plural(&d.kind), &["patch"]);
    }
    merge(grants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::rbac::cluster_role;

    fn rule(name: &str, account: &str) -> CompiledRule {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: {name}}}\nspec:\n  parent: {{apiVersion: x.dev/v1, kind: Site}}\n{account}  allow: [{{apiVersion: v1, kind: Service}}]\n  related:\n    - {{name: pods, apiVersion: v1, kind: Pod, selector: {{app: x}}}}\n"
        );
        ruleop_lang::load::parse_rule("r.yaml".as_ref(), &source).unwrap()
    }

    fn operator() -> ServiceAccount {
        ServiceAccount {
            namespace: "ruleop-system".into(),
            name: "ruleop".into(),
        }
    }

    fn verbs(role: &Json, group: &str, resource: &str) -> Vec<String> {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["apiGroups"][0] == group)
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
            })
            .flat_map(|r| r["verbs"].as_array().unwrap().clone())
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_rule_with_an_account_leaves_the_operator_only_reads_and_impersonation() {
        let site = rule(
            "site",
            "  serviceAccount: {name: site-writer, namespace: team-a}\n",
        );
        let role = cluster_role("ruleop", &[&site]);
        for resource in ["sites", "services", "pods"] {
            assert_eq!(
                verbs(
                    &role,
                    if resource == "sites" { "x.dev" } else { "" },
                    resource
                ),
                ["get", "list", "watch"],
                "{resource}"
            );
        }
        assert!(verbs(&role, "x.dev", "sites/status").is_empty());
        assert!(
            !verbs(&role, "", "events").is_empty(),
            "Events stay the operator's"
        );

        let objects = account_objects("ruleop", &[&site], &operator());
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
        );
        let impersonate = &objects[0];
        assert_eq!(impersonate["metadata"]["namespace"], "team-a");
        assert_eq!(
            impersonate["rules"],
            json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": ["site-writer"]}])
        );
        assert_eq!(
            objects[1]["subjects"],
            json!([{"kind": "ServiceAccount", "name": "ruleop", "namespace": "ruleop-system"}])
        );
        let writes = &objects[2];
        assert_eq!(writes["metadata"]["name"], "ruleop-rule-site");
        assert_eq!(verbs(writes, "", "services"), ["create", "delete", "patch"]);
        assert_eq!(verbs(writes, "x.dev", "sites"), ["patch"]);
        assert_eq!(verbs(writes, "x.dev", "sites/status"), ["patch"]);
        assert_eq!(verbs(writes, "x.dev", "sites/finalizers"), ["update"]);
        assert!(
            verbs(writes, "", "pods").is_empty(),
            "no reads for the account"
        );
        assert_eq!(
            objects[3]["subjects"],
            json!([{"kind": "ServiceAccount", "name": "site-writer", "namespace": "team-a"}])
        );
    }

    #[test]
    fn without_accounts_nothing_changes_and_a_namespace_defaults_to_the_operators() {
        let plain = rule("plain", "");
        let role = cluster_role("ruleop", &[&plain]);
        assert_eq!(
            verbs(&role, "", "services"),
            [
                "create", "delete", "get", "list", "patch", "update", "watch"
            ]
        );
        assert!(account_objects("ruleop", &[&plain], &operator()).is_empty());

        let defaulted = rule("site", "  serviceAccount: {name: site-writer}\n");
        let objects = account_objects("ruleop", &[&defaulted, &plain], &operator());
        assert_eq!(objects.len(), 4);
        assert_eq!(objects[0]["metadata"]["namespace"], "ruleop-system");
        // A kind written by a rule without an account keeps the operator's write verbs.
        let role = cluster_role("ruleop", &[&defaulted, &plain]);
        assert!(verbs(&role, "", "services").contains(&"create".to_string()));
    }
}
