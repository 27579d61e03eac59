//! `ruleop rbac`: the least-privilege ClusterRole a rule set needs.
//!
//! Parents: read, watch, patch (finalizers) and their `status` and `finalizers`
//! subresources. Children (every kind in a rule's `allow` list): full lifecycle. Related
//! kinds: read and watch. Plus Events, the leader-election Lease and ruleop's RuleRevisions.
//! A rule with `spec.serviceAccount` writes as that account: the operator keeps only the
//! reads of its kinds, and [`super::rbac_accounts`] prints the impersonation grant and the
//! account's role.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};

use ruleop_lang::rule::{CompiledRule, split_api_version};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// The resource name of a kind: lowercase plural, as Kubernetes forms most of them.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s')
        || lower.ends_with("sh")
        || lower.ends_with("ch")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u']))
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The ClusterRole (as a Kubernetes object) for `rules`.
pub fn cluster_role(name: &str, rules: &[&CompiledRule]) -> Json {
    let mut grants: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    let mut grant = |api_version: &str, resource: String, verbs: &[&'static str]| {
        let group = split_api_version(api_version).0.to_string();
        grants
            .entry((group, resource))
            .or_default()
            .extend(verbs.iter().copied());
    };
    for rule in rules {
        let spec = &rule.spec;
        let parent = plural(&spec.parent.kind);
        for related in &spec.related {
            grant(&related.api_version, plural(&related.kind), READ);
        }
        for lookup in &spec.lookups {
            grant(&lookup.api_version, plural(&lookup.kind), READ);
        }
        if spec.service_account.is_some() {
            // Its writes are its account's (`rbac_accounts`); the operator only watches.
            grant(&spec.parent.api_version, parent, READ);
            for allowed in &spec.allow {
                grant(&allowed.api_version, plural(&allowed.kind), READ);
            }
            for d in &spec.decorations {
                grant(&d.api_version, plural(&d.kind), READ);
            }
            continue;
        }
        grant(
            &spec.parent.api_version,
            parent.clone(),
            &["get", "list", "watch", "patch", "update"],
        );
        grant(
            &spec.parent.api_version,
            format!("{parent}/status"),
            &["get", "patch", "update"],
        );
        // Setting blockOwnerDeletion on a child needs update on the owner's finalizers.
        grant(
            &spec.parent.api_version,
            format!("{parent}/finalizers"),
            &["update"],
        );
        for allowed in &spec.allow {
            grant(&allowed.api_version, plural(&allowed.kind), WRITE);
        }
        // Decorations patch labels and annotations (server-side apply), never create.
        for d in &spec.decorations {
            grant(
                &d.api_version,
                plural(&d.kind),
                &["get", "list", "watch", "patch"],
            );
        }
    }
    grant("events.k8s.io/v1", "events".into(), &["create", "patch"]);
    grant("v1", "events".into(), &["create", "patch"]);
    grant(
        "coordination.k8s.io/v1",
        "leases".into(),
        &["get", "create", "update"],
    );
    // ruleop's own RuleRevisions (src/revisions/): kept, their status written, old ones pruned.
    grant("ruleop.dev/v1alpha1", "rulerevisions".into(), WRITE);
    grant(
        "ruleop.dev/v1alpha1",
        "rulerevisions/status".into(),
        &["get", "patch", "update"],
    );

    let policy = merge(grants);
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {ruleop_schema::meta::MANAGED_BY_LABEL: "ruleop"}},
        "rules": policy,
    })
}

/// Verbs by (group, resource) as policy rules: one entry per group and verb set keeps a
/// role short and readable.
pub(super) fn merge(grants: BTreeMap<(String, String), BTreeSet<&str>>) -> Vec<Json> {
    let mut merged: BTreeMap<(String, Vec<&str>), Vec<String>> = BTreeMap::new();
    for ((group, resource), verbs) in grants {
        merged
            .entry((group, verbs.into_iter().collect()))
            .or_default()
            .push(resource);
    }
    merged
        .into_iter()
        .map(|((group, verbs), resources)| json!({"apiGroups": [group], "resources": resources, "verbs": verbs}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural("Memcached"), "memcacheds");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("Policy"), "policies");
        assert_eq!(plural("Gateway"), "gateways");
        assert_eq!(plural("StatefulSet"), "statefulsets");
    }

    #[test]
    fn lookups_are_granted_read() {
        let source = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n  parent: {apiVersion: x.dev/v1, kind: Site}\n  lookups:\n    - {name: theme, apiVersion: themes.dev/v1, kind: Theme, objectName: \"{{ parent.spec.theme }}\"}\n";
        let rule = ruleop_lang::load::parse_rule("r.yaml".as_ref(), source).unwrap();
        let role = cluster_role("ruleop", &[&rule]);
        let theme = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["apiGroups"][0] == "themes.dev")
            .unwrap();
        assert_eq!(theme["resources"][0], "themes");
        assert_eq!(theme["verbs"], serde_json::json!(["get", "list", "watch"]));
        let own: Vec<&Json> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["apiGroups"][0] == "ruleop.dev")
            .collect();
        assert_eq!(own.len(), 2, "{own:?}");
        assert_eq!(own[0]["resources"], serde_json::json!(["rulerevisions"]));
        assert!(
            own[0]["verbs"]
                .as_array()
                .unwrap()
                .contains(&"delete".into())
        );
        assert_eq!(
            own[1]["resources"],
            serde_json::json!(["rulerevisions/status"])
        );
    }

    #[test]
    fn decorated_kinds_are_granted_patch_only() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/pod-name-label/rule.yaml");
        let source = std::fs::read_to_string(&path).unwrap();
        let rule = ruleop_lang::load::parse_rule(&path, &source).unwrap();
        let role = cluster_role("ruleop", &[&rule]);
        let pods: Vec<&Json> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("pods"))
            })
            .collect();
        assert_eq!(pods.len(), 1, "{role}");
        assert_eq!(pods[0]["apiGroups"], serde_json::json!([""]));
        assert_eq!(
            pods[0]["verbs"],
            serde_json::json!(["get", "list", "patch", "watch"])
        );
    }
}
