//! Planner tests of two renderings of one object, on rules whose every name comes from the
//! parent's spec (tests/rules/duplicate/): any two children can be made to collide.

use serde_json::{Value as Json, json};

use crate::tests::{run, stored};
use crate::{Action, EventType, FinalizerChange, Plan, reason};
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_schema::meta::{self, ObjectKey};

const GAZETTE: &str = include_str!("../../../tests/rules/duplicate/gazette.yaml");
const DISTRICT: &str = include_str!("../../../tests/rules/duplicate/district.yaml");

fn rule(source: &str) -> CompiledRule {
    parse_rule("test.yaml".as_ref(), source).unwrap()
}

/// `test.yaml:<line>:` of the template of `child` (its first line).
fn template_at(source: &str, child: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- name: {child}"))
        .unwrap();
    let offset = lines[start..]
        .iter()
        .position(|l| l.trim_start().starts_with("template: |"))
        .unwrap();
    format!("test.yaml:{}:", start + offset + 2)
}

/// A Gazette whose names are all distinct, with `spec` merged over them.
fn gazette(spec: Json) -> Json {
    let mut parent = json!({"apiVersion": "press.ruleop.test/v1", "kind": "Gazette",
        "metadata": {"name": "daily", "namespace": "news", "uid": "u-daily", "generation": 1},
        "spec": {"front": "front", "back": "back", "headline": "rain",
            "pages": [{"name": "a", "title": "A"}, {"name": "b", "title": "B"}],
            "sheets": 1, "sheetPrefix": "sheet", "scaler": "scaler", "oldScaler": "old-scaler",
            "farewell": "farewell"}});
    for (k, v) in spec.as_object().unwrap() {
        parent["spec"][k] = v.clone();
    }
    parent
}

fn keys(plan: &Plan) -> Vec<String> {
    plan.apply
        .iter()
        .map(|d| ObjectKey::of(&d.object).to_string())
        .collect()
}

fn ready(plan: &Plan) -> (String, String) {
    let status = plan.status.as_ref().unwrap_or(&plan.owned_status);
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    (
        ready["reason"].as_str().unwrap().to_string(),
        ready["message"].as_str().unwrap().to_string(),
    )
}

/// Asserts `p` failed with `DuplicateName` on `object`, naming each of `who` (text and the
/// line of its child's template), with nothing applied or deleted and a Warning.
fn assert_duplicate(p: &Plan, source: &str, object: &str, who: &[(&str, &str)]) {
    let failure = p.failure.as_ref().expect("the plan fails");
    assert_eq!(failure.reason, reason::DUPLICATE_NAME, "{failure:?}");
    assert!(failure.permanent);
    assert!(failure.message.contains(object), "{}", failure.message);
    for (child, text) in who {
        let at = template_at(source, child);
        assert!(
            failure.message.contains(text) && failure.message.contains(&at),
            "{text} and {at} in {}",
            failure.message
        );
    }
    assert!(p.apply.is_empty() && p.delete.is_empty(), "{p:?}");
    assert_eq!(
        ready(p),
        (reason::DUPLICATE_NAME.into(), failure.message.clone())
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.type_ == EventType::Warning && e.reason == reason::DUPLICATE_NAME),
        "{:?}",
        p.events
    );
}

#[test]
fn distinct_names_plan_every_child_and_one_name_in_two_kinds_is_two_objects() {
    let rule = rule(GAZETTE);
    let p = run(&rule, &gazette(json!({})), &[]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(
        keys(&p),
        [
            "ConfigMap/news/front",
            "ConfigMap/news/back",
            "ConfigMap/news/page-a",
            "ConfigMap/news/page-b",
            "ConfigMap/news/sheet-0",
            "Service/news/front",
            "HorizontalPodAutoscaler/news/scaler",
            "HorizontalPodAutoscaler/news/old-scaler",
        ]
    );
}

#[test]
fn two_plain_children_of_one_name_fail_the_plan_naming_both() {
    let rule = rule(GAZETTE);
    let p = run(&rule, &gazette(json!({"back": "front"})), &[]);
    assert_duplicate(
        &p,
        GAZETTE,
        "ConfigMap/news/front",
        &[("front", "child \"front\""), ("back", "child \"back\"")],
    );
}

#[test]
fn a_collection_item_and_a_plain_child_of_one_name_fail_the_plan() {
    let rule = rule(GAZETTE);
    let p = run(&rule, &gazette(json!({"back": "page-b"})), &[]);
    assert_duplicate(
        &p,
        GAZETTE,
        "ConfigMap/news/page-b",
        &[
            ("back", "child \"back\""),
            ("pages", "child \"pages\" item \"b\""),
        ],
    );
}

#[test]
fn two_items_of_one_collection_naming_one_object_fail_the_plan() {
    let rule = rule(GAZETTE);
    let pages = json!([{"name": "a", "title": "Sport"}, {"name": "b", "title": "sport"}]);
    let p = run(&rule, &gazette(json!({"pages": pages})), &[]);
    let failure = p.failure.as_ref().expect("the plan fails");
    assert_eq!(failure.reason, reason::DUPLICATE_NAME, "{failure:?}");
    assert!(
        failure
            .message
            .contains("items \"a\" and \"b\" render the same name \"news/page-sport\""),
        "{}",
        failure.message
    );
    assert!(p.apply.is_empty() && p.delete.is_empty());
}

#[test]
fn a_replica_and_a_plain_child_of_one_name_fail_the_plan() {
    let rule = rule(GAZETTE);
    let p = run(&rule, &gazette(json!({"front": "sheet-0"})), &[]);
    assert_duplicate(
        &p,
        GAZETTE,
        "ConfigMap/news/sheet-0",
        &[
            ("front", "child \"front\""),
            ("sheets", "child \"sheets\" replica \"sheet-0\""),
        ],
    );
}

#[test]
fn one_kind_through_two_versions_of_its_group_is_one_object() {
    let rule = rule(GAZETTE);
    let p = run(&rule, &gazette(json!({"oldScaler": "scaler"})), &[]);
    assert_duplicate(
        &p,
        GAZETTE,
        "HorizontalPodAutoscaler/news/scaler",
        &[
            ("scaler", "child \"scaler\""),
            ("old-scaler", "child \"old-scaler\""),
        ],
    );
}

#[test]
fn a_duplicate_in_a_running_parent_prunes_and_rewrites_nothing() {
    let rule = rule(GAZETTE);
    let first = run(&rule, &gazette(json!({})), &[]);
    let observed = stored(&first);
    // `back` now names `front`'s object: its own object is no longer rendered, which a
    // working plan would prune, and `front`'s would get a second rendering.
    let p = run(&rule, &gazette(json!({"back": "front"})), &observed);
    assert_duplicate(
        &p,
        GAZETTE,
        "ConfigMap/news/front",
        &[("front", "child \"front\""), ("back", "child \"back\"")],
    );
    // Put right, the parent plans as before: nothing to write.
    let again = run(&rule, &gazette(json!({})), &observed);
    assert!(again.failure.is_none(), "{:?}", again.failure);
    assert!(again.apply.iter().all(|d| d.action == Action::UpToDate));
    assert!(again.delete.is_empty(), "{:?}", again.delete);
}

/// A District's boards share one name in different namespaces; the notice collides only
/// when it names a board in that board's namespace.
fn district(notice: &str) -> Json {
    json!({"apiVersion": "press.ruleop.test/v1", "kind": "District",
        "metadata": {"name": "harbour", "uid": "u-harbour", "generation": 1},
        "spec": {"zones": ["north", "south"], "notice": notice, "text": "closed"}})
}

#[test]
fn one_name_in_two_namespaces_is_two_objects_and_in_one_namespace_fails() {
    let rule = rule(DISTRICT);
    let p = run(&rule, &district("notice"), &[]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(
        keys(&p),
        [
            "Namespace/north",
            "Namespace/south",
            "ConfigMap/north/board",
            "ConfigMap/south/board",
            "ConfigMap/north/notice",
        ]
    );
    let p = run(&rule, &district("board"), &[]);
    assert_duplicate(
        &p,
        DISTRICT,
        "ConfigMap/north/board",
        &[
            ("boards", "child \"boards\" item \"north\""),
            ("notice", "child \"notice\""),
        ],
    );
}

#[test]
fn a_cleanup_step_that_names_a_child_is_skipped_not_applied_over_it() {
    let rule = rule(GAZETTE);
    let running = gazette(json!({}));
    let observed = stored(&run(&rule, &running, &[]));
    let deleting = |farewell: &str| {
        let mut parent = gazette(json!({"farewell": farewell}));
        parent["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        parent["metadata"]["finalizers"] = json!([meta::FINALIZER]);
        parent
    };
    let p = run(&rule, &deleting("farewell"), &observed);
    assert_eq!(keys(&p), ["ConfigMap/news/farewell"]);

    let p = run(&rule, &deleting("back"), &observed);
    assert!(p.apply.is_empty(), "{:?}", keys(&p));
    let warning = p
        .events
        .iter()
        .find(|e| e.reason == reason::DUPLICATE_NAME)
        .expect("a Warning about the step");
    assert_eq!(warning.type_, EventType::Warning);
    assert!(
        warning.message.contains("cleanup step farewell skipped")
            && warning.message.contains("ConfigMap/news/back")
            && warning.message.contains("\"back\""),
        "{}",
        warning.message
    );
    // Skipped like any broken step: deletion goes on.
    assert_eq!(p.finalizer, FinalizerChange::Remove);
}
