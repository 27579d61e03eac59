//! End to end: the examples `bluegreen`, `database`, `team-rbac` and `builtin` against the local control plane.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use support::operator::{Operator, jsonpath, ready, root};
use support::{TestEnv, audit, kubectl_with_input, wait_for};

const T: Duration = Duration::from_secs(90);
/// The examples of this binary, each checked and tested offline below.
const EXAMPLES: &[&str] = &["bluegreen"];

fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

fn rule_file(name: &str) -> PathBuf {
    example(name).join("rule.yaml")
}

fn read(name: &str, file: &str) -> String {
    std::fs::read_to_string(example(name).join(file)).unwrap()
}

fn ruleop(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Installs the CRD that `ruleop crd` generates from the example's `spec.crd`.
fn install_generated_crd(name: &str) {
    let (ok, crd) = ruleop(&["crd", "--rule", rule_file(name).to_str().unwrap()]);
    assert!(ok, "ruleop crd {name}: {crd}");
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
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
}

fn get(env: &TestEnv, what: &str, name: &str) -> Option<Json> {
    env.try_kubectl(&["get", what, name, "-o", "json"])
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// `kind/name` of every live (not terminating) object of `kinds` carrying the rule's label, sorted.
fn owned(env: &TestEnv, kinds: &str, rule: &str) -> Vec<String> {
    let list: Json = serde_json::from_str(&env.kubectl(&[
        "get",
        kinds,
        "-l",
        &format!("ruleop.dev/rule={rule}"),
        "-o",
        "json",
    ]))
    .unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Asserts that the operator writes nothing in `ns` for a few seconds.
async fn assert_idle(ns: &str) {
    let mark = audit::Mark::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let writes = mark.operator_writes(ns);
    assert!(
        writes.is_empty(),
        "an idle operator writes nothing:\n{}",
        audit::describe(&writes)
    );
}

#[test]
fn examples_pass_check_and_their_rule_tests() {
    for name in EXAMPLES {
        let (ok, out) = ruleop(&["check", rule_file(name).to_str().unwrap()]);
        assert!(ok, "ruleop check examples/{name}/rule.yaml:\n{out}");
        let (ok, out) = ruleop(&["test", example(name).to_str().unwrap()]);
        assert!(
            ok && out.contains(" 0 failed"),
            "ruleop test examples/{name}:\n{out}"
        );
        let (ok, out) = ruleop(&["crd", "--rule", rule_file(name).to_str().unwrap()]);
        assert!(
            ok && out.contains("CustomResourceDefinition"),
            "ruleop crd {name}:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_switches_the_active_service_and_keeps_both_colours() {
    install_generated_crd("bluegreen");
    let env = TestEnv::new("ex-bluegreen").await;
    let _op = Operator::start_with_rules(&env.ns, &rule_file("bluegreen"), &[]);
    env.apply_yaml(&read("bluegreen", "sample.yaml"));
    let all = "deployments,services";
    let selector = |svc: &str| jsonpath(&env, "service", svc, "{.spec.selector.colour}");

    // Create: two Deployments (one per colour) and two Services, nothing else.
    wait_for("BlueGreen Ready", T, || async {
        ready(&env, "bluegreen", "shop").0 == "True"
    })
    .await;
    let children = strings(&[
        "Deployment/shop-blue",
        "Deployment/shop-green",
        "Service/shop-active",
        "Service/shop-preview",
    ]);
    assert_eq!(owned(&env, all, "bluegreen"), children);
    assert_eq!(selector("shop-active"), "blue");
    assert_eq!(selector("shop-preview"), "green");
    assert_eq!(
        jsonpath(&env, "bluegreen", "shop", "{.status.activeImage}"),
        "nginx:1.25"
    );
    assert_idle(&env.ns).await;

    // Change: promoting green switches both selectors; the Deployments keep their uids.
    let green_uid = jsonpath(&env, "deployment", "shop-green", "{.metadata.uid}");
    env.kubectl(&[
        "patch",
        "bluegreen",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"active":"green"}}"#,
    ]);
    wait_for("active Service selects green", T, || async {
        selector("shop-active") == "green" && selector("shop-preview") == "blue"
    })
    .await;
    wait_for("status follows the promotion", T, || async {
        jsonpath(&env, "bluegreen", "shop", "{.status.activeImage}") == "nginx:1.27"
            && jsonpath(&env, "bluegreen", "shop", "{.status.previewColor}") == "blue"
    })
    .await;
    assert_eq!(
        jsonpath(&env, "deployment", "shop-green", "{.metadata.uid}"),
        green_uid
    );
    assert_eq!(owned(&env, all, "bluegreen"), children);

    // Change: scaling the inactive colour down to zero.
    env.kubectl(&[
        "patch",
        "bluegreen",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"scaleDownInactive":true}}"#,
    ]);
    wait_for("inactive blue scaled to 0", T, || async {
        jsonpath(&env, "deployment", "shop-blue", "{.spec.replicas}") == "0"
            && jsonpath(&env, "deployment", "shop-green", "{.spec.replicas}") == "2"
    })
    .await;

    // Drift: a hand edit of the active selector and a deleted preview Service are put back.
    env.kubectl(&[
        "patch",
        "service",
        "shop-active",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"selector":{"colour":"blue"}}}"#,
    ]);
    env.kubectl(&["delete", "service", "shop-preview"]);
    wait_for("hand edits put back", T, || async {
        selector("shop-active") == "green" && selector("shop-preview") == "blue"
    })
    .await;
    wait_for("Ready again", T, || async {
        ready(&env, "bluegreen", "shop").0 == "True"
    })
    .await;
    assert_eq!(owned(&env, all, "bluegreen"), children);
    assert_idle(&env.ns).await;

    // Delete: garbage collection removes every child.
    env.kubectl(&["delete", "bluegreen", "shop"]);
    wait_for("no children left", T, || async {
        owned(&env, all, "bluegreen").is_empty() && get(&env, "deployment", "shop-blue").is_none()
    })
    .await;
}
