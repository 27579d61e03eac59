//! `ruleop test`: a passing suite, a failing case with a readable field diff at the right
//! line, and golden files written and accepted with `--update`.

use crate::cli;

use std::path::Path;
use std::process::Command;

const RULE: &str = include_str!("../rules/authoring/shelf.yaml");

fn ruleop_test(args: &[&Path], update: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruleop"));
    cmd.arg("test").args(args);
    if update {
        cmd.arg("--update");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A directory with the shelf rule and one test file.
fn suite(test: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shelf.yaml"), RULE).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/shelf.yaml"), test).unwrap();
    dir
}

const PARENT: &str = "
    parent:
      apiVersion: library.example.org/v1
      kind: Shelf
      metadata: {name: fiction}
      spec: {books: [Dune, Emma]}
";

#[test]
fn the_checked_in_suites_pass() {
    let root = cli::root();
    for dir in ["tests/rules/authoring", "rules"] {
        let (code, out) = ruleop_test(&[&root.join(dir)], false);
        assert_eq!(code, 0, "{dir}:\n{out}");
        assert!(out.contains(" 0 failed"), "{out}");
        assert!(!out.contains("\n0 passed"), "{out}");
    }
}

#[test]
fn a_failing_case_prints_a_field_diff_at_its_line_and_exits_non_zero() {
    let test = format!(
        "rule: ../shelf.yaml\ntests:\n  - name: passes\n{PARENT}    expect: {{apply: {{ConfigMap/fiction-book-0: Create, ConfigMap/fiction-book-1: Create}}}}\n  - name: wrong title\n{PARENT}    expect:\n      apply:\n        ConfigMap/fiction-book-0: Create\n        ConfigMap/fiction-book-1: {{object: {{data: {{title: Persuasion}}}}}}\n      delete: [ConfigMap/gone]\n"
    );
    let dir = suite(&test);
    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ok    ") && lines[0].ends_with("tests/shelf.yaml:3:5: passes"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("FAIL  ") && lines[1].ends_with("tests/shelf.yaml:11:5: wrong title"),
        "{out}"
    );
    assert_eq!(
        lines[2..],
        [
            "  apply ConfigMap/fiction-book-1 (- expected, + actual):",
            r#"      ~ data.title: "Persuasion" -> "Emma""#,
            r#"  delete: expected ["ConfigMap/gone"], got []"#,
            "1 passed, 1 failed",
        ],
        "{out}"
    );
}

#[test]
fn update_writes_golden_files_and_a_changed_rule_shows_a_line_diff() {
    let test = format!(
        "rule: ../shelf.yaml\ntests:\n  - name: golden\n{PARENT}    golden: shelf.golden.yaml\n"
    );
    let dir = suite(&test);
    let golden = dir.path().join("tests/shelf.golden.yaml");

    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 1, "a missing golden file fails: {out}");
    assert!(out.contains("does not exist (run with --update"), "{out}");
    assert!(!golden.exists());

    let (code, out) = ruleop_test(&[dir.path()], true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("wrote ") && out.contains("shelf.golden.yaml"),
        "{out}"
    );
    let written = std::fs::read_to_string(&golden).unwrap();
    assert!(
        written.contains("# create: child book") && written.contains("title: Emma"),
        "{written}"
    );

    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 0, "the written golden file passes: {out}");

    // The rule changes: the plan no longer matches and the diff shows exactly that line.
    std::fs::write(
        dir.path().join("shelf.yaml"),
        RULE.replace(r#"default("none")"#, r#"default("unlabelled")"#),
    )
    .unwrap();
    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 1, "{out}");
    let minus: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    let plus: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("+ "))
        .collect();
    assert_eq!(minus.len(), 4, "label and hash of two books: {out}");
    assert_eq!(plus.len(), 4, "{out}");
    assert_eq!(
        minus.iter().filter(|l| l.contains("label: none")).count(),
        2,
        "{out}"
    );
    assert_eq!(
        plus.iter()
            .filter(|l| l.contains("label: unlabelled"))
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&golden).unwrap(),
        written,
        "not rewritten without --update"
    );

    let (code, out) = ruleop_test(&[dir.path()], true);
    assert_eq!(code, 0, "{out}");
    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn nothing_to_run_or_a_broken_file_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let (code, _) = ruleop_test(&[empty.path()], false);
    assert_ne!(code, 0);
    let dir = suite(
        "rule: ../shelf.yaml\ntests:\n  - name: x\n    parent: {kind: Shelf}\n    bogus: 1\n",
    );
    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("ERROR ")
            && out.contains("tests/shelf.yaml:5:5: tests[0]: unknown field `bogus`"),
        "{out}"
    );
}

/// One kind and name in several namespaces (examples/team-rbac: a RoleBinding per
/// namespace): keys carry the namespace, each copy is checked on its own, and a bare
/// `Kind/name` that names several is refused rather than checking one at random.
#[test]
fn children_in_several_namespaces_are_keyed_by_namespace() {
    let root = cli::root();
    let (code, out) = ruleop_test(&[&root.join("examples/team-rbac")], false);
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    for f in ["rule.yaml", "sample.yaml"] {
        std::fs::copy(root.join("examples/team-rbac").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let test = "rule: ../rule.yaml\ntests:\n  - name: prod differs\n    parent: ../sample.yaml\n    steps:\n      - expect: {failure: null}\n      - observed: {RoleBinding/payments-prod/team-payments: null}\n        expect:\n          apply:\n            RoleBinding/payments-prod/team-payments: {action: Create, object: {subjects: [{name: carol}]}}\n  - name: bare key\n    parent: ../sample.yaml\n    expect: {delete: [RoleBinding/team-payments]}\n";
    std::fs::write(dir.path().join("tests/t.yaml"), test).unwrap();
    let (code, out) = ruleop_test(&[dir.path()], false);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].ends_with(
            "tests/t.yaml:7:9): apply RoleBinding/payments-prod/team-payments (- expected, + actual):"
        ) && lines[2].contains(r#"[{"name":"carol"}] -> "#)
            && !out.contains("payments-dev"),
        "only the prod copy was deleted and re-created, and only it is compared:\n{out}"
    );
    assert!(
        out.contains(r#"delete: expected ["RoleBinding/team-payments"], got []"#),
        "{out}"
    );
}
