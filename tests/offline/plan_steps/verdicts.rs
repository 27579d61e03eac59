//! The planner step by step (see `plan_steps`): what one plan decides. Refused values change
//! nothing, a converged parent needs no writes and drift is put back, another owner's object
//! is never adopted, a template error is located, and status and events say what happened.

use super::*;

#[test]
fn memcached_validation_failure_changes_nothing() {
    let rule = rule("memcached");
    let mut cluster = Cluster::default();
    let mut mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 3}),
    );
    cluster.act(&step(&rule, &mc, &cluster));
    assert_eq!(cluster.objects.len(), 2);
    for bad in [json!(0), json!(11), json!("three")] {
        mc["spec"]["size"] = bad;
        let p = step(&rule, &mc, &cluster);
        assert!(p.apply.is_empty() && p.delete.is_empty());
        assert_eq!(ready(&p), ("False".into(), "InvalidSize".into()));
        assert!(
            p.events
                .iter()
                .any(|e| e.type_ == EventType::Warning && e.reason == "InvalidSize")
        );
        assert!(
            p.failure
                .as_ref()
                .unwrap()
                .message
                .contains("between 1 and 10")
        );
    }
}

#[test]
fn nginx_image_without_tag_is_refused() {
    let rule = rule("nginxserver");
    let ng = parent(
        "web.example.com/v1",
        "NginxServer",
        "n",
        json!({"replicas": 2, "image": "nginx"}),
    );
    let p = step(&rule, &ng, &Cluster::default());
    assert!(p.apply.is_empty());
    assert_eq!(ready(&p).1, "ImageTagRequired");
    let ok = parent(
        "web.example.com/v1",
        "NginxServer",
        "n",
        json!({"replicas": 2, "image": "registry:5000/nginx:1.27"}),
    );
    assert_eq!(creates(&step(&rule, &ok, &Cluster::default())), ["n"]);
}

#[test]
fn converged_parent_needs_no_writes_and_drift_is_detected() {
    let rule = rule("memcached");
    let mut cluster = Cluster::default();
    let mut mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 3}),
    );
    let first = step(&rule, &mc, &cluster);
    cluster.act(&first);
    mc["status"] = first.status.clone().unwrap();
    // Server defaults do not count as drift.
    cluster.find_mut("Deployment", "m")["spec"]["strategy"] = json!({"type": "RollingUpdate"});
    let p = step(&rule, &mc, &cluster);
    assert_eq!(writes(&p), 0);
    assert!(p.status.is_none(), "unchanged status is not written");
    assert!(p.events.is_empty());
    // A hand-scaled Deployment is put back.
    cluster.find_mut("Deployment", "m")["spec"]["replicas"] = json!(7);
    let p = step(&rule, &mc, &cluster);
    let d = p
        .apply
        .iter()
        .find(|d| meta::kind(&d.object) == "Deployment")
        .unwrap();
    assert_eq!(d.action, Action::Update);
    assert_eq!(d.object["spec"]["replicas"], 3);
}

#[test]
fn fields_managed_elsewhere_are_neither_set_nor_corrected() {
    let source = std::fs::read_to_string(format!("{}/rules/memcached.yaml", cli::root().display()))
        .unwrap()
        .replace(
            "      kind: Deployment\n      template:",
            "      kind: Deployment\n      managedElsewhere: [spec.replicas]\n      template:",
        );
    let rule = rule_from(&source);
    let mut cluster = Cluster::default();
    let mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 3}),
    );
    let p = step(&rule, &mc, &cluster);
    assert!(p.apply[0].object["spec"].get("replicas").is_none());
    cluster.act(&p);
    cluster.find_mut("Deployment", "m")["spec"]["replicas"] = json!(7);
    assert_eq!(writes(&step(&rule, &mc, &cluster)), 0);
}

#[test]
fn an_object_this_parent_does_not_own_is_never_adopted() {
    let rule = rule("memcached");
    let mut cluster = Cluster::default();
    cluster
        .objects
        .push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "m", "namespace": "ns", "uid": "someone-else"}}));
    let mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 3}),
    );
    let p = step(&rule, &mc, &cluster);
    let d = p
        .apply
        .iter()
        .find(|d| meta::kind(&d.object) == "Deployment")
        .unwrap();
    assert_eq!(d.action, Action::Conflict);
    assert!(p.delete.is_empty());
    assert_eq!(ready(&p), ("False".into(), "Conflict".into()));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "Conflict" && e.type_ == EventType::Warning)
    );
}

#[test]
fn a_template_error_is_located_and_deletes_nothing() {
    let source =
        std::fs::read_to_string(format!("{}/rules/memcached.yaml", cli::root().display())).unwrap();
    let good = rule_from(&source);
    let mut cluster = Cluster::default();
    let mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 3}),
    );
    cluster.act(&step(&good, &mc, &cluster));
    let broken_source = source.replace(
        "name: {{ parent.metadata.name }}\n        spec:\n          selector",
        // A label the parent lacks: allowed by the schema (labels is a map), undefined when
        // rendered.
        "name: {{ parent.metadata.labels.nmae }}\n        spec:\n          selector",
    );
    let broken = rule_from(&broken_source);
    let p = step(&broken, &mc, &cluster);
    assert!(p.apply.is_empty() && p.delete.is_empty(), "{p:?}");
    let f = p.failure.unwrap();
    assert_eq!(f.reason, "RenderFailed");
    let line = broken_source
        .lines()
        .position(|l| l.contains("nmae"))
        .unwrap()
        + 1;
    assert!(
        f.message.starts_with(&format!("test.yaml:{line}:")),
        "{}",
        f.message
    );
    assert!(f.message.contains("undefined"), "{}", f.message);
}

#[test]
fn memcached_status_nodes_lists_its_pods_only() {
    let rule = rule("memcached");
    let mut cluster = Cluster::default();
    let mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 2}),
    );
    cluster.act(&step(&rule, &mc, &cluster));
    for (name, cr) in [("m-b", "m"), ("m-a", "m"), ("other-x", "other")] {
        cluster.objects.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "memcached", "memcached_cr": cr}}}));
    }
    cluster.find_mut("Deployment", "m")["status"] = json!({"readyReplicas": 2});
    let p = step(&rule, &mc, &cluster);
    let status = p.status.unwrap();
    assert_eq!(status["nodes"], json!(["m-a", "m-b"]));
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(
        ready(&Plan {
            status: Some(status),
            ..Plan::default()
        }),
        ("True".into(), "Ready".into())
    );
}

#[test]
fn whalesay_reports_the_job_phase() {
    let rule = rule("whalesay");
    let mut cluster = Cluster::default();
    let ws = parent(
        "devsectim.io/v1alpha1",
        "WhaleSay",
        "w",
        json!({"message": "moo"}),
    );
    let p = step(&rule, &ws, &cluster);
    assert_eq!(
        p.apply[0].object["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["cowsay", "moo"])
    );
    cluster.act(&p);
    cluster.find_mut("Job", "w-job")["status"] = json!({"active": 1});
    assert_eq!(
        step(&rule, &ws, &cluster).status.unwrap()["phase"],
        "Active"
    );
    cluster.find_mut("Job", "w-job")["status"] = json!({"succeeded": 1});
    let p = step(&rule, &ws, &cluster);
    assert_eq!(p.status.as_ref().unwrap()["phase"], "Succeeded");
    assert_eq!(ready(&p), ("True".into(), "Completed".into()));
}

#[test]
fn a_message_that_looks_like_yaml_stays_one_string() {
    let rule = rule("whalesay");
    let message = "hi\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x}";
    let ws = parent(
        "devsectim.io/v1alpha1",
        "WhaleSay",
        "w",
        json!({"message": message}),
    );
    let p = step(&rule, &ws, &Cluster::default());
    assert_eq!(p.apply.len(), 1);
    assert_eq!(
        p.apply[0].object["spec"]["template"]["spec"]["containers"][0]["command"][1],
        message
    );
}

/// Each child's event names that child as its related object: the Event recorder keys a series
/// by reason and related object, so without it the Created events of one reconcile would merge
/// into one entry showing only the first message.
#[test]
fn each_child_event_names_its_child() {
    let r = rule_from(
        r#"
apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {name: tenant}
spec:
  parent: {apiVersion: test.ruleop.dev/v1, kind: Tenant}
  allow: [{apiVersion: v1, kind: ConfigMap}, {apiVersion: v1, kind: Secret}]
  children:
    - name: settings
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {name: "{{ parent.metadata.name }}-settings"}
        data: {tier: "{{ parent.spec.tier }}"}
    - name: quota
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {name: "{{ parent.metadata.name }}-quota"}
        data: {cpu: "2"}
    - name: token
      apiVersion: v1
      kind: Secret
      when: parent.spec.token
      template: |
        metadata: {name: "{{ parent.metadata.name }}-token"}
        stringData: {token: abc}
"#,
    );
    let mut p = parent(
        "test.ruleop.dev/v1",
        "Tenant",
        "t1",
        json!({"tier": "gold", "token": true}),
    );
    let mut cluster = Cluster::default();
    let first = step(&r, &p, &cluster);
    let mut created: Vec<(String, String)> = first
        .events
        .iter()
        .filter(|e| e.reason == "Created")
        .map(|e| {
            let key = e.related.as_ref().expect("a Created event names its child");
            assert!(e.message.contains(&key.to_string()), "{e:?}");
            (key.kind.clone(), key.name.clone())
        })
        .collect();
    created.sort();
    assert_eq!(
        created,
        [
            ("ConfigMap".to_string(), "t1-quota".to_string()),
            ("ConfigMap".to_string(), "t1-settings".to_string()),
            ("Secret".to_string(), "t1-token".to_string()),
        ]
    );
    cluster.act(&first);

    p["spec"]["token"] = json!(false);
    let second = step(&r, &p, &cluster);
    let deleted: Vec<_> = second
        .events
        .iter()
        .filter(|e| e.reason == "Deleted")
        .map(|e| {
            e.related
                .as_ref()
                .map(|k| (k.kind.as_str(), k.name.as_str()))
        })
        .collect();
    assert_eq!(deleted, [Some(("Secret", "t1-token"))]);
    // Events about the parent itself name no related object.
    assert!(
        second
            .events
            .iter()
            .filter(|e| e.reason != "Deleted")
            .all(|e| e.related.is_none()),
        "{:?}",
        second.events
    );
}
