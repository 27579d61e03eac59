//! A ValidatingAdmissionPolicy and its binding for a rule's `spec.validate[].cel` checks: the
//! API server enforces them for parents whose CRD ruleop does not generate (built-in kinds,
//! CRDs of other projects), as a generated CRD's `x-kubernetes-validations` do for the rest.

use serde_json::{Value as Json, json};

use super::rewrite::policy_expression;
use crate::rule::{CompiledRule, split_api_version};

/// Why no policy can be made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The rule has no `spec.validate[].cel` check.
    #[error("rule {0} has no cel check in spec.validate: nothing for a policy to enforce")]
    NoChecks(String),
}

/// What the policy applies to beyond the rule itself.
#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    /// The parent kind's resource name (default: `spec.crd.plural`, else the lowercase kind
    /// plus `s`, `es` or `ies`).
    pub plural: Option<String>,
    /// Only objects in these namespaces (default: every namespace).
    pub namespaces: Vec<String>,
}

/// `ruleop-<rule>`: the name of the rule's policy and of its binding.
pub fn policy_name(rule: &CompiledRule) -> String {
    format!("ruleop-{}", rule.name)
}

/// The policy and its binding (`Deny`), in that order.
pub fn generate(rule: &CompiledRule, options: &PolicyOptions) -> Result<[Json; 2], PolicyError> {
    let checks = &rule.compiled.cel.validate;
    if checks.is_empty() {
        return Err(PolicyError::NoChecks(rule.name.clone()));
    }
    let parent = &rule.spec.parent;
    let (group, version) = split_api_version(&parent.api_version);
    let plural = options
        .plural
        .clone()
        .or_else(|| rule.spec.crd.as_ref().and_then(|c| c.plural.clone()))
        .unwrap_or_else(|| crate::crd::plural_of(&parent.kind.to_lowercase()));
    let validations: Vec<Json> = checks
        .iter()
        .map(|check| {
            let mut v = json!({
                "expression": policy_expression(&check.rule.source, check.rule.transition),
                "message": check.message,
            });
            if let Some(m) = &check.message_expression {
                v["messageExpression"] = json!(policy_expression(&m.source, false));
            }
            v
        })
        .collect();
    let name = policy_name(rule);
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [group],
                    "apiVersions": [version],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                }],
            },
            "validations": validations,
        },
    });
    let mut binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
        },
    });
    if !options.namespaces.is_empty() {
        binding["spec"]["matchResources"] = json!({
            "namespaceSelector": {
                "matchExpressions": [{
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": options.namespaces,
                }],
            },
        });
    }
    Ok([policy, binding])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(validate: &str) -> CompiledRule {
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: settings}}\nspec:\n  parent: {{apiVersion: v1, kind: ConfigMap}}\n  validate:\n{validate}"
        );
        crate::load::parse_rule(std::path::Path::new("r.yaml"), &source).unwrap()
    }

    #[test]
    fn a_policy_enforces_the_cel_checks_of_a_built_in_parent() {
        let rule = rule(concat!(
            "    - rule: parent.data is defined\n      message: jinja only\n",
            "    - cel: \"self.data.mode in ['a', 'b'] && self.data.note != 'self'\"\n",
            "      message: mode must be a or b\n",
            "      messageExpression: \"'mode ' + self.data.mode + ' is not a or b'\"\n",
            "    - cel: self.data.mode == oldSelf.data.mode\n      message: mode is immutable\n",
        ));
        let options = PolicyOptions {
            plural: None,
            namespaces: vec!["team-a".into()],
        };
        let [policy, binding] = generate(&rule, &options).unwrap();
        assert_eq!(policy["metadata"]["name"], "ruleop-settings");
        let rules = &policy["spec"]["matchConstraints"]["resourceRules"][0];
        assert_eq!(rules["apiGroups"], json!([""]));
        assert_eq!(rules["apiVersions"], json!(["v1"]));
        assert_eq!(rules["resources"], json!(["configmaps"]));
        let validations = policy["spec"]["validations"].as_array().unwrap();
        assert_eq!(validations.len(), 2, "the Jinja check stays ruleop's");
        assert_eq!(
            validations[0]["expression"],
            "object.data.mode in ['a', 'b'] && object.data.note != 'self'"
        );
        assert_eq!(
            validations[0]["messageExpression"],
            "'mode ' + object.data.mode + ' is not a or b'"
        );
        assert_eq!(
            validations[1]["expression"],
            "request.operation != 'UPDATE' || (object.data.mode == oldObject.data.mode)"
        );
        assert_eq!(validations[1]["message"], "mode is immutable");
        assert_eq!(binding["spec"]["policyName"], "ruleop-settings");
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
        assert_eq!(
            binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["team-a"])
        );
    }

    #[test]
    fn no_cel_check_no_policy() {
        let rule = rule("    - rule: parent.data is defined\n      message: m\n");
        assert!(matches!(
            generate(&rule, &PolicyOptions::default()),
            Err(PolicyError::NoChecks(_))
        ));
    }
}
