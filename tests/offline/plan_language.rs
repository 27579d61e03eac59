//! The language features on the planner, with a test rule shaped unlike the reference ones
//! (`tests/rules/language/crew.yaml`): collections, lookups, shared definitions, Helm filters
//! and failure status fields. Pure: no API server.

use crate::cli;

use jiff::Timestamp;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Action, Input, Plan, plan};
use ruleop_schema::meta;
use serde_json::{Value as Json, json};

fn crew_rule() -> CompiledRule {
    let path = format!("{}/tests/rules/language/crew.yaml", cli::root().display());
    parse_rule(path.as_ref(), &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn crew(spec: Json) -> Json {
    json!({"apiVersion": "language.test.ruleop.dev/v1", "kind": "Crew",
        "metadata": {"name": "c", "namespace": "ns", "uid": "uid-c", "generation": 1},
        "spec": spec})
}

fn settings(token: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "crew-settings", "namespace": "ns", "uid": "uid-settings"},
        "data": {"token": token, "level": "3"}})
}

fn theme(name: &str, color: &str, labels: Json) -> Json {
    json!({"apiVersion": "language.test.ruleop.dev/v1", "kind": "Theme",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"color": color}})
}

fn run(rule: &CompiledRule, parent: &Json, observed: &[Json]) -> Plan {
    plan(
        rule,
        Input {
            parent,
            observed,
            now: now(),
            schemas: None,
        },
    )
}

/// Applies a plan as the API server would: creates get a fresh uid, updates keep theirs.
fn act(p: &Plan, observed: &mut Vec<Json>, next_uid: &mut u64) {
    for d in &p.apply {
        if matches!(d.action, Action::UpToDate | Action::Conflict) {
            continue;
        }
        let key = meta::ObjectKey::of(&d.object);
        let mut object = d.object.clone();
        match observed
            .iter()
            .position(|o| meta::ObjectKey::of(o).same_object(&key))
        {
            Some(i) => {
                object["metadata"]["uid"] = observed[i]["metadata"]["uid"].clone();
                observed[i] = object;
            }
            None => {
                *next_uid += 1;
                object["metadata"]["uid"] = json!(format!("child-{next_uid}"));
                observed.push(object);
            }
        }
    }
    for d in &p.delete {
        observed.retain(|o| meta::uid(o) != d.uid);
    }
}

fn workers(observed: &[Json]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = observed
        .iter()
        .filter(|o| meta::label(o, meta::CHILD_LABEL) == Some("worker"))
        .map(|o| (meta::name(o).to_string(), meta::uid(o).to_string()))
        .collect();
    out.sort();
    out
}

fn writes(p: &Plan) -> usize {
    p.apply
        .iter()
        .filter(|d| d.action != Action::UpToDate)
        .count()
        + p.delete.len()
}

fn converge(rule: &CompiledRule, parent: &Json, observed: &mut Vec<Json>, uid: &mut u64) {
    for _ in 0..5 {
        let p = run(rule, parent, observed);
        assert!(p.failure.is_none(), "{:?}", p.failure);
        if writes(&p) == 0 {
            return;
        }
        act(&p, observed, uid);
    }
    panic!("did not converge");
}

#[test]
fn removing_a_middle_item_deletes_exactly_its_child_and_reordering_writes_nothing() {
    let rule = crew_rule();
    let spec = |names: &[&str]| {
        json!({"settingsRef": "crew-settings", "workers": names.iter()
            .map(|n| json!({"name": n, "image": format!("img-{n}")})).collect::<Vec<_>>()})
    };
    let mut observed = vec![settings("s3cret")];
    let mut uid = 0;
    converge(
        &rule,
        &crew(spec(&["a", "b", "c"])),
        &mut observed,
        &mut uid,
    );
    let before = workers(&observed);
    assert_eq!(
        before.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        ["c-a", "c-b", "c-c"]
    );

    // Reordered: the same children, nothing written.
    let p = run(&rule, &crew(spec(&["c", "a", "b"])), &observed);
    assert_eq!(writes(&p), 0, "{:#?}", p.apply);

    // The middle item goes: exactly its child is deleted, the others keep their uid.
    let p = run(&rule, &crew(spec(&["a", "c"])), &observed);
    assert_eq!(
        p.delete
            .iter()
            .map(|d| d.key.name.as_str())
            .collect::<Vec<_>>(),
        ["c-b"]
    );
    assert_eq!(writes(&p), 1, "{:#?}", p.apply);
    act(&p, &mut observed, &mut uid);
    let after = workers(&observed);
    assert_eq!(after, [before[0].clone(), before[2].clone()]);
    // `children.worker` is the list of observed items.
    let p = run(&rule, &crew(spec(&["a", "c"])), &observed);
    let status = p.status.unwrap();
    assert_eq!(status["workers"], json!(["img-a", "img-c"]));
    assert_eq!(status["tier"], json!("medium"));
}

#[test]
fn items_see_item_and_key_in_when_template_and_ready() {
    let rule = crew_rule();
    let parent = crew(json!({"settingsRef": "crew-settings", "workers": [
        {"name": "on", "image": "one"}, {"name": "off", "image": "two", "enabled": false}]}));
    let mut observed = vec![settings("t")];
    let mut uid = 0;
    converge(&rule, &parent, &mut observed, &mut uid);
    assert_eq!(
        workers(&observed).len(),
        1,
        "the disabled item has no child"
    );
    let child = observed.iter().find(|o| meta::name(o) == "c-on").unwrap();
    assert_eq!(child["data"]["image"], "one");
    assert_eq!(
        meta::annotation(child, meta::ITEM_ANNOTATION),
        Some("on"),
        "{child}"
    );
    assert_eq!(child["metadata"]["labels"]["role"], "worker");
    let p = run(&rule, &parent, &observed);
    assert_eq!(p.status.unwrap()["conditions"][0]["status"], "True");

    // A new image: `ready` (child.data.image == item.image) is false on the old child.
    let changed = crew(json!({"settingsRef": "crew-settings", "workers": [
        {"name": "on", "image": "three"}]}));
    let p = run(&rule, &changed, &observed);
    let ready = &p.status.unwrap()["conditions"][0];
    assert_eq!(ready["status"], "False", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("c-on not ready"),
        "{ready}"
    );
}

#[test]
fn duplicate_keys_and_non_lists_fail_without_changing_anything() {
    let rule = crew_rule();
    let mut observed = vec![settings("t")];
    let mut uid = 0;
    let good =
        crew(json!({"workers": [{"name": "a", "image": "x"}], "settingsRef": "crew-settings"}));
    converge(&rule, &good, &mut observed, &mut uid);
    for (workers, expected) in [
        (
            json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
            "same key \"a\"",
        ),
        (json!([{"image": "x"}]), "has no key"),
        (json!({"a": 1}), "must be a list"),
    ] {
        let p = run(
            &rule,
            &crew(json!({"workers": workers, "settingsRef": "crew-settings"})),
            &observed,
        );
        let f = p.failure.unwrap_or_else(|| panic!("{workers}: no failure"));
        assert_eq!(f.reason, "RenderFailed");
        assert!(f.message.contains(expected), "{}", f.message);
        assert!(f.message.contains("crew.yaml:"), "located: {}", f.message);
        assert!(p.apply.is_empty() && p.delete.is_empty());
        let status = p.status.unwrap();
        assert_eq!(status["phase"], "Error", "onFailure fields: {status}");
        assert_eq!(status["error"], "RenderFailed");
    }
}

#[test]
fn a_missing_lookup_stops_the_plan_with_a_condition_and_failure_fields() {
    let rule = crew_rule();
    let parent =
        crew(json!({"settingsRef": "crew-settings", "workers": [{"name": "a", "image": "x"}]}));
    let p = run(&rule, &parent, &[]);
    let f = p.failure.clone().unwrap();
    assert_eq!(f.reason, "LookupMissing");
    assert!(
        f.message
            .contains("ConfigMap ns/crew-settings (lookup settings)"),
        "{}",
        f.message
    );
    assert!(p.apply.is_empty() && p.delete.is_empty());
    let status = p.status.unwrap();
    assert_eq!(status["phase"], "Error");
    assert_eq!(status["error"], "LookupMissing");
    assert_eq!(status["conditions"][0]["reason"], "LookupMissing");

    // Once it exists, the plan goes on and the failure fields give way to the normal ones.
    let mut observed = vec![settings("t")];
    let mut uid = 0;
    converge(&rule, &parent, &mut observed, &mut uid);
    let mut with_status = parent.clone();
    let p = run(&rule, &parent, &observed);
    with_status["status"] = p.status.unwrap();
    assert_eq!(with_status["status"]["phase"], "Running");
    assert!(with_status["status"].get("error").is_none());
    // The same ConfigMap in another namespace is not it.
    let mut elsewhere = settings("t");
    elsewhere["metadata"]["namespace"] = json!("other");
    let p = run(&rule, &parent, &[elsewhere]);
    assert_eq!(p.failure.unwrap().reason, "LookupMissing");
}

#[test]
fn a_changed_lookup_changes_the_children_that_read_it() {
    let rule = crew_rule();
    let parent =
        crew(json!({"settingsRef": "crew-settings", "workers": [{"name": "a", "image": "x"}]}));
    let mut observed = vec![settings("one")];
    let mut uid = 0;
    converge(&rule, &parent, &mut observed, &mut uid);
    let token = |o: &[Json]| {
        o.iter().find(|o| meta::name(o) == "c-token").unwrap()["data"]["token"].clone()
    };
    assert_eq!(token(&observed), json!("b25l"));
    let checksum = |o: &[Json]| {
        o.iter().find(|o| meta::name(o) == "c-a").unwrap()["metadata"]["annotations"]
            ["checksum/settings"]
            .clone()
    };
    let first = checksum(&observed);
    observed[0]["data"]["level"] = json!("4");
    let p = run(&rule, &parent, &observed);
    assert_eq!(
        p.apply
            .iter()
            .filter(|d| d.action == Action::Update)
            .map(|d| meta::name(&d.object))
            .collect::<Vec<_>>(),
        ["c-a"],
        "the checksum rolls the worker"
    );
    act(&p, &mut observed, &mut uid);
    assert_ne!(checksum(&observed), first);
}

#[test]
fn cluster_scoped_kinds_are_looked_up_and_selected_for_a_namespaced_parent() {
    let rule = crew_rule();
    let parent = crew(json!({"settingsRef": "crew-settings", "theme": "dark",
        "workers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}));
    let observed = vec![
        settings("t"),
        theme("dark", "black", json!({})),
        theme("p1", "red", json!({"crew": "c"})),
        theme("p2", "red", json!({"crew": "other"})),
    ];
    let p = run(&rule, &parent, &observed);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    let worker = p
        .apply
        .iter()
        .find(|d| meta::name(&d.object) == "c-a")
        .unwrap();
    assert_eq!(worker.object["data"]["banner"], "medium/black");
    assert_eq!(p.status.unwrap()["palettes"], json!(["p1"]));
    // The optional theme missing: values fall back, nothing fails.
    let p = run(&rule, &parent, &observed[..1]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    let worker = p
        .apply
        .iter()
        .find(|d| meta::name(&d.object) == "c-a")
        .unwrap();
    assert_eq!(worker.object["data"]["banner"], "medium/grey");
}

#[test]
fn a_namespaced_parent_cannot_look_up_another_namespace() {
    let source = std::fs::read_to_string(format!(
        "{}/tests/rules/language/crew.yaml",
        cli::root().display()
    ))
    .unwrap()
    .replace(
        "objectName: \"{{ parent.spec.settingsRef }}\"",
        "objectName: \"{{ parent.spec.settingsRef }}\"\n      namespace: kube-system",
    );
    let rule = parse_rule("crew.yaml".as_ref(), &source).unwrap();
    let mut secret = settings("t");
    secret["metadata"]["namespace"] = json!("kube-system");
    let p = run(
        &rule,
        &crew(json!({"settingsRef": "crew-settings"})),
        &[secret],
    );
    let f = p.failure.unwrap();
    assert!(f.message.contains("reads only its own"), "{}", f.message);
    assert!(p.apply.is_empty());
}

#[test]
fn definitions_are_checked_when_the_rule_loads() {
    let rule = |definitions: &str| {
        parse_rule(
            "bad.yaml".as_ref(),
            &format!(
                "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: bad}}\nspec:\n  parent: {{apiVersion: x.dev/v1, kind: X}}\n  definitions:\n{definitions}"
            ),
        )
        .map(|_| ())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
    };
    let errors =
        rule("    values:\n      - {name: 1x, expr: '1'}\n      - {name: a, expr: 'a +'}\n");
    assert!(errors.contains("bad.yaml:8:"), "{errors}");
    assert!(errors.contains("not a value name"), "{errors}");
    assert!(errors.contains("expression does not compile"), "{errors}");
    let errors = rule("    macros: \"{% macro x() %}\"\n");
    assert!(errors.contains("macros do not compile"), "{errors}");
}

const RING: &str = r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: ring}
spec:
  parent: {apiVersion: language.test.ruleop.dev/v1, kind: Ring}
  allow: [{apiVersion: v1, kind: ConfigMap}]
  children:
    - name: node
      apiVersion: v1
      kind: ConfigMap
      replicas:
        count: parent.spec.n
        naming: Ordinal
        prefix: parent.metadata.name ~ "-node"
        rollout: RollingRecreate
      ready: child.status.ok | default(false)
      template: |
        data: {version: "{{ parent.spec.version }}", index: "{{ index }}"}
  finalizer:
    deleteOrder: [node]
    deleteReplicas: OneAtATime
"#;

fn ring(n: u64, version: &str) -> Json {
    json!({"apiVersion": "language.test.ruleop.dev/v1", "kind": "Ring",
        "metadata": {"name": "r", "namespace": "ns", "uid": "uid-r", "generation": 1,
            "finalizers": [meta::FINALIZER]},
        "spec": {"n": n, "version": version}})
}

fn mark_ready(observed: &mut [Json]) {
    for o in observed.iter_mut() {
        o["status"] = json!({"ok": true});
    }
}

fn versions(observed: &[Json]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = observed
        .iter()
        .map(|o| {
            (
                meta::name(o).to_string(),
                o["data"]["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn rolling_recreate_replaces_one_ready_replica_at_a_time_highest_first() {
    let rule = parse_rule("ring.yaml".as_ref(), RING).unwrap();
    let mut observed = Vec::new();
    let mut uid = 0;
    for _ in 0..10 {
        let p = run(&rule, &ring(3, "v1"), &observed);
        act(&p, &mut observed, &mut uid);
        mark_ready(&mut observed);
    }
    assert_eq!(observed.len(), 3);
    let target = ring(3, "v2");
    let mut replaced = Vec::new();
    for _ in 0..20 {
        let p = run(&rule, &target, &observed);
        assert!(p.failure.is_none(), "{:?}", p.failure);
        // Never an in-place update of a changed replica, never more than one deletion.
        assert!(
            p.apply.iter().all(|d| d.action != Action::Update),
            "{:#?}",
            p.apply
        );
        assert!(p.delete.len() <= 1, "{:#?}", p.delete);
        replaced.extend(p.delete.iter().map(|d| d.key.name.clone()));
        if writes(&p) == 0 {
            break;
        }
        act(&p, &mut observed, &mut uid);
        // The new replica is not ready at first: no deletion may follow until it is.
        let p = run(&rule, &target, &observed);
        let pending_create = p.apply.iter().any(|d| d.action == Action::Create);
        if !pending_create && observed.iter().any(|o| o.get("status").is_none()) {
            assert!(
                p.delete.is_empty(),
                "waits for the new replica: {:#?}",
                p.delete
            );
        }
        mark_ready(&mut observed);
    }
    assert_eq!(replaced, ["r-node-2", "r-node-1", "r-node-0"]);
    assert_eq!(
        versions(&observed),
        [
            ("r-node-0".into(), "v2".into()),
            ("r-node-1".into(), "v2".into()),
            ("r-node-2".into(), "v2".into())
        ]
    );
}

#[test]
fn the_finalizer_deletes_replicas_one_at_a_time_highest_first() {
    let rule = parse_rule("ring.yaml".as_ref(), RING).unwrap();
    let mut observed = Vec::new();
    let mut uid = 0;
    for _ in 0..10 {
        let p = run(&rule, &ring(3, "v1"), &observed);
        act(&p, &mut observed, &mut uid);
        mark_ready(&mut observed);
    }
    let mut parent = ring(3, "v1");
    parent["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut order = Vec::new();
    for _ in 0..10 {
        let p = run(&rule, &parent, &observed);
        if p.delete.is_empty() {
            break;
        }
        assert_eq!(p.delete.len(), 1, "{:#?}", p.delete);
        let name = p.delete[0].key.name.clone();
        // Terminating: the next replica waits until it is gone.
        let o = observed.iter_mut().find(|o| meta::name(o) == name).unwrap();
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(run(&rule, &parent, &observed).delete.is_empty());
        observed.retain(|o| meta::name(o) != name);
        order.push(name);
    }
    assert_eq!(order, ["r-node-2", "r-node-1", "r-node-0"]);
    let p = run(&rule, &parent, &observed);
    assert_eq!(p.finalizer, ruleop_plan::FinalizerChange::Remove);
}

#[test]
fn a_collection_nests_with_ordinals_through_product() {
    let rule = parse_rule(
        "claims.yaml".as_ref(),
        r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: claims}
spec:
  parent: {apiVersion: language.test.ruleop.dev/v1, kind: Store}
  allow: [{apiVersion: v1, kind: PersistentVolumeClaim}]
  children:
    - name: claim
      apiVersion: v1
      kind: PersistentVolumeClaim
      forEach:
        items: product(range(parent.spec.replicas), parent.spec.volumeClaimTemplates)
        key: item[1].name ~ "-" ~ item[0]
      template: |
        metadata: {name: "{{ item[1].name }}-{{ parent.metadata.name }}-{{ item[0] }}"}
        spec: {{ item[1].spec }}
"#,
    )
    .unwrap();
    let store = |replicas: u64| {
        json!({"apiVersion": "language.test.ruleop.dev/v1", "kind": "Store",
            "metadata": {"name": "s", "namespace": "ns", "uid": "uid-s", "generation": 1},
            "spec": {"replicas": replicas, "volumeClaimTemplates": [
                {"name": "data", "spec": {"resources": {"requests": {"storage": "1Gi"}}}},
                {"name": "logs", "spec": {"resources": {"requests": {"storage": "2Gi"}}}}]}})
    };
    let mut observed = Vec::new();
    let mut uid = 0;
    converge(&rule, &store(2), &mut observed, &mut uid);
    let mut names: Vec<&str> = observed.iter().map(meta::name).collect();
    names.sort_unstable();
    assert_eq!(names, ["data-s-0", "data-s-1", "logs-s-0", "logs-s-1"]);
    assert_eq!(
        observed[0]["spec"]["resources"]["requests"]["storage"],
        "1Gi"
    );
    let p = run(&rule, &store(1), &observed);
    let mut gone: Vec<&str> = p.delete.iter().map(|d| d.key.name.as_str()).collect();
    gone.sort_unstable();
    assert_eq!(gone, ["data-s-1", "logs-s-1"]);
}
