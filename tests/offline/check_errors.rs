//! `ruleop check` on broken rule files: each gives exactly one located error and a
//! non-zero exit; a valid set prints one summary line per rule.

use crate::cli;

use std::path::Path;

use cli::line_of;

const GOOD: &str = include_str!("../../rules/memcached.yaml");

fn check(dir: &Path) -> (bool, String) {
    cli::ruleop_stdout(&[Path::new("check"), dir])
}

/// Writes `source` as the only rule file of a fresh directory and checks it.
fn check_source(source: &str) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rule.yaml"), source).unwrap();
    let (ok, out) = check(dir.path());
    (ok, out.lines().map(str::to_string).collect())
}

/// The single error line, asserting its position.
fn single_error(source: &str, line: usize, needle: &str) {
    let (ok, lines) = check_source(source);
    assert!(!ok, "check must fail");
    assert_eq!(lines.len(), 1, "exactly one error: {lines:#?}");
    let expected = format!("rule.yaml:{line}:");
    assert!(
        lines[0].starts_with("error ") && lines[0].contains(&expected),
        "wanted {expected} in {}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "wanted {needle:?} in {}",
        lines[0]
    );
}

#[test]
fn reference_rules_pass() {
    let (ok, out) = check(&cli::root().join("rules"));
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(out.lines().all(|l| l.starts_with("ok ")), "{out}");
}

#[test]
fn yaml_syntax_error() {
    let source = GOOD.replace("  children:\n", "  children: [\n");
    // The parser reports the error where it gives up: the line after the open bracket.
    single_error(
        &source,
        line_of(&source, "children: [") + 1,
        "did not find expected node content",
    );
}

#[test]
fn unknown_field() {
    let source = GOOD.replace("      template: |\n        metadata:\n          name: {{ parent.metadata.name }}\n        spec:\n          replicas", "      tempalte: |\n        metadata:\n          name: {{ parent.metadata.name }}\n        spec:\n          replicas");
    single_error(
        &source,
        line_of(&source, "tempalte"),
        "unknown field `tempalte`",
    );
}

#[test]
fn template_that_does_not_compile() {
    let source = GOOD.replace(
        "replicas: {{ parent.spec.size }}",
        "replicas: {{ parent.spec.size }",
    );
    single_error(
        &source,
        line_of(&source, "replicas: {{ parent.spec.size }"),
        "template does not compile",
    );
}

#[test]
fn bad_jsonpath() {
    let source = GOOD.replace(
        "$.related.pods[*].metadata.name",
        "$.related.pods[*.metadata.name",
    );
    single_error(
        &source,
        line_of(&source, "pods[*.metadata"),
        "invalid JSONPath",
    );
}

#[test]
fn child_kind_not_allowed() {
    let source = GOOD.replace("    - {apiVersion: v1, kind: Service}\n", "");
    let child_kind = source
        .lines()
        .position(|l| l == "      kind: Service")
        .unwrap()
        + 1;
    single_error(
        &source,
        child_kind,
        "child kind v1/Service is not in spec.allow",
    );
}

#[test]
fn expression_that_does_not_compile() {
    let source = GOOD.replace(
        "rule: parent.spec.size is number",
        "rule: parent.spec.size is number and (",
    );
    single_error(
        &source,
        line_of(&source, "and ("),
        "expression does not compile",
    );
}

#[test]
fn two_rules_for_one_kind_refuse_the_second() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        GOOD.replace("name: memcached\nspec:", "name: memcached-two\nspec:"),
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(
        out.contains("ok    ")
            && out.contains("b.yaml")
            && out.contains("already governed by rule \"memcached\""),
        "{out}"
    );
}

#[test]
fn readme_examples_pass() {
    let (ok, out) = check(&cli::root().join("docs/examples"));
    assert!(ok, "{out}");
}

#[test]
fn cluster_scoped_child_of_a_namespaced_parent() {
    // The memcached rule (a namespaced parent) with its Service turned into a ClusterRole.
    let source = GOOD
        .replace(
            "    - {apiVersion: v1, kind: Service}\n",
            "    - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole}\n",
        )
        .replace(
            "      apiVersion: v1\n      kind: Service\n",
            "      apiVersion: rbac.authorization.k8s.io/v1\n      kind: ClusterRole\n",
        );
    single_error(
        &source,
        line_of(&source, "      kind: ClusterRole"),
        "rbac.authorization.k8s.io/v1/ClusterRole is cluster-scoped and the parent cache.example.com/v1alpha1/Memcached is namespaced",
    );
}

#[test]
fn a_constant_too_big_to_fold_is_an_error() {
    // minijinja folds operators on literals while compiling: 4 × 100 MB here.
    let source = GOOD.replace(
        "image: memcached:1.4.36",
        "image: {{ ((\"x\" * 99999999) ~ (\"x\" * 99999999)) ~ ((\"x\" * 99999999) ~ (\"x\" * 99999999)) }}",
    );
    single_error(
        &source,
        line_of(&source, "image: {{ ((\"x\""),
        "a constant expression would build more than the render's memory budget",
    );
}

#[test]
fn growth_in_loops_and_absurd_limits_are_warnings() {
    let dir = &cli::root().join("tests/rules/hostile");
    let (ok, out) = check(dir);
    assert!(ok, "warnings do not fail the check: {out}");
    let warn: Vec<&str> = out.lines().filter(|l| l.starts_with("warn ")).collect();
    assert_eq!(warn.len(), 1, "{out}");
    assert!(
        warn[0].contains("blob.yaml:17:") && warn[0].contains("`ns.s` is used 2 times"),
        "{out}"
    );

    let source = GOOD.replace(
        "  resync: 1h",
        "  limits: {fuel: 1000000000, maxOutputBytes: 104857600}\n  resync: 1h",
    );
    let (ok, lines) = check_source(&source);
    assert!(ok, "{lines:#?}");
    let at = format!("rule.yaml:{}:", line_of(&source, "limits:"));
    let warns: Vec<&String> = lines.iter().filter(|l| l.starts_with("warn ")).collect();
    assert_eq!(warns.len(), 2, "{lines:#?}");
    assert!(warns.iter().all(|w| w.contains(&at)), "{lines:#?}");
    assert!(warns[0].contains("fuel 1000000000"), "{lines:#?}");
    assert!(warns[1].contains("3200 MiB"), "{lines:#?}");
}

const SHELF: &str = include_str!("../rules/authoring/shelf.yaml");

#[test]
fn unknown_filter_in_a_template_is_reported_at_its_line() {
    let source = SHELF.replace(
        "title: {{ parent.spec.books[index] }}",
        "title: {{ parent.spec.books[index] | sha265 }}",
    );
    single_error(
        &source,
        line_of(&source, "| sha265"),
        "unknown filter `sha265`",
    );
}

#[test]
fn misspelt_filter_used_twice_is_reported_once() {
    let source = SHELF
        .replace(r#"| default("none")"#, r#"| defualt("none")"#)
        .replace(r#"| join(",")"#, r#"| defualt("x") | join(",")"#);
    let (ok, lines) = check_source(&source);
    assert!(!ok);
    // Two templates, one unknown filter each: one error per template, at each use's line.
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains(&format!(
            "rule.yaml:{}:",
            line_of(&source, "defualt(\"none\")")
        )),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains(&format!(
            "rule.yaml:{}:",
            line_of(&source, "defualt(\"x\")")
        )),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("unknown filter `defualt`")),
        "{lines:#?}"
    );
}

#[test]
fn unknown_test_in_a_when_expression() {
    let source = SHELF.replace(
        "when: parent.spec.index | default(false)",
        "when: parent.spec.index is truthy",
    );
    single_error(
        &source,
        line_of(&source, "is truthy"),
        "unknown test `truthy`",
    );
}

#[test]
fn unknown_function_in_a_status_expression() {
    let source = SHELF.replace(
        r#"books: {expr: "children.book | length"}"#,
        r#"books: {expr: "count(children.book)"}"#,
    );
    single_error(
        &source,
        line_of(&source, "count("),
        "unknown function `count`",
    );
}

#[test]
fn a_crd_among_the_rules_is_used_and_a_directory_of_only_a_crd_has_no_rules() {
    let crd = "# A CRD next to the rules\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: shelves.library.example.org}\nspec: {group: library.example.org}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crd.yaml"), crd).unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("note  ")
            && lines[0].contains(
                "CustomResourceDefinition shelves.library.example.org: used as a parent schema"
            ),
        "{out}"
    );
    assert!(
        lines[1].starts_with("error ") && lines[1].contains("no rule files here"),
        "{out}"
    );
}

#[test]
fn a_directory_without_rule_files_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("error ") && out.contains("no rule files here"),
        "{out}"
    );
}

#[test]
fn a_misspelt_parent_field_is_reported_against_the_declared_spec() {
    // Printed as is: every render would fail, an error.
    let source = SHELF.replace(
        "title: {{ parent.spec.books[index] }}",
        "title: {{ parent.spec.books[index] }}\n          shelf: {{ parent.spec.nmae }}",
    );
    single_error(
        &source,
        line_of(&source, "parent.spec.nmae"),
        "parent.spec.nmae is not in the parent's schema (CRD shelves.library.example.org v1 (spec.crd); parent.spec has only books, index, label): printing it fails every render (undefined value); check the spelling or declare the field in spec.crd.spec",
    );
    // A `when` that could never be true: a warning, the check passes.
    let source = SHELF.replace(
        "when: parent.spec.index | default(false)",
        "when: parent.spec.indexed | default(false)",
    );
    let (ok, lines) = check_source(&source);
    assert!(ok, "{lines:#?}");
    let warns: Vec<&String> = lines.iter().filter(|l| l.starts_with("warn ")).collect();
    assert_eq!(warns.len(), 1, "{lines:#?}");
    assert!(
        warns[0].contains(&format!(
            "rule.yaml:{}:",
            line_of(&source, "parent.spec.indexed")
        )) && warns[0].contains("parent.spec.indexed is not in the parent's schema"),
        "{lines:#?}"
    );
}

/// A second Deployment child (flow style, other spacing) named by the same expression as the
/// first: both would render one object, so every plan would fail. Located at the second
/// name, naming the first child and its line.
#[test]
fn two_children_that_provably_render_one_object() {
    let source = GOOD.replace(
        "  related:\n",
        "    - name: canary\n      apiVersion: apps/v1\n      kind: Deployment\n      template: |\n        metadata: {name: \"{{parent.metadata.name}}\", labels: {track: canary}}\n        spec: {replicas: 1}\n  related:\n",
    );
    let first = line_of(&source, "          name: {{ parent.metadata.name }}");
    single_error(
        &source,
        line_of(&source, "track: canary"),
        &format!(
            "child \"canary\" renders Deployment \"{{{{ parent.metadata.name }}}}\", as child \"deployment\" does (line {first})"
        ),
    );
}

/// A cleanup step that renders a child's object would overwrite it while the parent goes.
#[test]
fn a_cleanup_step_that_provably_renders_a_childs_object() {
    let source = GOOD.replace(
        "  related:\n",
        "  finalizer:\n    cleanup:\n      - name: farewell\n        apiVersion: v1\n        kind: Service\n        template: |\n          metadata:\n            name: \"{{ parent.metadata.name }}\"\n        until: \"true\"\n  related:\n",
    );
    single_error(
        &source,
        line_of(&source, "            name: \"{{ parent.metadata.name }}\""),
        "cleanup step \"farewell\" renders Service \"{{ parent.metadata.name }}\", as child \"service\" does",
    );
}

/// Names that only may collide are the planner's to report, for the parent that makes them
/// collide: another expression of the same value, a `when` that may exclude the other child,
/// per-item names, a name chosen by a statement.
#[test]
fn names_that_may_differ_are_left_to_the_planner() {
    let extra = [
        "    - name: twin\n      apiVersion: apps/v1\n      kind: Deployment\n      template: |\n        metadata: {name: \"{{ parent.metadata.name ~ '' }}\"}\n",
        "    - name: alternative\n      apiVersion: apps/v1\n      kind: Deployment\n      when: parent.spec.size > 5\n      template: |\n        metadata: {name: \"{{ parent.metadata.name }}\"}\n",
        "    - name: per-item\n      apiVersion: apps/v1\n      kind: Deployment\n      forEach: {items: '[\"a\"]'}\n      template: |\n        metadata: {name: \"{{ parent.metadata.name }}{{ key }}\"}\n",
        "    - name: chosen\n      apiVersion: apps/v1\n      kind: Deployment\n      template: |\n        {% set n = parent.metadata.name %}\n        metadata: {name: \"{{ n }}\"}\n",
    ];
    for child in extra {
        let source = GOOD.replace("  related:\n", &format!("{child}  related:\n"));
        let (ok, lines) = check_source(&source);
        assert!(ok, "{child}\n{lines:#?}");
    }
}
