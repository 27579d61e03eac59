//! The planner on lifecycle edge cases (ordinal replicas while others terminate, `tojson`
//! in manifests), with rules shaped unlike the reference ones. Pure: no API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad fixtures

use jiff::Timestamp;
use ruleop::meta;
use ruleop::plan::{Action, Input, Plan, plan};
use ruleop::rule::{CompiledRule, parse_rule};
use serde_json::{Value as Json, json};

fn rule_from(source: &str) -> CompiledRule {
    parse_rule("test.yaml".as_ref(), source).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn run(rule: &CompiledRule, parent: &Json, observed: &[Json]) -> Plan {
    plan(
        rule,
        Input {
            parent,
            observed,
            now: now(),
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
