//! Planner tests for scopes and ownership, on the rules of the ownership cluster tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use serde_json::{Value as Json, json};

use super::{Action, Input, Plan, plan, reason};
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_schema::meta;

const TENANT: &str = include_str!("../../../tests/rules/ownership/tenant/tenant.yaml");
const BETA: &str = include_str!("../../../tests/rules/ownership/collide/beta.yaml");
const CREW: &str = include_str!("../../../tests/rules/ownership/crew/crew.yaml");
const NAMESPACE: &str = include_str!("../../../tests/rules/ownership/namespace/namespace.yaml");

fn rule(source: &str) -> CompiledRule {
    parse_rule("test.yaml".as_ref(), source).unwrap()
}

pub(super) fn run(rule: &CompiledRule, parent: &Json, observed: &[Json]) -> Plan {
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

/// The objects as the API server stores the plan's applies (a uid, ruleop's field manager).
pub(super) fn stored(plan: &Plan) -> Vec<Json> {
    plan.apply
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut o = d.object.clone();
            o["metadata"]["uid"] = json!(format!("child-{i}"));
            o["metadata"]["managedFields"] = json!([{"manager": meta::FIELD_MANAGER}]);
            o
        })
        .collect()
}

fn actions(plan: &Plan) -> Vec<(String, Action)> {
    plan.apply
        .iter()
        .map(|d| (meta::ObjectKey::of(&d.object).to_string(), d.action))
        .collect()
}

fn ready_reason(plan: &Plan) -> String {
    let status = plan.status.as_ref().unwrap_or(&plan.owned_status);
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["reason"].as_str().unwrap().to_string())
        .unwrap()
}

fn tenant() -> Json {
    json!({"apiVersion": "ownership.ruleop.test/v1", "kind": "Tenant",
        "metadata": {"name": "acme", "uid": "u-acme", "generation": 1},
        "spec": {"team": "devs", "pods": 10}})
}

#[test]
fn a_tenant_owns_cluster_scoped_children_and_objects_in_its_namespace_and_settles() {
    let rule = rule(TENANT);
    let first = run(&rule, &tenant(), &[]);
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let keys: Vec<String> = actions(&first).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "Namespace/acme",
            "ClusterRole/acme-viewer",
            "ResourceQuota/acme/quota",
            "LimitRange/acme/limits",
            "RoleBinding/acme/team-view",
            "NetworkPolicy/acme/same-namespace-only",
        ]
    );
    assert!(first.apply.iter().all(|d| d.action == Action::Create));
    // Stored as rendered (a cluster-scoped object has no namespace): nothing more to do,
    // and above all the namespace is not pruned.
    let again = run(&rule, &tenant(), &stored(&first));
    assert!(
        again.apply.iter().all(|d| d.action == Action::UpToDate),
        "{:?}",
        actions(&again)
    );
    assert!(again.delete.is_empty(), "{:?}", again.delete);
}

#[test]
fn nothing_goes_into_a_namespace_someone_else_holds() {
    let rule = rule(TENANT);
    let theirs = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "acme", "uid": "ns-1", "managedFields": [{"manager": "kubectl"}]}});
    let p = run(&rule, &tenant(), &[theirs]);
    let conflicts: Vec<String> = actions(&p)
        .into_iter()
        .filter(|(_, a)| *a == Action::Conflict)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        conflicts,
        [
            "Namespace/acme",
            "ResourceQuota/acme/quota",
            "LimitRange/acme/limits",
            "RoleBinding/acme/team-view",
            "NetworkPolicy/acme/same-namespace-only",
        ]
    );
    // The cluster role is the tenant's own business.
    assert_eq!(
        actions(&p)[1],
        ("ClusterRole/acme-viewer".into(), Action::Create)
    );
    assert_eq!(ready_reason(&p), reason::CONFLICT);
}

#[test]
fn a_namespace_child_is_applied_before_the_objects_inside_it() {
    // The Namespace child listed last.
    let start = TENANT.find("    - name: namespace").unwrap();
    let end = TENANT.find("    - name: viewer").unwrap();
    let status = TENANT.find("  status:").unwrap();
    let reordered = format!(
        "{}{}{}{}",
        &TENANT[..start],
        &TENANT[end..status],
        &TENANT[start..end],
        &TENANT[status..]
    );
    let rule = rule(&reordered);
    assert_eq!(rule.spec.children.last().unwrap().name, "namespace");
    let p = run(&rule, &tenant(), &[]);
    assert_eq!(actions(&p)[0].0, "Namespace/acme");
    assert_eq!(actions(&p)[1].0, "ClusterRole/acme-viewer");
}

#[test]
fn a_namespaced_child_of_a_cluster_scoped_parent_stays_in_namespaces_the_rule_creates() {
    let elsewhere = TENANT.replace(
        "metadata: {name: quota, namespace: {{ parent.metadata.name }}}",
        "metadata: {name: quota, namespace: kube-system}",
    );
    let p = run(&rule(&elsewhere), &tenant(), &[]);
    let failure = p.failure.unwrap();
    assert_eq!(failure.reason, reason::RENDER_FAILED);
    assert!(
        failure.message.starts_with("test.yaml:")
            && failure
                .message
                .contains("ResourceQuota \"quota\" in namespace \"kube-system\""),
        "{}",
        failure.message
    );
    assert!(p.apply.is_empty() && p.delete.is_empty());
    // crossNamespace lets that kind go anywhere.
    let crossing = elsewhere.replace(
        "{apiVersion: v1, kind: ResourceQuota}",
        "{apiVersion: v1, kind: ResourceQuota, crossNamespace: true}",
    );
    assert!(run(&rule(&crossing), &tenant(), &[]).failure.is_none());
}

#[test]
fn a_cluster_scoped_child_names_no_namespace() {
    let source = TENANT.replace(
        "metadata: {name: \"{{ parent.metadata.name }}-viewer\"}",
        "metadata: {name: \"{{ parent.metadata.name }}-viewer\", namespace: acme}",
    );
    let failure = run(&rule(&source), &tenant(), &[]).failure.unwrap();
    assert!(
        failure
            .message
            .contains("ClusterRole \"acme-viewer\" is cluster-scoped: remove metadata.namespace"),
        "{}",
        failure.message
    );
}

fn namespace(labels: Json, status: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "uid": "u-ns", "labels": labels}, "status": status})
}

#[test]
fn a_built_in_parents_status_is_ruleops_conditions_only_and_settles() {
    let rule = rule(NAMESPACE);
    let ns = namespace(json!({"team": "a"}), json!({"phase": "Active"}));
    let first = run(&rule, &ns, &[]);
    assert_eq!(
        actions(&first),
        [("ConfigMap/team-a/team".into(), Action::Create)]
    );
    let written = first.status.clone().unwrap();
    let types: Vec<&str> = written["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "TeamAssigned"]);
    // Neither the phase nor, a Namespace having no generation, any observedGeneration.
    assert_eq!(written.as_object().unwrap().len(), 1, "{written}");
    assert!(written["conditions"][0].get("observedGeneration").is_none());
    // Stored beside the phase and another writer's condition: Ready once the child is
    // there, then nothing to write.
    let children = stored(&first);
    let mut status = written;
    status["phase"] = json!("Active");
    status["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "NamespaceDeletionDiscoveryFailure", "status": "False"}));
    let mut ns = namespace(json!({"team": "a"}), status.clone());
    let ready = run(&rule, &ns, &children).status.unwrap();
    assert_eq!(ready["conditions"][0]["status"], "True");
    assert_eq!(ready["conditions"].as_array().unwrap().len(), 2);
    status["conditions"][0] = ready["conditions"][0].clone();
    ns["status"] = status;
    let settled = run(&rule, &ns, &children);
    assert!(settled.status.is_none(), "{:?}", settled.status);
}

#[test]
fn a_status_field_no_longer_projected_is_written_without_it() {
    let rule = rule(TENANT);
    let first = run(&rule, &tenant(), &[]);
    let mut parent = tenant();
    parent["status"] = json!({"namespace": "acme", "note": "someone else's"});
    parent["status"]["conditions"] = first.owned_status["conditions"].clone();
    // The namespace child is gone: its projection finds nothing.
    let p = run(&rule, &parent, &[]);
    let status = p.status.unwrap();
    assert!(status.get("namespace").is_none() && status.get("note").is_none());
    // With it there and stored beside another writer's field: nothing to write.
    let mut settled = parent.clone();
    settled["status"] = run(&rule, &parent, &stored(&first)).owned_status;
    settled["status"]["note"] = json!("someone else's");
    assert!(run(&rule, &settled, &stored(&first)).status.is_none());
}

fn crew() -> Json {
    json!({"apiVersion": "ownership.ruleop.test/v1", "kind": "Crew",
        "metadata": {"name": "c", "namespace": "ns", "uid": "u-crew", "generation": 1},
        "spec": {"members": 3}})
}

/// The crew converged: its settings and three member pods stored.
fn converged_crew(rule: &CompiledRule) -> Vec<Json> {
    let first = run(rule, &crew(), &[]);
    assert_eq!(first.apply.len(), 4, "{:?}", actions(&first));
    stored(&first)
}

fn pod<'a>(objects: &'a mut [Json], name: &str) -> &'a mut Json {
    objects.iter_mut().find(|o| meta::name(o) == name).unwrap()
}

#[test]
fn a_child_that_lost_its_labels_or_owner_reference_is_repaired_not_duplicated() {
    let rule = rule(CREW);
    let mut objects = converged_crew(&rule);
    let settled = run(&rule, &crew(), &objects);
    assert!(settled.apply.iter().all(|d| d.action == Action::UpToDate));
    // Labels removed by hand, the controller ownerReference left: still member 1.
    pod(&mut objects, "c-member-1")["metadata"]["labels"] = json!({"crew": "c"});
    // The reverse: the ownerReference removed, the labels left.
    pod(&mut objects, "c-member-2")["metadata"]["ownerReferences"] = json!([]);
    let p = run(&rule, &crew(), &objects);
    assert_eq!(
        actions(&p),
        [
            ("ConfigMap/ns/c-settings".into(), Action::UpToDate),
            ("Pod/ns/c-member-0".into(), Action::UpToDate),
            ("Pod/ns/c-member-1".into(), Action::Update),
            ("Pod/ns/c-member-2".into(), Action::Update),
        ]
    );
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    // The update is applied to the object observed, and only to it.
    assert_eq!(p.apply[2].uid.as_deref(), Some("child-2"));
    assert_eq!(
        meta::label(&p.apply[2].object, meta::OWNER_LABEL),
        Some("u-crew")
    );
}

#[test]
fn an_object_holding_a_childs_name_is_never_adopted() {
    let rule = rule(CREW);
    let foreign = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "c-member-1", "namespace": "ns", "uid": "someone",
            "labels": {"crew": "c"}, "managedFields": [{"manager": "kubectl"}]}});
    // Even controlled by the parent: another controller's object is not ruleop's child.
    let mut controlled = foreign.clone();
    controlled["metadata"]["ownerReferences"] =
        json!([{"uid": "u-crew", "controller": true, "name": "c"}]);
    for other in [foreign, controlled] {
        let p = run(&rule, &crew(), std::slice::from_ref(&other));
        let member_1 = p
            .apply
            .iter()
            .find(|d| meta::name(&d.object) == "c-member-1")
            .unwrap();
        assert_eq!(member_1.action, Action::Conflict);
        assert_eq!(ready_reason(&p), reason::CONFLICT);
        assert!(p.delete.is_empty());
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == reason::CONFLICT && e.message.contains("c-member-1"))
        );
        // Said once: a parent already showing the conflict gets no new event or status.
        let mut parent = crew();
        parent["status"] = p.status.clone().unwrap();
        let again = run(&rule, &parent, std::slice::from_ref(&other));
        assert!(again.events.iter().all(|e| e.reason != reason::CONFLICT));
        assert!(again.status.is_none(), "{:?}", again.status);
    }
}

#[test]
fn another_rules_child_of_the_same_name_is_a_conflict_for_the_second_parent() {
    let beta = rule(BETA);
    let alphas = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": "ns", "uid": "cm-1",
            "labels": {meta::OWNER_LABEL: "u-alpha", meta::RULE_LABEL: "alpha",
                meta::CHILD_LABEL: "config", meta::MANAGED_BY_LABEL: meta::MANAGED_BY},
            "ownerReferences": [{"uid": "u-alpha", "controller": true}],
            "managedFields": [{"manager": meta::FIELD_MANAGER}]}});
    let parent = json!({"apiVersion": "ownership.ruleop.test/v1", "kind": "Beta",
        "metadata": {"name": "b", "namespace": "ns", "uid": "u-beta", "generation": 1},
        "spec": {"configName": "shared"}});
    let p = run(&beta, &parent, &[alphas]);
    assert_eq!(
        actions(&p),
        [
            ("ConfigMap/ns/b-own".into(), Action::Create),
            ("ConfigMap/ns/shared".into(), Action::Conflict),
        ]
    );
    assert!(p.delete.is_empty());
    assert_eq!(ready_reason(&p), reason::CONFLICT);
}

#[test]
fn a_value_reading_a_missing_lookup_reports_the_lookup_not_a_render_error() {
    let rule = rule(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: vault}
spec:
  parent: {apiVersion: vault.ruleop.test/v1, kind: Vault}
  allow: [{apiVersion: v1, kind: ConfigMap}]
  lookups:
    - {name: key, apiVersion: v1, kind: Secret, objectName: "{{ parent.spec.keyRef }}"}
  definitions:
    values: [{name: digest, expr: "lookups.key.data | sha256"}]
  children:
    - name: seal
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {name: "{{ parent.metadata.name }}-seal"}
        data: {digest: "{{ values.digest }}"}
"#,
    );
    let parent = json!({"apiVersion": "vault.ruleop.test/v1", "kind": "Vault",
        "metadata": {"name": "v", "namespace": "ns", "uid": "u-v", "generation": 1},
        "spec": {"keyRef": "v-key"}});
    let p = run(&rule, &parent, &[]);
    let f = p.failure.clone().unwrap();
    assert_eq!(f.reason, reason::LOOKUP_MISSING, "{}", f.message);
    assert!(f.message.contains("Secret ns/v-key"), "{}", f.message);
    assert_eq!(ready_reason(&p), reason::LOOKUP_MISSING);
    assert!(p.apply.is_empty() && p.delete.is_empty());

    // With the Secret, the value is computed and the child rendered.
    let key = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "v-key", "namespace": "ns", "uid": "s-1"}, "data": {"k": "YQ=="}});
    let p = run(&rule, &parent, &[key]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(
        actions(&p),
        [("ConfigMap/ns/v-seal".into(), Action::Create)]
    );
}

#[test]
fn collection_copies_may_share_a_name_in_different_namespaces() {
    let rule = rule(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: banner}
spec:
  parent: {apiVersion: banner.ruleop.test/v1, kind: Banner, scope: Cluster}
  allow: [{apiVersion: v1, kind: ConfigMap, crossNamespace: true}]
  children:
    - name: notice
      apiVersion: v1
      kind: ConfigMap
      forEach: {items: parent.spec.targets, key: item.ns}
      template: |
        metadata: {name: "{{ item.name }}", namespace: "{{ key }}"}
        data: {text: "{{ parent.spec.text }}"}
"#,
    );
    let parent = |targets: Json| {
        json!({"apiVersion": "banner.ruleop.test/v1", "kind": "Banner",
            "metadata": {"name": "b", "uid": "u-b", "generation": 1},
            "spec": {"text": "hi", "targets": targets}})
    };
    let p = run(
        &rule,
        &parent(json!([{"ns": "a", "name": "motd"}, {"ns": "b", "name": "motd"}])),
        &[],
    );
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(
        actions(&p),
        [
            ("ConfigMap/a/motd".into(), Action::Create),
            ("ConfigMap/b/motd".into(), Action::Create),
        ]
    );
    // Dropping one namespace deletes exactly its copy.
    let observed = stored(&p);
    let p = run(
        &rule,
        &parent(json!([{"ns": "b", "name": "motd"}])),
        &observed,
    );
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(
        p.delete
            .iter()
            .map(|d| d.key.to_string())
            .collect::<Vec<_>>(),
        ["ConfigMap/a/motd"]
    );
}

/// A cluster-scoped parent with one namespace per item and, in each, a RoleBinding of one
/// fixed name: the copies share a name but not a namespace.
const SPACES: &str = r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: spaces}
spec:
  parent: {apiVersion: ownership.ruleop.test/v1, kind: Spaces, scope: Cluster}
  allow:
    - {apiVersion: v1, kind: Namespace}
    - {apiVersion: v1, kind: ConfigMap}
  children:
    - name: ns
      apiVersion: v1
      kind: Namespace
      forEach: {items: parent.spec.names}
      template: |
        metadata: {name: "{{ key }}"}
    - name: marker
      apiVersion: v1
      kind: ConfigMap
      forEach: {items: parent.spec.names}
      template: |
        metadata: {name: "{{ parent.spec.fixed | default('marker') }}", namespace: "{{ key }}"}
"#;

#[test]
fn collection_copies_in_different_namespaces_may_share_a_name() {
    let rule = rule(SPACES);
    let parent = json!({"apiVersion": "ownership.ruleop.test/v1", "kind": "Spaces",
        "metadata": {"name": "s", "uid": "u-s", "generation": 1},
        "spec": {"names": ["a", "b"]}});
    let p = run(&rule, &parent, &[]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    let mut keys: Vec<String> = actions(&p).into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter().filter(|k| k.contains("marker")).count() == 2,
        "{keys:?}"
    );
}

const KILN: &str = include_str!("../../../tests/rules/process/slow/kiln.yaml");

fn kiln(loads: usize) -> Json {
    json!({
        "apiVersion": "process.ruleop.test/v1", "kind": "Kiln",
        "metadata": {"name": "k", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"loads": loads, "heat": 10},
    })
}

#[test]
fn a_plan_whose_renders_together_pass_its_total_fuel_fails_located() {
    // Each load's render runs about 12,000 instructions, within the fuel of one render; the
    // plan may run 50 × 20,000 = 1,000,000: about 80 loads.
    let rule = rule(&KILN.replace("fuel: 8000000", "fuel: 20000"));
    let p = run(&rule, &kiln(40), &[]);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(p.apply.len(), 40);

    let p = run(&rule, &kiln(120), &[]);
    let failure = p.failure.clone().expect("over the plan's fuel");
    assert_eq!(failure.reason, reason::RENDER_FAILED);
    // Located at the render that found the fuel spent: the next load's key or template.
    let line_of = |text: &str| {
        KILN.lines()
            .position(|l| l.trim_start().starts_with(text))
            .unwrap()
            + 1
    };
    let line: usize = failure
        .message
        .strip_prefix("rule kiln: test.yaml:")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", failure.message));
    assert!(
        (line_of("forEach:")..=line_of("template: |")).contains(&line),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("total fuel of 1000000")
            && failure.message.contains("spec.limits.fuel"),
        "{}",
        failure.message
    );
    assert!(
        p.apply.is_empty() && p.delete.is_empty(),
        "nothing half-rendered is applied"
    );
    assert_eq!(ready_reason(&p), reason::RENDER_FAILED);
    // Each plan has its own fuel: the smaller kiln still plans after the bigger one failed.
    assert!(run(&rule, &kiln(40), &[]).failure.is_none());
}
