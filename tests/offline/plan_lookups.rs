//! Lookups over a list (`objectNames`) on the planner and in `ruleop check`, with the
//! Reloader-style example (`examples/reloader`). Pure: no API server.

use crate::cli;

use jiff::Timestamp;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Input, Plan, plan};
use serde_json::{Value as Json, json};

const HASH: &str = "reloader.ruleop.dev/configs-hash";

fn reloader() -> CompiledRule {
    let path = cli::root().join("examples/reloader/rule.yaml");
    parse_rule(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn app(list: &str) -> Json {
    json!({"apiVersion": "examples.ruleop.dev/v1", "kind": "ReloadedApp",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-web", "generation": 1,
            "annotations": {"configmap.reloader.stakater.com/reload": list}},
        "spec": {"replicas": 1}})
}

fn config(name: &str, ns: &str, data: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "uid": format!("u-{ns}-{name}"), "resourceVersion": "1"},
        "data": data})
}

fn run(rule: &CompiledRule, parent: &Json, observed: &[Json]) -> Plan {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    plan(
        rule,
        Input {
            parent,
            observed,
            now,
            schemas: None,
        },
    )
}

/// The pod template's hash annotation of the planned Deployment.
fn hash(p: &Plan) -> String {
    assert!(p.failure.is_none(), "{:?}", p.failure);
    p.apply[0].object["spec"]["template"]["metadata"]["annotations"][HASH]
        .as_str()
        .unwrap()
        .to_string()
}

fn three() -> Vec<Json> {
    vec![
        config("a", "ns", json!({"x": "1"})),
        config("b", "ns", json!({"y": "2"})),
        config("c", "ns", json!({"z": "3"})),
    ]
}

#[test]
fn only_a_content_edit_of_a_listed_configmap_changes_the_hash() {
    let rule = reloader();
    let parent = app("a,b,c");
    let base = hash(&run(&rule, &parent, &three()));
    assert_eq!(base.len(), 64);

    // Metadata (a label, a new resourceVersion) is not content.
    let mut relabelled = three();
    relabelled[1]["metadata"]["labels"] = json!({"team": "x"});
    relabelled[1]["metadata"]["resourceVersion"] = json!("2");
    assert_eq!(hash(&run(&rule, &parent, &relabelled)), base);

    // Each listed object's data counts, and its binaryData.
    for i in 0..3 {
        let mut edited = three();
        edited[i]["data"]["new"] = json!("v");
        assert_ne!(
            hash(&run(&rule, &parent, &edited)),
            base,
            "edit of item {i}"
        );
    }
    let mut binary = three();
    binary[2]["binaryData"] = json!({"logo": "aGk="});
    assert_ne!(hash(&run(&rule, &parent, &binary)), base);

    // Neither a ConfigMap of the same name elsewhere nor an unlisted one is read.
    let mut others = three();
    others.push(config("b", "other", json!({"y": "changed"})));
    others.push(config("d", "ns", json!({"w": "4"})));
    assert_eq!(hash(&run(&rule, &parent, &others)), base);

    // Spaces, empty names and repeats name the same list.
    assert_eq!(hash(&run(&rule, &app(" a,, b ,a,c,"), &three())), base);
}

#[test]
fn a_listed_configmap_only_elsewhere_is_missing() {
    let rule = reloader();
    let mut observed = three();
    observed[0]["metadata"]["namespace"] = json!("other");
    let p = run(&rule, &app("a,b,c"), &observed);
    let f = p.failure.unwrap();
    assert_eq!(f.reason, "LookupMissing");
    assert_eq!(f.message, "not found: ConfigMap ns/a (lookup configs)");
    assert!(p.apply.is_empty() && p.delete.is_empty());
}

#[test]
fn check_locates_a_lookup_with_both_a_name_and_a_list() {
    let source = "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\nspec:\n  parent: {apiVersion: x.dev/v1, kind: App}\n  lookups:\n    - name: cms\n      apiVersion: v1\n      kind: ConfigMap\n      objectName: a\n      objectNames: \"['a']\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rule.yaml"), source).unwrap();
    let (ok, lines) = cli::ruleop_lines(&[std::path::Path::new("check"), dir.path()]);
    assert!(!ok, "{lines:#?}");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("error ") && lines[0].contains("rule.yaml:7:"),
        "{lines:#?}"
    );
    assert!(
        lines[0].contains("exactly one of objectName (one object) and objectNames (a list)"),
        "{lines:#?}"
    );
}
