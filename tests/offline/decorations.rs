//! Decorations offline: the pod-name-label example passes `check` and `test`, plans each
//! Pod's label through the library, `ruleop rbac` grants `patch` on Pods, and a bad
//! decoration is reported at its line.

use serde_json::{Value as Json, json};

use crate::cli::{line_of, root, ruleop_stdout};
use ruleop_lang::load::parse_rule;
use ruleop_plan::{Input, decoration_manager, plan};

fn example(file: &str) -> std::path::PathBuf {
    root().join("examples/pod-name-label").join(file)
}

#[test]
fn the_example_passes_check_and_its_rule_tests() {
    let rule = std::fs::read_to_string(example("rule.yaml")).unwrap();
    assert!(rule.contains("# Source: ") && rule.contains("# Deviations:"));
    let (ok, out) = ruleop_stdout(&["check", example("rule.yaml").to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = ruleop_stdout(&["test", example("").to_str().unwrap()]);
    assert!(
        ok && out.contains("ok ") && out.contains(" 0 failed"),
        "{out}"
    );
}

#[test]
fn the_example_labels_each_pod_of_the_statefulset_with_its_name() {
    let path = example("rule.yaml");
    let rule = parse_rule(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut parent: Json =
        ruleop_lang::yaml::from_str(&std::fs::read_to_string(example("sample.yaml")).unwrap())
            .unwrap();
    parent["metadata"]["uid"] = json!("sts-uid");
    parent["metadata"]["namespace"] = json!("default");
    parent["metadata"]["finalizers"] = json!(["ruleop.dev/cleanup"]);
    let pods = std::fs::read_to_string(example("pods.yaml")).unwrap();
    let observed = ruleop_lang::yaml::from_str_multiple(&pods).unwrap();
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    let planned = plan(
        &rule,
        Input {
            parent: &parent,
            observed: &observed,
            now,
            schemas: None,
        },
    );
    assert!(planned.failure.is_none(), "{:?}", planned.failure);
    let labels: Vec<(String, Json)> = planned
        .decorate
        .iter()
        .map(|d| (d.key.name.clone(), json!(d.labels)))
        .collect();
    assert_eq!(
        labels,
        [
            ("web-0".into(), json!({"pod-name": "web-0"})),
            ("web-1".into(), json!({"pod-name": "web-1"}))
        ]
    );
    let manager = decoration_manager("pod-name-label", "sts-uid");
    assert!(planned.decorate.iter().all(|d| d.manager == manager));
    assert!(planned.undecorate.is_empty());
    // The Services per Pod are the rule's children; the Pods are only decorated.
    let children: Vec<String> = planned
        .apply
        .iter()
        .map(|d| ruleop_schema::meta::ObjectKey::of(&d.object).to_string())
        .collect();
    assert_eq!(children, ["Service/default/web-0", "Service/default/web-1"]);
}

#[test]
fn render_prints_the_decorations() {
    let (ok, out) = ruleop_stdout(&[
        "render",
        "--rule",
        example("rule.yaml").to_str().unwrap(),
        "--resource",
        example("sample.yaml").to_str().unwrap(),
        "--observed",
        example("pods.yaml").to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains(
            r#"# decorate: Pod/default/web-0 {"annotations":{},"labels":{"pod-name":"web-0"}}"#
        ),
        "{out}"
    );
    assert!(!out.contains("other-0"), "{out}");
}

#[test]
fn rbac_grants_patch_on_the_decorated_kind_only() {
    let (ok, out) = ruleop_stdout(&["rbac", "--rules", example("rule.yaml").to_str().unwrap()]);
    assert!(ok, "{out}");
    let pods = out
        .split("- apiGroups:")
        .find(|rule| rule.contains("- pods"))
        .unwrap_or_else(|| panic!("no pods grant:\n{out}"));
    for verb in ["get", "list", "watch", "patch"] {
        assert!(pods.contains(&format!("- {verb}")), "{pods}");
    }
    for verb in ["create", "delete", "update"] {
        assert!(!pods.contains(&format!("- {verb}")), "{pods}");
    }
}

#[test]
fn a_bad_decoration_is_reported_at_its_line() {
    let source = std::fs::read_to_string(example("rule.yaml"))
        .unwrap()
        .replace("target:\n", "target:\n        related: pods\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rule.yaml");
    std::fs::write(&path, &source).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // The error is at the target, naming the file.
    let line = line_of(&source, "related: pods");
    assert!(text.contains(&format!("rule.yaml:{line}:")), "{text}");
    assert!(
        text.contains("exactly one of selector, objectName, related"),
        "{text}"
    );
}
