//! The planner's decision for an existing child, on objects as the API server stores them:
//! normalised values are up to date, a `Recreate` child is recreated only when its rendering
//! changed, and the schemas in `Input` decide how lists compare. No API server.

use std::sync::Arc;

use jiff::Timestamp;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Action, Desired, Input, plan};
use ruleop_schema::meta;
use ruleop_schema::openapi::{Document, Schemas};
use serde_json::{Value as Json, json};

/// A rule shaped unlike the reference ones: a `Recreate` Job whose template holds values the
/// API server normalises, and a child of a custom kind whose list is keyed by `bay`.
const RULE: &str = r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: batch}
spec:
  parent: {apiVersion: t.example/v1, kind: Batch}
  allow:
    - {apiVersion: batch/v1, kind: Job}
    - {apiVersion: t.example/v1, kind: Rack}
  children:
    - name: run
      apiVersion: batch/v1
      kind: Job
      updateStrategy: Recreate
      template: |
        metadata: {name: {{ parent.metadata.name }}}
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
                - name: main
                  image: busybox
                  args: [{{ parent.spec.word }}]
                  env: [{name: EMPTY, value: ""}, {name: NONE, value: null}]
                  resources: {limits: {memory: 1024Mi, cpu: 1000m}}
    - name: rack
      apiVersion: t.example/v1
      kind: Rack
      template: |
        metadata: {name: {{ parent.metadata.name }}}
        spec:
          bays: [{bay: 1, label: one}, {bay: 2, label: two}]
"#;

fn rule() -> CompiledRule {
    parse_rule("batch.yaml".as_ref(), RULE).unwrap()
}

fn parent(word: &str) -> Json {
    json!({"apiVersion": "t.example/v1", "kind": "Batch",
        "metadata": {"name": "b", "namespace": "ns", "uid": "uid-b", "generation": 1},
        "spec": {"word": word}})
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn planned(parent: &Json, observed: &[Json], schemas: Option<&Schemas>) -> Vec<Desired> {
    plan(
        &rule(),
        Input {
            parent,
            observed,
            now: now(),
            schemas,
        },
    )
    .apply
}

fn action(desired: &[Desired], kind: &str) -> Action {
    desired
        .iter()
        .find(|d| meta::kind(&d.object) == kind)
        .unwrap()
        .action
}

/// What the API server stores for a created child: defaults, the normalised quantities,
/// dropped empty values, and list entries added by others.
fn as_stored(d: &Desired) -> Json {
    let mut o = d.object.clone();
    o["metadata"]["uid"] = json!(format!("uid-{}", meta::kind(&o)));
    o["metadata"]["resourceVersion"] = json!("7");
    if meta::kind(&o) == "Job" {
        let c = &mut o["spec"]["template"]["spec"]["containers"][0];
        c["resources"]["limits"] = json!({"memory": "1Gi", "cpu": "1"});
        c["resources"]["requests"] = json!({"memory": "1Gi", "cpu": "1"});
        c["env"] = json!([{"name": "EMPTY"}, {"name": "NONE", "value": ""}]);
        c["imagePullPolicy"] = json!("Always");
        o["spec"]["template"]["metadata"] = json!({"labels": {"job-name": "b"}});
        o["spec"]["backoffLimit"] = json!(6);
    } else {
        o["spec"]["bays"] = json!([{"bay": 2, "label": "two"}, {"bay": 9, "label": "theirs"},
            {"bay": 1, "label": "one"}]);
    }
    o
}

fn rack_schemas() -> Schemas {
    let doc = Arc::new(Document::parse(
        &json!({"components": {"schemas": {"t.Rack": {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": "t.example", "version": "v1", "kind": "Rack"}],
        "properties": {"spec": {"type": "object", "properties": {"bays": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["bay"],
            "items": {"type": "object", "properties": {"bay": {"type": "integer"}}}}}}}}}}}),
    ));
    let mut schemas = Schemas::default();
    schemas.insert(
        "t.example",
        "Rack",
        doc.kind("t.example", "v1", "Rack").unwrap(),
    );
    schemas
}

#[test]
fn a_recreate_child_holding_normalised_values_is_not_recreated() {
    let p = parent("hello");
    let first = planned(&p, &[], None);
    assert_eq!(action(&first, "Job"), Action::Create);
    let stored: Vec<Json> = first.iter().map(as_stored).collect();
    assert_eq!(action(&planned(&p, &stored, None), "Job"), Action::UpToDate);
}

#[test]
fn a_recreate_child_is_recreated_only_when_its_rendering_changes() {
    let p = parent("hello");
    let stored: Vec<Json> = planned(&p, &[], None).iter().map(as_stored).collect();
    assert_eq!(
        action(&planned(&parent("bye"), &stored, None), "Job"),
        Action::Recreate
    );
    // Drift of a field the rule renders is put back by an apply, not a recreation.
    let mut drifted = stored.clone();
    let job = drifted.iter_mut().find(|o| meta::kind(o) == "Job").unwrap();
    job["spec"]["template"]["spec"]["containers"][0]["image"] = json!("edited");
    let d = planned(&p, &drifted, None);
    assert_eq!(action(&d, "Job"), Action::Update);
}

#[test]
fn the_schemas_in_the_input_decide_how_lists_compare() {
    let p = parent("hello");
    let stored: Vec<Json> = planned(&p, &[], None).iter().map(as_stored).collect();
    // Keyed by `bay` per the schema: bay 9 belongs to someone else.
    let schemas = rack_schemas();
    assert_eq!(
        action(&planned(&p, &stored, Some(&schemas)), "Rack"),
        Action::UpToDate
    );
    // Without a schema the entries have no `name`: the list is atomic and differs.
    assert_eq!(action(&planned(&p, &stored, None), "Rack"), Action::Update);
}

#[test]
fn an_edited_key_comes_with_a_repair_patch() {
    let p = parent("hello");
    let mut stored: Vec<Json> = planned(&p, &[], None).iter().map(as_stored).collect();
    let rack = stored.iter_mut().find(|o| meta::kind(o) == "Rack").unwrap();
    rack["spec"]["bays"][2]["bay"] = json!(3);
    let schemas = rack_schemas();
    let d = planned(&p, &stored, Some(&schemas));
    let rack = d.iter().find(|d| meta::kind(&d.object) == "Rack").unwrap();
    assert_eq!(rack.action, Action::Update);
    let patch = rack.repair.as_ref().unwrap();
    assert_eq!(patch[1]["path"], "/spec/bays");
    assert_eq!(
        patch[1]["value"],
        json!([{"bay": 1, "label": "one"}, {"bay": 2, "label": "two"}])
    );
    // Nothing to repair where nothing changed.
    assert!(
        d.iter()
            .filter(|d| meta::kind(&d.object) == "Job")
            .all(|d| d.repair.is_none())
    );
}
