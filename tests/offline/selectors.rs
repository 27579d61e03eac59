//! Parent selectors offline: `render` and `test` plan nothing for a parent the rule does not
//! select, and say so.

use crate::cli;

fn example(file: &str) -> String {
    cli::root()
        .join("examples/service-per-pod")
        .join(file)
        .to_str()
        .unwrap()
        .to_string()
}

/// The example's sample with its annotations replaced by `annotations` (YAML flow map).
fn sample_with(dir: &std::path::Path, annotations: &str) -> String {
    let text = std::fs::read_to_string(example("sample.yaml")).unwrap();
    let start = text.find("  annotations:").unwrap();
    let end = text.find("spec:").unwrap();
    let edited = format!(
        "{}  annotations: {annotations}\n{}",
        &text[..start],
        &text[end..]
    );
    let path = dir.join("sts.yaml");
    std::fs::write(&path, edited).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn render_of_an_unselected_parent_says_so_and_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rule = example("rule.yaml");
    let plain = sample_with(dir.path(), "{other: x}");
    let (ok, out) = cli::ruleop_stdout(&["render", "--rule", &rule, "--resource", &plain]);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "# not selected (annotation service-per-pod-label present required by \
         spec.parent.annotationSelector): ruleop leaves this parent alone\n"
    );
    // JSON output carries the reason too, and nothing else is planned.
    let (ok, out) = cli::ruleop_stdout(&[
        "render",
        "--rule",
        &rule,
        "--resource",
        &plain,
        "--output",
        "json",
    ]);
    assert!(ok, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        plan["not_selected"]
            .as_str()
            .unwrap()
            .contains("service-per-pod-label")
    );
    assert_eq!(plan["apply"], serde_json::json!([]));
    assert_eq!(plan["status"], serde_json::Value::Null);
    // The annotation present, with any value: selected and planned.
    let annotated = sample_with(dir.path(), "{service-per-pod-label: app}");
    let (ok, out) = cli::ruleop_stdout(&["render", "--rule", &rule, "--resource", &annotated]);
    assert!(ok, "{out}");
    assert!(!out.contains("not selected"), "{out}");
    assert!(
        out.contains("# create: child pods") && out.contains("app: nginx-1"),
        "{out}"
    );
}

#[test]
fn check_resource_of_an_unselected_parent_says_not_selected() {
    let dir = tempfile::tempdir().unwrap();
    let plain = sample_with(dir.path(), "{other: x}");
    let (ok, lines) = cli::ruleop_lines(&["check", &example("rule.yaml"), "--resource", &plain]);
    assert!(ok, "{lines:#?}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("note  ")
            && last.ends_with(
                "StatefulSet nginx: not selected (annotation service-per-pod-label present \
                 required by spec.parent.annotationSelector); not checked"
            ),
        "{lines:#?}"
    );
}

#[test]
fn a_test_expecting_the_wrong_selection_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    std::fs::write(
        tests.join("t.yaml"),
        format!(
            "rule: {}\ntests:\n  - name: wrong\n    parent: {}\n    \
             patch: {{metadata: {{annotations: {{service-per-pod-label: null}}}}}}\n    \
             expect: {{selected: true}}\n",
            example("rule.yaml"),
            example("sample.yaml"),
        ),
    )
    .unwrap();
    let (ok, out) = cli::ruleop_stdout(&["test", dir.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "selected: expected true, got false (annotation service-per-pod-label present"
        ),
        "{out}"
    );
    // The example's own tests, one of them on an unselected StatefulSet, pass.
    let (ok, out) = cli::ruleop_stdout(&["test", &example("")]);
    assert!(ok && out.contains("3 passed, 0 failed"), "{out}");
}
