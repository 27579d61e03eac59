//! Proves the local control plane (tests/controlplane, `make controlplane`)
//! behaves like a real cluster for what ruleop's end-to-end tests need: CRDs
//! with a status subresource, Deployments, StatefulSets with volumes, Jobs,
//! CronJobs, garbage collection and RBAC for service-account tokens.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use support::{TestEnv, wait_for, wait_for_ok};

const T60: Duration = Duration::from_secs(60);
const T90: Duration = Duration::from_secs(90);

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_deref())
}

fn is_forbidden(res: Result<impl std::fmt::Debug, kube::Error>) -> bool {
    matches!(res, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_serves_custom_resources_with_status_subresource() {
    let env = TestEnv::new("crd").await;
    // Cluster-scoped CRD: give it a group unique to this test run.
    let group = format!("t{}.ruleop.test", support::unique_suffix());
    let crd_name = format!("widgets.{group}");
    env.delete_on_drop("customresourcedefinition", &crd_name);
    support::kubectl_with_input(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, minimum: 1, maximum: 10}}
          status:
            type: object
            properties:
              phase: {{type: string}}
              observed: {{type: integer}}
"#
        )),
    );
    support::kubectl(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/{crd_name}"),
        "--timeout=60s",
    ]);
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let crd = crds.get(&crd_name).await.unwrap();
    assert_eq!(crd.spec.names.kind, "Widget");

    // kubectl: create a custom resource, and schema validation rejects a bad one.
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{size: 3}}\n"
    ));
    let bad = support::try_kubectl(
        &["-n", &env.ns, "apply", "-f", "-"],
        Some(&format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w2}}\nspec: {{size: 11}}\n"
        )),
    );
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("spec.size")),
        "size 11 must be rejected by the schema: {bad:?}"
    );

    // kube: read it back dynamically, patch its status subresource.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &ar);
    let w = widgets.get("w1").await.unwrap();
    assert_eq!(w.data["spec"]["size"], 3);
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready", "observed": 3}})),
        )
        .await
        .unwrap();
    let w = widgets.get_status("w1").await.unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["status"]["observed"], 3);

    // With a status subresource, status written through the main resource is ignored.
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}, "status": {"phase": "Bogus"}})),
        )
        .await
        .unwrap();
    let out = env.kubectl(&[
        "get",
        "wdg",
        "w1",
        "-o",
        "jsonpath={.spec.size} {.status.phase}",
    ]);
    assert_eq!(out, "4 Ready");

    // kubectl can patch the status subresource too.
    env.kubectl(&[
        "patch",
        &format!("widgets.{group}"),
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Done"}}"#,
    ]);
    let w = widgets.get("w1").await.unwrap();
    assert_eq!(w.data["status"]["phase"], "Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_reaches_three_ready_pods() {
    let env = TestEnv::new("deploy").await;
    let deployments: Api<Deployment> = env.api();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "name": "http"}]}]}
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    wait_for_ok("deployment web: 3 ready replicas", T90, || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let st = d.status.unwrap_or_default();
        match (st.ready_replicas, st.available_replicas) {
            (Some(3), Some(3)) => Ok(()),
            other => Err(format!("ready/available = {other:?}")),
        }
    })
    .await;

    let pods: Api<Pod> = env.api();
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    for p in &list.items {
        assert_eq!(phase(p), "Running");
        assert!(is_ready(p), "pod not Ready: {:?}", p.status);
        assert!(pod_ip(p).is_some_and(|ip| !ip.is_empty()), "no pod IP");
        assert!(
            p.spec.as_ref().unwrap().node_name.is_some(),
            "pod not scheduled"
        );
    }
    // kubectl agrees.
    env.kubectl(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    let ready = env.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(ready, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_with_volume_claims_comes_up() {
    let env = TestEnv::new("sts").await;
    env.apply_yaml(
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: peer, port: 2380}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: etcd
        image: quay.io/coreos/etcd:v3.5.0
        volumeMounts: [{name: data, mountPath: /var/lib/etcd}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#,
    );
    let sets: Api<StatefulSet> = env.api();
    wait_for_ok("statefulset db: 3 ready replicas", T90, || async {
        let s = sets.get("db").await.map_err(|e| e.to_string())?;
        let st = s.status.unwrap_or_default();
        if st.ready_replicas == Some(3) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await;

    let pods: Api<Pod> = env.api();
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .iter()
        .inspect(|p| assert!(is_ready(p) && phase(p) == "Running", "{:?}", p.status))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);

    let pvcs: Api<PersistentVolumeClaim> = env.api();
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    for i in 0..3 {
        let pvc = pvcs.get(&format!("data-db-{i}")).await.unwrap();
        let st = pvc.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Bound"));
        assert_eq!(
            pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("standard")
        );
        let pv = pvs
            .get(pvc.spec.unwrap().volume_name.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
    }
    let phases = env.kubectl(&["get", "pvc", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(phases, "Bound Bound Bound");
}

fn job_manifest(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 1,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "say", "image": "docker/whalesay", "command": ["cowsay", "hi"]}]
            }}
        }
    })
}

fn job_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes() {
    let env = TestEnv::new("job").await;
    let jobs: Api<Job> = env.api();
    let job: Job = serde_json::from_value(job_manifest("hello")).unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();

    env.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/hello",
        "--timeout=90s",
    ]);
    let job = jobs.get("hello").await.unwrap();
    assert!(job_complete(&job));
    assert_eq!(job.status.as_ref().unwrap().succeeded, Some(1));

    let pods: Api<Pod> = env.api();
    let list = pods
        .list(&ListParams::default().labels("job-name=hello"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(phase(&list.items[0]), "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_creates_jobs() {
    let env = TestEnv::new("cron").await;
    let cronjobs: Api<CronJob> = env.api();
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "backup"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": job_manifest("unused")["spec"].clone()}
        }
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cj).await.unwrap();

    // A Job created from the CronJob's template runs to completion ...
    env.kubectl(&["create", "job", "--from=cronjob/backup", "backup-manual"]);
    env.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/backup-manual",
        "--timeout=90s",
    ]);

    // ... and the cronjob controller itself starts one on schedule (within a minute).
    let jobs: Api<Job> = env.api();
    let scheduled =
        wait_for_ok("a scheduled job owned by cronjob backup", T90, || async {
            let list = jobs
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|j| {
                    j.metadata.owner_references.as_ref().is_some_and(|o| {
                        o.iter().any(|o| o.kind == "CronJob" && o.name == "backup")
                    }) && j.metadata.name.as_deref() != Some("backup-manual")
                })
                .ok_or_else(|| "no scheduled job yet".to_string())
        })
        .await;
    let name = scheduled.metadata.name.unwrap();
    wait_for(
        &format!("scheduled job {name} to complete"),
        T60,
        || async { jobs.get(&name).await.is_ok_and(|j| job_complete(&j)) },
    )
    .await;
    let cj = cronjobs.get("backup").await.unwrap();
    assert!(cj.status.unwrap().last_schedule_time.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_owner_garbage_collects_dependents() {
    let env = TestEnv::new("gc").await;
    let cms: Api<ConfigMap> = env.api();
    let secrets: Api<Secret> = env.api();

    // Explicit ownerReferences: a ConfigMap owns a ConfigMap and a Secret.
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let oref = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap(), "controller": true, "blockOwnerDeletion": true
    }]);
    let dep_cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": oref}}))
            .unwrap();
    let dep_secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": oref}}))
            .unwrap();
    cms.create(&PostParams::default(), &dep_cm).await.unwrap();
    secrets
        .create(&PostParams::default(), &dep_secret)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        "dependents of the deleted owner to be collected",
        T60,
        || async {
            cms.get_opt("dep").await.is_ok_and(|o| o.is_none())
                && secrets.get_opt("dep").await.is_ok_and(|o| o.is_none())
        },
    )
    .await;

    // Controllers' children: a Deployment's ReplicaSet and Pods go with it.
    env.kubectl(&[
        "create",
        "deployment",
        "app",
        "--image=nginx",
        "--replicas=2",
    ]);
    env.kubectl(&["rollout", "status", "deployment/app", "--timeout=90s"]);
    let rss: Api<ReplicaSet> = env.api();
    let pods: Api<Pod> = env.api();
    let lp = ListParams::default().labels("app=app");
    assert_eq!(rss.list(&lp).await.unwrap().items.len(), 1);
    assert_eq!(pods.list(&lp).await.unwrap().items.len(), 2);
    let deployments: Api<Deployment> = env.api();
    deployments
        .delete("app", &DeleteParams::background())
        .await
        .unwrap();
    wait_for_ok(
        "replicaset and pods of deployment app to be collected",
        T60,
        || async {
            let r = rss.list(&lp).await.map_err(|e| e.to_string())?.items.len();
            let p = pods.list(&lp).await.map_err(|e| e.to_string())?.items.len();
            if r == 0 && p == 0 {
                Ok(())
            } else {
                Err(format!("{r} replicasets, {p} pods left"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_is_limited_by_rbac() {
    let env = TestEnv::new("rbac").await;
    let ns = env.ns.clone();
    env.apply_yaml(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmap-reader}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader}
subjects: [{kind: ServiceAccount, name: reader}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: visible}
data: {k: v}
"#,
    );

    // A token from the TokenRequest API (kube) and one from `kubectl create token`.
    let sas: Api<ServiceAccount> = env.api();
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).unwrap();
    let tr = sas
        .create_token_request("reader", &PostParams::default(), &tr)
        .await
        .unwrap();
    let token_api = tr
        .status
        .unwrap()
        .token
        .expect("token in TokenRequest status");
    let token_kubectl = env.kubectl(&["create", "token", "reader", "--duration=1h"]);
    let token_kubectl = token_kubectl.trim();
    assert!(!token_kubectl.is_empty());

    for token in [token_api.as_str(), token_kubectl] {
        let client = support::client_with_token(token).await;
        // The token authenticates as the service account.
        let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
        let review = reviews
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .unwrap();
        let user = review.status.unwrap().user_info.unwrap();
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{ns}:reader").as_str())
        );

        // What the Role grants works ...
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm = cms.get("visible").await.unwrap();
        assert_eq!(cm.data.unwrap()["k"], "v");
        // ... and everything else is forbidden.
        assert!(
            is_forbidden(cms.list(&ListParams::default()).await),
            "list configmaps"
        );
        let new_cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "nope"}})).unwrap();
        assert!(
            is_forbidden(cms.create(&PostParams::default(), &new_cm).await),
            "create configmap"
        );
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        assert!(is_forbidden(secrets.get("anything").await), "get secret");
        let other: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        assert!(
            is_forbidden(other.get("kube-root-ca.crt").await),
            "other namespace"
        );
    }

    // kubectl's view of the same RBAC rules.
    let sa = format!("system:serviceaccount:{ns}:reader");
    assert_eq!(
        env.kubectl(&["auth", "can-i", "get", "configmaps", "--as", &sa])
            .trim(),
        "yes"
    );
    let denied = env.try_kubectl(&["auth", "can-i", "list", "configmaps", "--as", &sa]);
    assert!(denied.is_err_and(|e| e.contains("no")));
}
