//! CEL checks from the command line: `ruleop check --hints` names the Jinja checks that could
//! be CEL, `ruleop policy` prints a policy and its binding, `ruleop render` refuses a resource
//! a CEL check refuses (the cluster side is tests/cluster/admission.rs).

use crate::cli;

use cli::{line_of, ruleop_lines, ruleop_stdout};

#[test]
fn check_hints_name_the_jinja_checks_that_could_be_cel() {
    let dir = cli::root().join("tests/rules/check");
    let gallery = std::fs::read_to_string(dir.join("gallery.yaml")).unwrap();
    let (ok, lines) = ruleop_lines(&["check".as_ref(), dir.as_os_str(), "--hints".as_ref()]);
    assert!(ok, "{lines:#?}");
    let hints: Vec<&String> = lines.iter().filter(|l| l.starts_with("hint ")).collect();
    assert_eq!(hints.len(), 1, "{lines:#?}");
    let at = format!(
        "gallery.yaml:{}:",
        line_of(&gallery, "- rule: parent.spec.frame.width")
    );
    assert!(
        hints[0].contains(&at) && hints[0].contains("spec.validate[0] reads only the parent"),
        "{}",
        hints[0]
    );
    // Without --hints, nothing is said.
    let (_, lines) = ruleop_lines(&["check".as_ref(), dir.as_os_str()]);
    assert!(!lines.iter().any(|l| l.starts_with("hint ")), "{lines:#?}");
}

#[test]
fn policy_and_render_use_the_same_cel_checks() {
    let rule = cli::root().join("tests/rules/admission/settings.yaml");
    let (ok, out) = ruleop_stdout(&[
        "policy".as_ref(),
        "--rule".as_ref(),
        rule.as_os_str(),
        "--namespace".as_ref(),
        "team-a".as_ref(),
    ]);
    assert!(ok, "{out}");
    let docs: Vec<serde_json::Value> = out
        .split("\n---\n")
        .map(|d| ruleop_lang::yaml::from_str(d).unwrap())
        .collect();
    assert_eq!(docs[0]["kind"], "ValidatingAdmissionPolicy");
    assert_eq!(docs[1]["kind"], "ValidatingAdmissionPolicyBinding");
    let expressions = &docs[0]["spec"]["validations"];
    assert!(
        expressions[0]["expression"]
            .as_str()
            .unwrap()
            .contains("object.data.mode in ['fast', 'safe']"),
        "{expressions}"
    );
    assert!(
        expressions[1]["expression"]
            .as_str()
            .unwrap()
            .starts_with("request.operation != 'UPDATE' || ("),
        "{expressions}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {mode: turbo}\n",
    )
    .unwrap();
    let (ok, out) = ruleop_stdout(&[
        "render".as_ref(),
        "--rule".as_ref(),
        rule.as_os_str(),
        "--resource".as_ref(),
        bad.as_os_str(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("# plan failed (InvalidMode): data.mode turbo is not fast or safe"),
        "{out}"
    );

    // A rule without CEL checks has no policy.
    let plain = cli::root().join("tests/rules/check/gallery.yaml");
    let (ok, _) = ruleop_stdout(&["policy".as_ref(), "--rule".as_ref(), plain.as_os_str()]);
    assert!(!ok);
}
