//! `ruleop check --resource`: rendered children checked against their kinds' schemas. A rule
//! whose children each break their schema once gets exactly those errors at their template
//! lines; the reference rules, samples and examples pass (no false positives).

use crate::cli;

fn dir() -> std::path::PathBuf {
    cli::root().join("tests/rules/check-resource")
}

/// Runs `ruleop check ARGS` from the crate root: (success, stdout lines).
fn check(args: &[&str]) -> (bool, Vec<String>) {
    cli::ruleop_lines(&[&["check"], args].concat())
}

fn line_of(file: &str, needle: &str) -> usize {
    cli::line_of(&std::fs::read_to_string(dir().join(file)).unwrap(), needle)
}

fn starting(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn each_broken_child_is_reported_once_at_its_template_line() {
    let (ok, lines) = check(&[
        "tests/rules/check-resource/broken.yaml",
        "--crd",
        "tests/rules/check-resource/crds",
        "--resource",
        "tests/rules/check-resource/sample.yaml",
    ]);
    assert!(!ok, "check must fail: {lines:#?}");
    let errors = starting(&lines, "error ");
    let expected = [
        (
            line_of("broken.yaml", "depth: {{"),
            "child berth (ConfigMap berth-a): data.depth: expected string, got number 12 (3 copies)",
        ),
        (
            line_of("broken.yaml", "revisionHistoryLimt"),
            "child pilot (Deployment north-pilot): spec.revisionHistoryLimt: field not declared \
             in the schema (server-side apply rejects it)",
        ),
        (
            line_of("broken.yaml", "lift: \""),
            "child crane (Crane north-crane): spec.lift: expected integer, got string \"40\"",
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{lines:#?}");
    for (error, (line, message)) in errors.iter().zip(expected) {
        let located = format!(
            "error tests/rules/check-resource/broken.yaml:{line}:1: \
             tests/rules/check-resource/sample.yaml: Harbour north: {message}"
        );
        assert_eq!(error, &located);
    }
    // The Buoy's kind has no schema: said once, not an error.
    let notes = starting(&lines, "note  ");
    assert_eq!(notes.len(), 1, "{lines:#?}");
    assert!(
        notes[0].contains(
            "child buoy (Buoy north-buoy): no schema for checkres.test.ruleop.dev/v1 Buoy"
        ),
        "{notes:#?}"
    );
}

#[test]
fn a_crd_kind_without_its_crd_is_a_note_not_an_error() {
    let (ok, lines) = check(&[
        "tests/rules/check-resource/broken.yaml",
        "--resource",
        "tests/rules/check-resource/sample.yaml",
    ]);
    assert!(!ok);
    assert_eq!(starting(&lines, "error ").len(), 2, "{lines:#?}");
    let notes = starting(&lines, "note  ");
    assert_eq!(notes.len(), 2, "{lines:#?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("child crane (Crane north-crane): no schema")),
        "{notes:#?}"
    );
}

#[test]
fn reference_rules_and_samples_pass() {
    let (ok, lines) = check(&["rules/", "--crd", "crds/", "--resource", "samples/"]);
    assert!(ok, "{lines:#?}");
    let samples = std::fs::read_dir(cli::root().join("samples"))
        .unwrap()
        .count();
    let checked = starting(&lines, "ok    samples/");
    assert_eq!(checked.len(), samples, "every sample checked: {lines:#?}");
    assert!(checked.iter().all(|l| l.contains(" match")), "{lines:#?}");
    assert_eq!(lines.len(), samples * 2, "only ok lines: {lines:#?}");
}

#[test]
fn examples_pass() {
    let examples = cli::root().join("examples");
    let mut dirs: Vec<_> = std::fs::read_dir(examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "{dirs:?}");
    for dir in dirs {
        let d = dir.to_str().unwrap();
        let (ok, lines) = check(&[
            &format!("{d}/rule.yaml"),
            "--crd",
            d,
            "--resource",
            &format!("{d}/sample.yaml"),
            "--observed",
            "tests/rules/check-resource/observed.yaml",
        ]);
        assert!(ok, "{d}: {lines:#?}");
        // Checked, not skipped: the sample renders children and every one has a schema.
        assert_eq!(lines.len(), 2, "{d}: {lines:#?}");
        assert!(
            lines[1].starts_with("ok    ") && lines[1].contains(" match"),
            "{d}: {lines:#?}"
        );
    }
}

/// A sample whose two children name one object cannot be planned: `check --resource` fails,
/// naming both children (the planner's `DuplicateName`).
#[test]
fn a_sample_whose_children_name_one_object_fails_the_check() {
    let (ok, lines) = check(&[
        "tests/rules/duplicate/gazette.yaml",
        "--resource",
        "tests/rules/duplicate/sample-collide.yaml",
    ]);
    assert!(!ok, "check must fail: {lines:#?}");
    let errors = starting(&lines, "error ");
    assert_eq!(errors.len(), 1, "{lines:#?}");
    for needle in [
        "Gazette daily: cannot plan (DuplicateName)",
        "ConfigMap/news/front is rendered twice",
        "child \"front\" (tests/rules/duplicate/gazette.yaml:",
        "child \"back\" (tests/rules/duplicate/gazette.yaml:",
    ] {
        assert!(errors[0].contains(needle), "{needle} in {}", errors[0]);
    }
}

/// A sample that omits fields the rule's own `spec.crd` defaults is planned with those
/// defaults offline, as the cluster stores it: `check --resource`, `render` and `test` pass.
#[test]
fn the_rules_own_crd_defaults_are_applied_offline() {
    let rule = "tests/rules/check-resource/defaults/kettle.yaml";
    let sample = "tests/rules/check-resource/defaults/sample.yaml";
    let (ok, lines) = check(&[rule, "--resource", sample]);
    assert!(ok, "{lines:#?}");
    assert!(starting(&lines, "error ").is_empty(), "{lines:#?}");
    let (ok, out) = cli::ruleop_stdout(&["render", "--rule", rule, "--resource", sample]);
    assert!(ok, "{out}");
    assert!(
        out.contains("litres: '2'") && out.contains("tea: green"),
        "{out}"
    );
    let (ok, out) = cli::ruleop_stdout(&["test", "tests/rules/check-resource/defaults"]);
    assert!(ok && out.contains("1 passed"), "{out}");
}
