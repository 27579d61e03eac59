//! The planner step by step on the reference rules, with a tiny in-memory "cluster" that
//! does what the controller would do with each plan. No API server: these are pure tests.
//! Here: scaling, backups, finalizers and cleanup over many steps; `verdicts`: what one plan
//! decides about refusals, drift, ownership, template errors, status and events.

use crate::cli;

use jiff::Timestamp;
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Action, EventType, FinalizerChange, Input, Plan, plan};
use ruleop_schema::meta;
use serde_json::{Value as Json, json};

mod verdicts;

fn rule(op: &str) -> CompiledRule {
    let path = format!("{}/rules/{op}.yaml", cli::root().display());
    let source = std::fs::read_to_string(&path).unwrap();
    parse_rule(path.as_ref(), &source).unwrap()
}

fn rule_from(source: &str) -> CompiledRule {
    parse_rule("test.yaml".as_ref(), source).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn parent(api_version: &str, kind: &str, name: &str, spec: Json) -> Json {
    json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1},
        "spec": spec})
}

/// Objects as the API server would hold them after the controller acted on plans.
#[derive(Default)]
struct Cluster {
    objects: Vec<Json>,
    next_uid: u64,
}

impl Cluster {
    fn act(&mut self, plan: &Plan) {
        for d in &plan.apply {
            if matches!(d.action, Action::UpToDate | Action::Conflict) {
                continue;
            }
            let key = meta::ObjectKey::of(&d.object);
            let mut object = d.object.clone();
            match self
                .objects
                .iter()
                .position(|o| meta::ObjectKey::of(o).same_object(&key))
            {
                Some(i) => {
                    let old = self.objects.remove(i);
                    object["metadata"]["uid"] = old["metadata"]["uid"].clone();
                    object["metadata"]["creationTimestamp"] =
                        old["metadata"]["creationTimestamp"].clone();
                    if let Some(status) = old.get("status") {
                        object["status"] = status.clone();
                    }
                    self.objects.insert(i, object);
                }
                None => {
                    self.next_uid += 1;
                    object["metadata"]["uid"] = json!(format!("child-{}", self.next_uid));
                    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                    self.objects.push(object);
                }
            }
        }
        for d in &plan.delete {
            self.objects.retain(|o| meta::uid(o) != d.uid);
        }
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Json> {
        self.objects
            .iter()
            .find(|o| meta::kind(o) == kind && meta::name(o) == name)
    }

    fn find_mut(&mut self, kind: &str, name: &str) -> &mut Json {
        self.objects
            .iter_mut()
            .find(|o| meta::kind(o) == kind && meta::name(o) == name)
            .unwrap()
    }

    fn names(&self, kind: &str) -> Vec<String> {
        self.objects
            .iter()
            .filter(|o| meta::kind(o) == kind)
            .map(|o| meta::name(o).to_string())
            .collect()
    }
}

fn step(rule: &CompiledRule, parent: &Json, cluster: &Cluster) -> Plan {
    plan(
        rule,
        Input {
            parent,
            observed: &cluster.objects,
            now: now(),
            schemas: None,
        },
    )
}

fn creates(plan: &Plan) -> Vec<String> {
    plan.apply
        .iter()
        .filter(|d| d.action == Action::Create)
        .map(|d| meta::name(&d.object).to_string())
        .collect()
}

fn writes(plan: &Plan) -> usize {
    plan.apply
        .iter()
        .filter(|d| matches!(d.action, Action::Create | Action::Update))
        .count()
        + plan.delete.len()
}

fn ready(plan: &Plan) -> (String, String) {
    let c = plan.status.as_ref().unwrap()["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

/// Scales a PodSet to `replicas`, one plan at a time, returning how many steps it took.
fn converge(rule: &CompiledRule, parent: &Json, cluster: &mut Cluster) -> usize {
    for steps in 0..20 {
        let p = step(rule, parent, cluster);
        assert!(p.failure.is_none(), "{:?}", p.failure);
        assert!(
            creates(&p).len() + p.delete.len() <= 1,
            "at most one pod per step: {p:?}"
        );
        if writes(&p) == 0 {
            return steps;
        }
        cluster.act(&p);
    }
    panic!("did not converge");
}

#[test]
fn podset_scales_up_from_zero_one_pod_per_step() {
    let rule = rule("podset");
    let mut cluster = Cluster::default();
    let mut ps = parent(
        "app.example.com/v1alpha1",
        "PodSet",
        "ps",
        json!({"replicas": 0}),
    );
    assert_eq!(converge(&rule, &ps, &mut cluster), 0);
    ps["spec"]["replicas"] = json!(3);
    for expected in 1..=3 {
        let p = step(&rule, &ps, &cluster);
        assert_eq!(
            creates(&p).len(),
            1,
            "step {expected} creates exactly one pod"
        );
        assert_eq!(ready(&p).1, "Progressing");
        cluster.act(&p);
        assert_eq!(cluster.names("Pod").len(), expected);
    }
    let done = step(&rule, &ps, &cluster);
    assert_eq!(writes(&done), 0);
    let mut names = cluster.names("Pod");
    names.sort();
    assert_eq!(done.status.as_ref().unwrap()["podNames"], json!(names));
    for pod in &cluster.objects {
        assert!(meta::name(pod).starts_with("ps-pod"));
        assert_eq!(meta::label(pod, "app"), Some("ps"));
        assert_eq!(meta::label(pod, "version"), Some("v0.1"));
        assert!(meta::is_owned_by(pod, "uid-ps"));
    }
}

#[test]
fn a_step_not_yet_observed_is_repeated_not_doubled() {
    let rule = rule("podset");
    let cluster = Cluster::default();
    let ps = parent(
        "app.example.com/v1alpha1",
        "PodSet",
        "ps",
        json!({"replicas": 3}),
    );
    assert_eq!(
        creates(&step(&rule, &ps, &cluster)),
        creates(&step(&rule, &ps, &cluster))
    );
}

#[test]
fn podset_scales_down_five_to_two_newest_first() {
    let rule = rule("podset");
    let mut cluster = Cluster::default();
    let mut ps = parent(
        "app.example.com/v1alpha1",
        "PodSet",
        "ps",
        json!({"replicas": 5}),
    );
    assert_eq!(converge(&rule, &ps, &mut cluster), 5);
    let created_order = cluster.names("Pod");
    ps["spec"]["replicas"] = json!(2);
    let mut deleted = Vec::new();
    for _ in 0..3 {
        let p = step(&rule, &ps, &cluster);
        assert_eq!(p.delete.len(), 1);
        assert!(creates(&p).is_empty());
        deleted.push(p.delete[0].key.name.clone());
        cluster.act(&p);
    }
    assert_eq!(
        deleted,
        [
            created_order[4].clone(),
            created_order[3].clone(),
            created_order[2].clone()
        ]
    );
    let p = step(&rule, &ps, &cluster);
    assert_eq!(writes(&p), 0);
    let mut kept = created_order[..2].to_vec();
    kept.sort();
    assert_eq!(p.status.unwrap()["podNames"], json!(kept));
}

#[test]
fn podset_replaces_a_deleted_pod() {
    let rule = rule("podset");
    let mut cluster = Cluster::default();
    let ps = parent(
        "app.example.com/v1alpha1",
        "PodSet",
        "ps",
        json!({"replicas": 3}),
    );
    converge(&rule, &ps, &mut cluster);
    let victim = cluster.names("Pod")[1].clone();
    cluster.objects.retain(|o| meta::name(o) != victim);
    let p = step(&rule, &ps, &cluster);
    let created = creates(&p);
    assert_eq!(created.len(), 1);
    assert_ne!(created[0], victim, "a replacement is a new pod");
    cluster.act(&p);
    assert_eq!(cluster.names("Pod").len(), 3);
}

#[test]
fn podset_waits_for_a_terminating_pod_before_the_next_step() {
    let rule = rule("podset");
    let mut cluster = Cluster::default();
    let mut ps = parent(
        "app.example.com/v1alpha1",
        "PodSet",
        "ps",
        json!({"replicas": 3}),
    );
    converge(&rule, &ps, &mut cluster);
    ps["spec"]["replicas"] = json!(1);
    let p = step(&rule, &ps, &cluster);
    let victim = p.delete[0].key.name.clone();
    // The API server marks the pod terminating; it is still listed.
    cluster.find_mut("Pod", &victim)["metadata"]["deletionTimestamp"] =
        json!("2026-01-01T00:00:00Z");
    let p = step(&rule, &ps, &cluster);
    assert!(
        p.delete.is_empty() && creates(&p).is_empty(),
        "waits until the deletion is observed"
    );
}

#[test]
fn etcd_scaling_changes_peer_list_and_statefulset_together() {
    let rule = rule("etcdcluster");
    let mut cluster = Cluster::default();
    let mut etcd = parent(
        "mycompany.com/v1alpha1",
        "EtcdCluster",
        "e",
        json!({"version": "3.5.9", "replicas": 3, "storageSize": "1Gi"}),
    );
    etcd["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    cluster.act(&step(&rule, &etcd, &cluster));
    etcd["spec"]["replicas"] = json!(5);
    let p = step(&rule, &etcd, &cluster);
    let updated: Vec<&str> = p
        .apply
        .iter()
        .filter(|d| d.action == Action::Update)
        .map(|d| meta::kind(&d.object))
        .collect();
    assert_eq!(updated, ["ConfigMap", "StatefulSet"]);
    cluster.act(&p);
    let peers = cluster.find("ConfigMap", "e-config").unwrap()["data"]["ETCD_INITIAL_CLUSTER"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(peers.split(',').count(), 5);
    assert!(peers.contains("e-4=http://e-4.e.ns.svc:2380"));
    assert_eq!(
        cluster.find("StatefulSet", "e").unwrap()["spec"]["replicas"],
        5
    );
}

#[test]
fn etcd_backup_cronjob_appears_and_disappears_with_the_schedule() {
    let rule = rule("etcdcluster");
    let mut cluster = Cluster::default();
    let mut etcd = parent(
        "mycompany.com/v1alpha1",
        "EtcdCluster",
        "e",
        json!({"version": "3.5.9", "replicas": 3}),
    );
    etcd["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    cluster.act(&step(&rule, &etcd, &cluster));
    assert!(cluster.find("CronJob", "e-backup").is_none());
    etcd["spec"]["backupSchedule"] = json!("0 2 * * *");
    let p = step(&rule, &etcd, &cluster);
    assert_eq!(creates(&p), ["e-backup"]);
    cluster.act(&p);
    assert_eq!(
        cluster.find("CronJob", "e-backup").unwrap()["spec"]["schedule"],
        "0 2 * * *"
    );
    etcd["spec"]
        .as_object_mut()
        .unwrap()
        .remove("backupSchedule");
    let p = step(&rule, &etcd, &cluster);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.delete[0].key.name, "e-backup");
    assert!(p.apply.iter().all(|d| meta::kind(&d.object) != "CronJob"));
}

#[test]
fn finalizer_is_added_before_anything_else_only_when_declared() {
    let etcd = parent(
        "mycompany.com/v1alpha1",
        "EtcdCluster",
        "e",
        json!({"version": "3.5.9", "replicas": 1}),
    );
    assert_eq!(
        step(&rule("etcdcluster"), &etcd, &Cluster::default()).finalizer,
        FinalizerChange::Add
    );
    let mc = parent(
        "cache.example.com/v1alpha1",
        "Memcached",
        "m",
        json!({"size": 1}),
    );
    assert_eq!(
        step(&rule("memcached"), &mc, &Cluster::default()).finalizer,
        FinalizerChange::None
    );
}

#[test]
fn etcd_cleanup_runs_a_final_backup_then_deletes_in_order() {
    let rule = rule("etcdcluster");
    let mut cluster = Cluster::default();
    let mut etcd = parent(
        "mycompany.com/v1alpha1",
        "EtcdCluster",
        "e",
        json!({"version": "3.5.9", "replicas": 3, "backupSchedule": "0 2 * * *"}),
    );
    etcd["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    cluster.act(&step(&rule, &etcd, &cluster));
    etcd["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");

    let p = step(&rule, &etcd, &cluster);
    assert_eq!(creates(&p), ["e-final-backup"]);
    assert!(p.delete.is_empty());
    assert_eq!(ready(&p).1, "Deleting");
    cluster.act(&p);

    let p = step(&rule, &etcd, &cluster);
    assert_eq!(writes(&p), 0, "waits for the backup Job to succeed");
    assert_eq!(p.finalizer, FinalizerChange::None);
    assert!(p.requeue_after.is_some());

    cluster.find_mut("Job", "e-final-backup")["status"] = json!({"succeeded": 1});
    let mut order = Vec::new();
    for _ in 0..2 {
        let p = step(&rule, &etcd, &cluster);
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.finalizer, FinalizerChange::None);
        order.push(p.delete[0].key.kind.clone());
        cluster.act(&p);
    }
    assert_eq!(order, ["CronJob", "StatefulSet"]);
    let p = step(&rule, &etcd, &cluster);
    assert_eq!(p.finalizer, FinalizerChange::Remove);
    assert!(p.apply.is_empty() && p.delete.is_empty());
}

#[test]
fn cleanup_gives_up_after_its_timeout() {
    let rule = rule("etcdcluster");
    let mut cluster = Cluster::default();
    let mut etcd = parent(
        "mycompany.com/v1alpha1",
        "EtcdCluster",
        "e",
        json!({"version": "3.5.9", "replicas": 1}),
    );
    etcd["metadata"]["finalizers"] = json!([meta::FINALIZER]);
    etcd["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    cluster.act(&step(&rule, &etcd, &cluster));
    let later: Timestamp = "2026-01-01T00:06:00Z".parse().unwrap();
    let p = plan(
        &rule,
        Input {
            parent: &etcd,
            observed: &cluster.objects,
            now: later,
            schemas: None,
        },
    );
    assert!(p.events.iter().any(|e| e.reason == "CleanupTimedOut"));
}
