//! `ruleop check` against the parent's CRD (`--crd`, CRDs in a checked directory): each
//! broken copy of tests/rules/check/gallery.yaml or of its CRD is reported once, at its
//! line, as an error or a warning; our own rules and examples pass with their CRDs.

use crate::cli;

use std::path::{Path, PathBuf};

use cli::{line_of, ruleop_lines as ruleop};

const RULE: &str = include_str!("../rules/check/gallery.yaml");
const CRD: &str = include_str!("../rules/check/crds/gallery.yaml");
const SAMPLE: &str = "apiVersion: art.example.org/v1beta2\nkind: Gallery\nmetadata: {name: tate}\nspec: {frame: {width: 3}}\n";

fn root() -> PathBuf {
    cli::root()
}

/// `ruleop check rule.yaml --crd crd.yaml` on the given texts.
fn check(rule: &str, crd: &str) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (dir.path().join("rule.yaml"), dir.path().join("crd.yaml"));
    std::fs::write(&r, rule).unwrap();
    std::fs::write(&c, crd).unwrap();
    ruleop(&[
        "check".as_ref(),
        r.as_os_str(),
        "--crd".as_ref(),
        c.as_os_str(),
    ])
}

/// Asserts the output has exactly one finding, an `error` (check fails, no `ok` line) or a
/// `warn` (check passes, the rule's `ok` line first), at `rule.yaml:<line>:`.
fn one_finding(rule: &str, crd: &str, what: &str, line: usize, needle: &str) {
    let (ok, lines) = check(rule, crd);
    let (findings, rest): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.starts_with(what));
    assert_eq!(findings.len(), 1, "exactly one {what}: {lines:#?}");
    let at = format!("rule.yaml:{line}:");
    assert!(
        findings[0].contains(&at) && findings[0].contains(needle),
        "wanted {at} and {needle:?} in {}",
        findings[0]
    );
    match what {
        "error" => assert!(!ok && rest.is_empty(), "{lines:#?}"),
        _ => assert!(
            ok && rest.len() == 1 && rest[0].starts_with("ok "),
            "{lines:#?}"
        ),
    }
}

#[test]
fn the_gallery_passes_against_its_crd() {
    let (ok, lines) = check(RULE, CRD);
    assert!(ok, "{lines:#?}");
    assert_eq!(lines.len(), 1, "one ok line, no warning: {lines:#?}");
    assert!(lines[0].starts_with("ok "), "{lines:#?}");
}

#[test]
fn a_printed_field_the_crd_lacks_is_an_error_at_its_line() {
    let rule = RULE.replace(
        "width: \"{{ parent.spec.frame.width }}\"",
        "width: \"{{ parent.spec.frame.widht }}\"",
    );
    one_finding(
        &rule,
        CRD,
        "error",
        line_of(&rule, "frame.widht"),
        "parent.spec.frame.widht is not in the parent's schema (CRD galleries.art.example.org v1beta2",
    );
    // Through a constant subscript into a list's items.
    let rule = RULE.replace("pieces[0].title }}", "pieces[0].titel }}");
    one_finding(
        &rule,
        CRD,
        "error",
        line_of(&rule, "titel"),
        "parent.spec.pieces[0].titel is not in the parent's schema",
    );
}

#[test]
fn a_typo_that_makes_a_when_always_false_is_a_warning() {
    let rule = RULE.replacen(
        "when: parent.spec.frame.lit | default(false)",
        "when: parent.spec.frame.lt | default(false)",
        1,
    );
    one_finding(
        &rule,
        CRD,
        "warn",
        line_of(&rule, "frame.lt"),
        "parent.spec.frame.lt is not in the parent's schema",
    );
    // A guarded use in a template: always the default.
    let rule = RULE.replace("frame.lux | default(300)", "frame.luks | default(300)");
    one_finding(
        &rule,
        CRD,
        "warn",
        line_of(&rule, "frame.luks"),
        "a default always applies",
    );
}

#[test]
fn a_status_jsonpath_into_a_missing_parent_field_is_a_warning() {
    let rule = RULE.replace("$.parent.spec.frame.width", "$.parent.spec.frame.wdth");
    one_finding(
        &rule,
        CRD,
        "warn",
        line_of(&rule, "frame.wdth"),
        "parent.spec.frame.wdth is not in the parent's schema",
    );
}

#[test]
fn anything_below_preserve_unknown_fields_is_allowed() {
    let rule = RULE.replace("extra.curator", "extra.curator.name");
    let (ok, lines) = check(&rule, CRD);
    assert!(ok && lines.len() == 1, "{lines:#?}");
    // But a field beside it is checked.
    let rule = RULE.replace("extra.curator", "extras.curator");
    one_finding(
        &rule,
        CRD,
        "warn",
        line_of(&rule, "extras"),
        "parent.spec.extras",
    );
}

#[test]
fn status_fields_the_crd_lacks_are_left_out_with_a_warning() {
    let crd = CRD.replace("                phase: {type: string}\n", "");
    one_finding(
        RULE,
        &crd,
        "warn",
        line_of(RULE, "phase: {expr:"),
        "status.phase is not written",
    );
}

#[test]
fn condition_fields_the_crd_lacks_are_left_out_with_a_warning() {
    let crd = CRD.replace(
        "                      observedGeneration: {type: integer}\n",
        "",
    );
    one_finding(
        RULE,
        &crd,
        "warn",
        line_of(RULE, "parent: {apiVersion"),
        "status.conditions[].observedGeneration (written by ruleop) is left out",
    );
}

#[test]
fn a_crd_without_the_status_subresource_is_an_error() {
    let crd = CRD.replace("      subresources: {status: {}}\n", "");
    one_finding(
        RULE,
        &crd,
        "error",
        line_of(RULE, "parent: {apiVersion"),
        "has no status subresource",
    );
}

#[test]
fn a_crd_without_the_parent_version_is_an_error() {
    let crd = CRD.replace("- name: v1beta2", "- name: v1");
    one_finding(
        RULE,
        &crd,
        "error",
        line_of(RULE, "parent: {apiVersion"),
        "has no version \"v1beta2\" (it has: v1)",
    );
}

#[test]
fn a_directory_uses_its_crds_and_notes_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    // The directory's CRD lacks `phase`: the warning proves it was used.
    let crd = CRD.replace("                phase: {type: string}\n", "");
    std::fs::write(dir.path().join("crd.yaml"), crd).unwrap();
    std::fs::write(dir.path().join("rule.yaml"), RULE).unwrap();
    std::fs::write(dir.path().join("sample.yaml"), SAMPLE).unwrap();
    let (ok, lines) = ruleop(&["check".as_ref(), dir.path().as_os_str()]);
    assert!(ok, "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("note  ") && lines[0].contains("crd.yaml: CustomResourceDefinition galleries.art.example.org: used as a parent schema"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("note  ")
            && lines[1]
                .contains("sample.yaml: skipped, not a Rule (a Gallery (art.example.org/v1beta2))"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("warn ") && lines[3].contains("status.phase is not written"),
        "{lines:#?}"
    );

    // Without rule files, the directory is still an error.
    std::fs::remove_file(dir.path().join("rule.yaml")).unwrap();
    let (ok, lines) = ruleop(&["check".as_ref(), dir.path().as_os_str()]);
    assert!(!ok);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[2].contains("no rule files here"), "{lines:#?}");
}

#[test]
fn a_file_named_that_is_not_a_rule_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (crd, sample) = (dir.path().join("crd.yaml"), dir.path().join("sample.yaml"));
    std::fs::write(&crd, CRD).unwrap();
    std::fs::write(&sample, SAMPLE).unwrap();
    let (ok, lines) = ruleop(&["check".as_ref(), crd.as_os_str()]);
    assert!(!ok);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(&format!(
            "crd.yaml:{}:",
            line_of(CRD, "kind: CustomResourceDefinition")
        )) && lines[0].contains(
            "this is a CustomResourceDefinition (galleries.art.example.org); pass it with --crd"
        ),
        "{lines:#?}"
    );
    let (ok, lines) = ruleop(&["check".as_ref(), sample.as_os_str()]);
    assert!(!ok);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0]
            .contains("this is a Gallery (art.example.org/v1beta2); ruleop check takes Rule files"),
        "{lines:#?}"
    );
}

/// Our rules with crds/, every example directory with its own CRD, and the test rules of
/// this file: no error, no warning.
#[test]
fn our_rules_and_examples_pass_with_their_crds() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    examples.sort();
    // Each example is an operator of its own (two may govern one kind, as `service-per-pod`
    // and `pod-name-label` both govern StatefulSets): one rule set per example.
    let sets = std::iter::once(vec![root().join("rules"), root().join("tests/rules/check")])
        .chain(examples.into_iter().map(|e| vec![e]));
    let mut lines = Vec::new();
    for set in sets {
        let mut args: Vec<PathBuf> = vec!["check".into()];
        args.extend(set);
        args.extend(["--crd".into(), root().join("crds")]);
        args.extend(["--crd".into(), root().join("tests/rules/check/crds")]);
        let (ok, set_lines) = ruleop(&args);
        assert!(ok, "{set_lines:#?}");
        lines.extend(set_lines);
    }
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("ok ") && !l.starts_with("note "))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let rules = lines.iter().filter(|l| l.starts_with("ok ")).count();
    assert!(rules >= 15, "every rule checked: {lines:#?}");
    // Every custom parent had a CRD (from crds/, a directory, or its own spec.crd).
    assert!(
        !lines.iter().any(|l| l.contains("no CRD given")),
        "{lines:#?}"
    );
    assert!(Path::new(&root().join("crds")).is_dir());
}

/// A built-in parent: its status is its own controller's, so the rule's status field and
/// what the kind's conditions lack are left out, each said at its line; the CRD of a parent
/// whose status has no conditions gets the same for them.
#[test]
fn what_a_parents_status_cannot_take_is_left_out_with_a_warning() {
    let rule = root().join("tests/rules/ownership/deployment/deployment.yaml");
    let source = std::fs::read_to_string(&rule).unwrap();
    let (ok, lines) = ruleop(&["check".as_ref(), rule.as_os_str()]);
    assert!(ok && lines.len() == 3, "{lines:#?}");
    assert!(lines[0].starts_with("ok "), "{lines:#?}");
    let parent = format!(
        "deployment.yaml:{}:",
        line_of(&source, "parent: {apiVersion")
    );
    assert!(
        lines[1].starts_with("warn ")
            && lines[1].contains(&parent)
            && lines[1]
                .contains("status.conditions[].observedGeneration (written by ruleop) is left out"),
        "{lines:#?}"
    );
    let image = format!("deployment.yaml:{}:", line_of(&source, "image: {path:"));
    assert!(
        lines[2].contains(&image)
            && lines[2].contains("status.image is not written: Deployment is a built-in kind"),
        "{lines:#?}"
    );

    let rule = root().join("tests/rules/ownership/gadget/gadget.yaml");
    let crds = root().join("tests/rules/ownership/crds.yaml");
    let source = std::fs::read_to_string(&rule).unwrap();
    let (ok, lines) = ruleop(&[
        "check".as_ref(),
        rule.as_os_str(),
        "--crd".as_ref(),
        crds.as_os_str(),
    ]);
    assert!(ok && lines.len() == 4, "{lines:#?}");
    let parent = format!("gadget.yaml:{}:", line_of(&source, "parent: {apiVersion"));
    let undeclared = format!("gadget.yaml:{}:", line_of(&source, "undeclared:"));
    for (line, at, what) in [
        (
            1,
            &parent,
            "status.observedGeneration (written by ruleop) is not written",
        ),
        (
            2,
            &parent,
            "status.conditions (the Ready condition and the rule's conditions) is not written",
        ),
        (3, &undeclared, "status.undeclared is not written"),
    ] {
        assert!(
            lines[line].starts_with("warn ")
                && lines[line].contains(at.as_str())
                && lines[line].contains(what),
            "{what}: {lines:#?}"
        );
    }
}

/// A rule with its own `spec.crd` is also checked against every other CRD given for its
/// parent: one that differs from what `ruleop crd` generates (a stale one installed) is an
/// error naming that CRD's source; the generated one passes.
#[test]
fn a_crd_differing_from_the_rules_spec_crd_is_reported_with_its_source() {
    let rule = root().join("tests/rules/check-resource/defaults/kettle.yaml");
    let (ok, generated) =
        cli::ruleop_stdout(&["crd".as_ref(), "--rule".as_ref(), rule.as_os_str()]);
    assert!(ok, "{generated}");
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.yaml");
    std::fs::write(&current, &generated).unwrap();
    let (ok, lines) = ruleop(&[
        "check".as_ref(),
        rule.as_os_str(),
        "--crd".as_ref(),
        current.as_os_str(),
    ]);
    assert!(ok, "{lines:#?}");

    let mut stale: serde_json::Value = ruleop_lang::yaml::from_str(&generated).unwrap();
    stale
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/litres")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("default")
        .unwrap();
    let file = dir.path().join("stale.yaml");
    std::fs::write(&file, ruleop_lang::yaml::to_string(&stale)).unwrap();
    let (ok, lines) = ruleop(&[
        "check".as_ref(),
        rule.as_os_str(),
        "--crd".as_ref(),
        file.as_os_str(),
    ]);
    assert!(!ok, "{lines:#?}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error ")).collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    // Located at spec.crd's first field, the line after `crd:`.
    let spec_crd_line = line_of(&std::fs::read_to_string(&rule).unwrap(), "  crd:") + 1;
    assert!(
        errors[0].contains(&format!("kettle.yaml:{spec_crd_line}:"))
            && errors[0].contains("stale.yaml")
            && errors[0].contains("differs from the CRD spec.crd generates")
            && errors[0].contains("litres.default"),
        "{}",
        errors[0]
    );
}
