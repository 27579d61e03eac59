//! Golden tests: `ruleop render` of every reference sample, and scaled or edited variants,
//! compared with the checked-in output under `tests/golden/`. Regenerate after a deliberate
//! change with `UPDATE_GOLDEN=1 cargo test --test offline golden::`, then review the diff like code.

use crate::cli;

use std::path::PathBuf;

use ruleop::cli::{Format, read_objects, render};
use serde_json::{Value as Json, json};

/// (operator, case name, spec fields to change in the sample)
fn cases() -> Vec<(&'static str, &'static str, Json)> {
    vec![
        ("whalesay", "sample", json!({})),
        (
            "whalesay",
            "new-message",
            json!({"message": "Moo: a new\nline"}),
        ),
        ("podset", "sample", json!({})),
        ("podset", "zero", json!({"replicas": 0})),
        ("etcdcluster", "sample", json!({})),
        ("etcdcluster", "five-members", json!({"replicas": 5})),
        ("etcdcluster", "no-backup", json!({"backupSchedule": null})),
        ("etcdcluster", "bad-version", json!({"version": "latest"})),
        ("myapp", "sample", json!({})),
        (
            "myapp",
            "scaled-new-image",
            json!({"replicas": 4, "image": "nginxinc/nginx-unprivileged:1.28"}),
        ),
        ("memcached", "sample", json!({})),
        ("memcached", "size-five", json!({"size": 5})),
        ("memcached", "size-eleven", json!({"size": 11})),
        ("nginxserver", "sample", json!({})),
        ("nginxserver", "untagged-image", json!({"image": "nginx"})),
    ]
}

fn root() -> PathBuf {
    cli::root()
}

#[test]
fn renders_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for (op, case, patch) in cases() {
        let mut parent = read_objects(&root().join(format!("samples/{op}.yaml")))
            .unwrap()
            .remove(0);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                parent["spec"].as_object_mut().unwrap().remove(k);
            } else {
                parent["spec"][k] = v.clone();
            }
        }
        let resource = dir.path().join(format!("{op}-{case}.yaml"));
        std::fs::write(&resource, ruleop_lang::yaml::to_string(&parent)).unwrap();
        let mut out = Vec::new();
        render(
            &root().join(format!("rules/{op}.yaml")),
            &resource,
            &[],
            Some("2026-01-01T00:00:00Z".parse().unwrap()),
            Format::Yaml,
            &mut out,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        let golden = root().join(format!("tests/golden/{op}/{case}.yaml"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &out).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != out {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}\n+++ rendered\n{out}",
                golden.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 to accept):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// `render --crd` applies the parent's CRD defaults: the sample names no settings ConfigMap
/// and no image for its first worker, and renders as the cluster would (against the golden
/// file); without the CRD the same sample cannot find its settings.
#[test]
fn render_with_the_crd_applies_its_defaults() {
    let dir = root().join("tests/rules/language");
    let render_it = |crds: &[PathBuf]| {
        let mut out = Vec::new();
        ruleop::cli::render_with_crds(
            &dir.join("crew.yaml"),
            &dir.join("sample-crew.yaml"),
            &[dir.join("observed-settings.yaml")],
            crds,
            Some("2026-01-01T00:00:00Z".parse().unwrap()),
            Format::Yaml,
            &mut out,
        )
        .map(|plan| (plan, String::from_utf8(out).unwrap()))
    };
    let (plan, out) = render_it(&[dir.join("crds/crew.yaml")]).unwrap();
    assert!(plan.failure.is_none(), "{out}");
    let golden = root().join("tests/golden/language/crew-defaults.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &out).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&golden).unwrap_or_default(), out);
    assert!(out.contains("image: busybox:1.36"), "{out}");
    let (plan, _) = render_it(&[]).unwrap();
    assert_eq!(plan.failure.unwrap().reason, "RenderFailed");
}

/// `ruleop render` of a parent the rule refuses prints the plan (its status says why) and
/// exits non-zero; a plan that succeeds exits 0.
#[test]
fn render_exits_non_zero_when_the_plan_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut parent = read_objects(&root().join("samples/nginxserver.yaml"))
        .unwrap()
        .remove(0);
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, ruleop_lang::yaml::to_string(&parent)).unwrap();
    parent["spec"]["image"] = json!("nginx");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, ruleop_lang::yaml::to_string(&parent)).unwrap();
    let rule = root().join("rules/nginxserver.yaml");
    let render_it = |resource: &PathBuf| {
        cli::ruleop_stdout(&[
            "render".as_ref(),
            "--rule".as_ref(),
            rule.as_os_str(),
            "--resource".as_ref(),
            resource.as_os_str(),
        ])
    };
    let (ok, out) = render_it(&good);
    assert!(ok, "{out}");
    let (ok, out) = render_it(&bad);
    assert!(!ok, "a failed plan exits non-zero:\n{out}");
    assert!(
        out.contains("ImageTagRequired"),
        "the plan is still printed:\n{out}"
    );
}
