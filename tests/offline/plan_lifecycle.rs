//! The planner on lifecycle edge cases (ordinal replicas while others terminate, `tojson`
//! in manifests), with rules shaped unlike the reference ones. Pure: no API server.

use crate::cli;

use jiff::Timestamp;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Action, Input, Plan, plan};
use ruleop_schema::meta;
use serde_json::{Value as Json, json};

fn rule_from(source: &str) -> CompiledRule {
    parse_rule("test.yaml".as_ref(), source).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn run(rule: &CompiledRule, parent: &Json, observed: &[Json]) -> Plan {
    run_at(rule, parent, observed, now())
}

fn run_at(rule: &CompiledRule, parent: &Json, observed: &[Json], now: Timestamp) -> Plan {
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

/// Cluster-scoped `Ring`s own ordinal ConfigMaps `<name>-slot-<i>` in `spec.target`.
fn ring_rule(policy: &str) -> CompiledRule {
    rule_from(&format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: ring}}
spec:
  parent: {{apiVersion: example.test/v1, kind: Ring, scope: Cluster}}
  allow:
    - {{apiVersion: v1, kind: ConfigMap, crossNamespace: true}}
  children:
    - name: slot
      apiVersion: v1
      kind: ConfigMap
      replicas:
        count: parent.spec.slots
        naming: Ordinal
        prefix: parent.metadata.name ~ "-slot"
        policy: {policy}
      template: |
        metadata: {{namespace: "{{{{ parent.spec.target }}}}"}}
        data: {{index: "{{{{ index }}}}", of: "{{{{ parent.spec.slots }}}}"}}
"#
    ))
}

fn ring(slots: u64) -> Json {
    json!({"apiVersion": "example.test/v1", "kind": "Ring",
        "metadata": {"name": "r", "uid": "uid-r", "generation": 1},
        "spec": {"slots": slots, "target": "t"}})
}

/// The slots a ring of `n` gets, as created (uids `slot-<i>`).
fn slots(n: u64) -> Vec<Json> {
    let p = run(&ring_rule("AllAtOnce"), &ring(n), &[]);
    p.apply
        .iter()
        .map(|d| {
            let mut o = d.object.clone();
            let i = meta::annotation(&o, meta::REPLICA_ANNOTATION)
                .unwrap()
                .to_string();
            o["metadata"]["uid"] = json!(format!("slot-{i}"));
            o
        })
        .collect()
}

fn names(objects: impl IntoIterator<Item = Json>) -> Vec<String> {
    let mut n: Vec<String> = objects
        .into_iter()
        .map(|o| meta::name(&o).to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn ordinal_replicas_above_the_count_are_never_kept_while_a_lower_one_terminates() {
    for policy in ["OneAtATime", "Ordered", "AllAtOnce"] {
        let rule = ring_rule(policy);
        // Three slots, slot 0 deleted by hand (terminating), the ring shrinks to two.
        let mut observed = slots(3);
        assert_eq!(
            names(observed.clone()),
            ["r-slot-0", "r-slot-1", "r-slot-2"]
        );
        observed[0]["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let p = run(&rule, &ring(2), &observed);
        let applied = names(p.apply.iter().map(|d| d.object.clone()));
        assert_eq!(applied, ["r-slot-1"], "{policy}: only index 1 is kept");
        assert!(p.apply.iter().all(|d| d.action != Action::Create));
        let deleted: Vec<&str> = p.delete.iter().map(|d| d.key.name.as_str()).collect();
        match policy {
            // Paced: slot 2 waits for slot 0 to go, untouched (not re-rendered, not pruned).
            "AllAtOnce" => assert_eq!(deleted, ["r-slot-2"]),
            _ => assert!(deleted.is_empty(), "{policy}: {deleted:?}"),
        }
        // Growing to three meanwhile never reaches for index 3.
        let p = run(&rule, &ring(3), &observed);
        assert_eq!(
            names(p.apply.iter().map(|d| d.object.clone())),
            ["r-slot-1", "r-slot-2"],
            "{policy}"
        );
        assert!(p.delete.is_empty(), "{policy}: {:?}", p.delete);
        // Once slot 0 is gone it is created again under its own index.
        let p = run(&rule, &ring(3), &observed[1..]);
        let created: Vec<String> = p
            .apply
            .iter()
            .filter(|d| d.action == Action::Create)
            .map(|d| meta::name(&d.object).to_string())
            .collect();
        assert_eq!(created, ["r-slot-0"], "{policy}");
    }
}

/// Applies `p` to `observed` as the API server would (children created or updated, deletions
/// done) and returns the parent with the planned status.
fn act(p: &Plan, parent: &Json, observed: &mut Vec<Json>) -> Json {
    for d in &p.apply {
        if d.action == Action::UpToDate {
            continue;
        }
        observed.retain(|o| !meta::ObjectKey::of(o).same_object(&meta::ObjectKey::of(&d.object)));
        let mut o = d.object.clone();
        o["metadata"]["uid"] = json!(format!("uid-{}", meta::name(&d.object)));
        observed.push(o);
    }
    observed.retain(|o| !p.delete.iter().any(|d| d.uid == meta::uid(o)));
    let mut parent = parent.clone();
    if let Some(status) = &p.status {
        parent["status"] = status.clone();
    }
    parent
}

#[test]
fn replanning_a_converged_parent_later_changes_nothing_and_keeps_transition_times() {
    let path = format!(
        "{}/tests/rules/lifecycle/roster.yaml",
        cli::root().display()
    );
    let rule = parse_rule(path.as_ref(), &std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut parent = json!({"apiVersion": "lifecycle.test.ruleop.dev/v1", "kind": "Roster",
        "metadata": {"name": "crew", "namespace": "ns", "uid": "uid-crew", "generation": 1,
            "finalizers": ["ruleop.dev/cleanup"]},
        "spec": {"seats": 2, "motto": "it's \"ours\": {yes}"}});
    let mut observed: Vec<Json> = ["ann", "bob"]
        .iter()
        .map(|n| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": n, "namespace": "ns", "uid": n, "labels": {"roster": "crew"}}})
        })
        .collect();
    for _ in 0..3 {
        let p = run(&rule, &parent, &observed);
        parent = act(&p, &parent, &mut observed);
    }
    let converged = parent["status"].clone();
    assert_eq!(
        converged["conditions"][0]["status"], "True",
        "Ready once every child exists: {converged}"
    );
    // Any time later (a restart), with everything observed: nothing to write, no event.
    let later: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let p = run_at(&rule, &parent, &observed, later);
    assert!(p.status.is_none(), "{:?}", p.status);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(p.delete.is_empty());
    assert!(p.apply.iter().all(|d| d.action == Action::UpToDate));
    // A status change moves only the condition that changed.
    observed.retain(|o| meta::name(o) != "bob");
    let p = run_at(&rule, &parent, &observed, later);
    let status = p.status.unwrap();
    let condition = |s: &Json, t: &str| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(condition(&status, "Staffed")["status"], "False");
    assert_eq!(
        condition(&status, "Staffed")["lastTransitionTime"],
        "2026-06-01T00:00:00Z"
    );
    assert_eq!(
        condition(&status, "Ready"),
        condition(&converged, "Ready"),
        "Ready held: its transition time stays"
    );
}

/// A `Picket` (tests/rules/lifecycle/picket.yaml) with `spec`, its status as stored.
fn picket(spec: Json, status: Json) -> Json {
    json!({"apiVersion": "lifecycle.test.ruleop.dev/v1", "kind": "Picket",
        "metadata": {"name": "bad", "namespace": "ns", "uid": "u-bad", "generation": 1},
        "spec": spec, "status": status})
}

#[test]
fn a_failure_is_announced_once_when_it_first_shows_on_the_parent() {
    let rule = rule_from(include_str!("../rules/lifecycle/picket.yaml"));
    let first = run(&rule, &picket(json!({}), json!({})), &[]);
    assert_eq!(first.failure.as_ref().unwrap().reason, "SizeRequired");
    let warnings: Vec<&str> = first.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(warnings, ["SizeRequired"]);
    // Its status write reconciles the parent again (and so does a restart): the same
    // failure, already shown on the parent, is not announced again, and nothing is written.
    let shown = first.status.clone().unwrap();
    let later = "2026-01-01T00:10:00Z".parse().unwrap();
    let again = run_at(&rule, &picket(json!({}), shown.clone()), &[], later);
    assert_eq!(again.failure.as_ref().unwrap().reason, "SizeRequired");
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert!(again.status.is_none(), "{:?}", again.status);
    // Another failure (another message) is announced.
    let mut other = shown;
    other["conditions"][0]["message"] = json!("an older message");
    let changed = run_at(&rule, &picket(json!({}), other), &[], later);
    assert_eq!(changed.events.len(), 1, "{:?}", changed.events);
}
