//! Admission-time validation: CEL rules of a rule file enforced by the API server. The CRD
//! `ruleop crd` generates for examples/webapp refuses a bad WebApp at `kubectl apply` with the
//! rule's message (and `ruleop test` fails on the same WebApp with the same message); its
//! transition rule keeps a field immutable; the ValidatingAdmissionPolicy `ruleop policy`
//! emits for a rule on the built-in ConfigMap refuses what it should in the test's namespace,
//! and only there.

use crate::support;

use std::time::Duration;

use serde_json::{Value as Json, json};
use support::examples::{assert_passes_offline, rule_file};
use support::operator::{Operator, jsonpath, root, ruleop};
use support::{TestEnv, kubectl_with_input, try_kubectl, wait_for, wait_for_ok};

const T: Duration = Duration::from_secs(60);

/// `kubectl apply` of `object` in `env`'s namespace: its output, or kubectl's error text.
fn apply(env: &TestEnv, object: &Json) -> Result<String, String> {
    let yaml = ruleop_lang::yaml::to_string(object);
    try_kubectl(&["-n", &env.ns, "apply", "-f", "-"], Some(&yaml))
}

/// `ruleop test` of one case planning `parent` with `rule`, expected not to fail: its output.
fn ruleop_test(rule: &std::path::Path, parent: &Json) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.test.yaml");
    let case = json!({
        "rule": rule,
        "tests": [{"name": "the resource kubectl refused", "parent": parent, "expect": {"failure": null}}],
    });
    std::fs::write(&file, ruleop_lang::yaml::to_string(&case)).unwrap();
    ruleop(&["test", file.to_str().unwrap()])
}

fn webapp(spec: Json) -> Json {
    json!({"apiVersion": "examples.ruleop.dev/v1", "kind": "WebApp", "metadata": {"name": "shop"}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_crd_refuses_bad_resources_with_the_rules_message() {
    assert_passes_offline("webapp");
    let rule = rule_file("webapp");
    let (ok, crd) = ruleop(&["crd", "--rule", rule.to_str().unwrap()]);
    assert!(ok && crd.contains("x-kubernetes-validations"), "{crd}");
    let env = TestEnv::new("admission-crd").await;
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    env.delete_on_drop("crd", "webapps.examples.ruleop.dev");
    kubectl_with_input(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "-",
        ],
        Some(&crd),
    );

    let good = json!({"image": "nginx:1.27", "replicas": 2, "maxReplicas": 5, "tier": "frontend"});
    let mut too_many = good.clone();
    too_many["replicas"] = json!(7);
    let mut untagged = good.clone();
    untagged["image"] = json!("nginx");
    for (spec, message) in [
        (&too_many, "spec.replicas must not exceed spec.maxReplicas"),
        (
            &untagged,
            "image nginx needs an explicit tag other than latest, e.g. nginx:1.27",
        ),
    ] {
        let bad = webapp(spec.clone());
        // The API server refuses it (a new CRD's rules may take a moment to be served).
        let refused = wait_for_ok("the WebApp refused", T, || async {
            match apply(&env, &bad) {
                Ok(out) => Err(format!("applied: {out}")),
                Err(e) => Ok(e),
            }
        })
        .await;
        assert!(refused.contains(message), "{message:?} in {refused}");
        assert!(
            env.get("webapp.examples.ruleop.dev", "shop").is_none(),
            "nothing stored"
        );
        // Offline, the planner refuses the same resource with the same message.
        let (ok, out) = ruleop_test(&rule, &bad);
        assert!(!ok && out.contains(message), "ruleop test: {out}");
    }

    apply(&env, &webapp(good.clone())).unwrap();
    let (ok, out) = ruleop_test(&rule, &webapp(good.clone()));
    assert!(ok, "the valid WebApp plans: {out}");
    // The transition rule: tier cannot change, the rest can.
    let mut moved = good.clone();
    moved["tier"] = json!("backend");
    let refused = apply(&env, &webapp(moved)).unwrap_err();
    assert!(refused.contains("tier is immutable"), "{refused}");
    let mut scaled = good;
    scaled["replicas"] = json!(3);
    apply(&env, &webapp(scaled)).unwrap();
    let stored = env.get("webapp.examples.ruleop.dev", "shop").unwrap();
    assert_eq!(stored["spec"]["tier"], "frontend");
    assert_eq!(stored["spec"]["replicas"], 3);
    // The operator runs what was admitted.
    let _op = Operator::start_with_rules(&env.ns, &rule, &[]);
    wait_for("the WebApp's Deployment", T, || async {
        jsonpath(&env, "deployment", "shop", "{.spec.replicas}") == "3"
    })
    .await;
}

fn config_map(name: &str, data: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_for_a_built_in_parent_refuses_what_it_should_in_its_namespace() {
    let rule = root().join("tests/rules/admission/settings.yaml");
    let env = TestEnv::new("admission-vap").await;
    let other = TestEnv::new("admission-vap-other").await;
    // Bound to this test's namespace only: it cannot disturb other tests' ConfigMaps.
    let (ok, policy) = ruleop(&[
        "policy",
        "--rule",
        rule.to_str().unwrap(),
        "--namespace",
        &env.ns,
    ]);
    assert!(
        ok && policy.contains("ValidatingAdmissionPolicyBinding"),
        "{policy}"
    );
    env.delete_on_drop(
        "validatingadmissionpolicybinding",
        "ruleop-admission-settings",
    );
    env.delete_on_drop("validatingadmissionpolicy", "ruleop-admission-settings");
    kubectl_with_input(&["apply", "-f", "-"], Some(&policy));

    let message = "data.mode turbo is not fast or safe";
    // A policy takes effect after a short delay: each try is a new name, so none is updated.
    let mut n = 0;
    let refused = wait_for_ok("the policy refusing a bad ConfigMap", T, || {
        n += 1;
        let bad = config_map(&format!("early-{n}"), json!({"mode": "turbo"}));
        let result = apply(&env, &bad);
        async move {
            match result {
                Ok(out) => Err(format!("admitted: {out}")),
                Err(e) => Ok(e),
            }
        }
    })
    .await;
    assert!(
        refused.contains(message) && refused.contains("ruleop-admission-settings"),
        "{refused}"
    );
    // Offline, the planner refuses the same ConfigMap with the same message.
    let bad = config_map("tuning", json!({"mode": "turbo", "owner": "a"}));
    let (ok, out) = ruleop_test(&rule, &bad);
    assert!(!ok && out.contains(message), "ruleop test: {out}");
    assert!(apply(&env, &bad).unwrap_err().contains(message));

    // What it should admit: a good mode, no mode, no data.
    apply(
        &env,
        &config_map("tuning", json!({"mode": "safe", "owner": "a"})),
    )
    .unwrap();
    apply(&env, &config_map("plain", json!({"other": "x"}))).unwrap();
    apply(
        &env,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "empty"}}),
    )
    .unwrap();
    // The transition rule holds on updates only: the owner stays, the mode may change.
    let refused = apply(
        &env,
        &config_map("tuning", json!({"mode": "safe", "owner": "b"})),
    )
    .unwrap_err();
    assert!(refused.contains("data.owner is immutable"), "{refused}");
    apply(
        &env,
        &config_map("tuning", json!({"mode": "fast", "owner": "a"})),
    )
    .unwrap();
    // Another namespace is not bound: the same bad ConfigMap is admitted there.
    apply(&other, &config_map("tuning", json!({"mode": "turbo"}))).unwrap();
}
