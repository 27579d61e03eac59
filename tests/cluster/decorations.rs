//! End to end: decorations (`spec.decorations`) with the pod-name-label example: each Pod
//! of a StatefulSet labelled with its name under ruleop's decoration field manager, put back
//! when removed by hand, other labels and managers untouched, removed when a Pod leaves the
//! selection or the parent goes, never creating an object, and no write while idle.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value as Json, json};

use support::examples::{read, rule_file};
use support::operator::{Operator, jsonpath};
use support::{TestEnv, audit, wait_for};

const T: Duration = Duration::from_secs(120);

fn label(env: &TestEnv, pod: &str, key: &str) -> Option<String> {
    let pod = env.get("pod", pod)?;
    pod.pointer("/metadata/labels")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// The managedFields entries of `pod` by manager.
fn managers(env: &TestEnv, pod: &str) -> BTreeMap<String, Json> {
    let text = env.kubectl(&["get", "pod", pod, "-o", "json", "--show-managed-fields"]);
    let pod: Json = serde_json::from_str(&text).unwrap();
    pod["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// Writes by ruleop to Pods of the namespace since `mark`.
fn pod_writes(mark: &audit::Mark, ns: &str) -> Vec<audit::Write> {
    mark.operator_writes_where(|w| w.namespace == ns && w.resource == "pods")
}

#[tokio::test]
async fn each_pod_of_a_statefulset_is_labelled_with_its_name() {
    let env = TestEnv::new("decorate").await;
    let _op = Operator::start_with_rules(&env.ns, &rule_file("pod-name-label"), &[]);
    env.apply_yaml(&read("pod-name-label", "sample.yaml"));
    let sts_uid = jsonpath(&env, "statefulset", "web", "{.metadata.uid}");
    let manager = format!("ruleop-decorate/pod-name-label/{sts_uid}");

    for pod in ["web-0", "web-1"] {
        wait_for(&format!("{pod} labelled with its name"), T, || async {
            label(&env, pod, "pod-name").as_deref() == Some(pod)
        })
        .await;
    }
    // The rule's children, a Service per Pod, select the Pods by the decorated label.
    assert_eq!(
        jsonpath(&env, "service", "web-1", "{.spec.selector.pod-name}"),
        "web-1"
    );
    // A label of another manager, set by hand after the decoration.
    env.kubectl(&["label", "pod", "web-0", "team=blue"]);

    // Only the decoration manager's own key; other labels and managers untouched.
    let fields = managers(&env, "web-0");
    let ours = &fields[&manager];
    assert_eq!(ours["operation"], "Apply");
    assert_eq!(
        ours["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:pod-name": {}}}}),
        "{ours}"
    );
    for (key, value) in [
        ("app", "web"),
        ("team", "blue"),
        ("apps.kubernetes.io/pod-index", "0"),
    ] {
        assert_eq!(label(&env, "web-0", key).as_deref(), Some(value), "{key}");
    }
    // The hand-set label stays the other manager's (the control plane's own managers wrote
    // the rest).
    assert_eq!(
        fields["kubectl-label"]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:team": {}}}})
    );
    assert!(fields.contains_key("controlplane"), "{fields:?}");
    assert!(!fields.contains_key("ruleop"), "{fields:?}");
    // The StatefulSet got the finalizer that removes the labels, no other write.
    assert_eq!(
        jsonpath(&env, "statefulset", "web", "{.metadata.finalizers}"),
        "[\"ruleop.dev/cleanup\"]"
    );

    // Idle: nothing to write while every Pod is as rendered.
    audit::assert_no_writes("decorated Pods", Duration::from_secs(6), |w| {
        w.namespace == env.ns
    })
    .await;

    // A label removed by hand comes back, with one write.
    let mark = audit::Mark::now();
    env.kubectl(&["label", "pod", "web-1", "pod-name-"]);
    wait_for("web-1 labelled again", T, || async {
        label(&env, "web-1", "pod-name").as_deref() == Some("web-1")
    })
    .await;
    let writes = pod_writes(&mark, &env.ns);
    assert_eq!(writes.len(), 1, "{}", audit::describe(&writes));
    assert_eq!(writes[0].name, "web-1");
    assert_eq!(writes[0].verb, "patch");

    // A Pod that joins the selection is decorated; when it leaves it, it loses only the
    // decoration; deleted, it is never created again.
    env.apply_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: extra, labels: {app: web, keep: me}}\n\
         spec: {containers: [{name: c, image: registry.k8s.io/pause:3.9}]}\n",
    );
    wait_for("extra labelled", T, || async {
        label(&env, "extra", "pod-name").as_deref() == Some("extra")
    })
    .await;
    env.kubectl(&["label", "pod", "extra", "app=elsewhere", "--overwrite"]);
    wait_for("extra's decoration removed", T, || async {
        label(&env, "extra", "pod-name").is_none()
    })
    .await;
    assert_eq!(label(&env, "extra", "keep").as_deref(), Some("me"));
    assert!(!managers(&env, "extra").contains_key(&manager));
    env.kubectl(&["label", "pod", "extra", "app=web", "--overwrite"]);
    wait_for("extra labelled again", T, || async {
        label(&env, "extra", "pod-name").as_deref() == Some("extra")
    })
    .await;
    env.kubectl(&["delete", "pod", "extra", "--grace-period=0", "--force"]);
    wait_for("extra gone", T, || async {
        env.get("pod", "extra").is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        env.get("pod", "extra").is_none(),
        "a decoration created the Pod again"
    );

    // The parent goes, its Pods stay (orphaned): each loses the label, nothing else.
    let mark = audit::Mark::now();
    env.kubectl(&[
        "delete",
        "statefulset",
        "web",
        "--cascade=orphan",
        "--wait=false",
    ]);
    wait_for("StatefulSet gone", T, || async {
        env.get("statefulset", "web").is_none()
    })
    .await;
    for pod in ["web-0", "web-1"] {
        assert_eq!(label(&env, pod, "pod-name"), None, "{pod}");
        assert_eq!(label(&env, pod, "app").as_deref(), Some("web"), "{pod}");
        assert!(!managers(&env, pod).contains_key(&manager), "{pod}");
    }
    assert_eq!(label(&env, "web-0", "team").as_deref(), Some("blue"));
    let writes = pod_writes(&mark, &env.ns);
    assert_eq!(writes.len(), 2, "{}", audit::describe(&writes));
    audit::assert_no_writes("after the parent went", Duration::from_secs(5), |w| {
        w.namespace == env.ns
    })
    .await;
}

/// The guard of decoration writes, on the API server itself: an apply carrying the
/// object's uid never creates a missing object, nor touches another object that took the
/// name; a `resourceVersion` would not do (a create ignores it).
#[tokio::test]
async fn a_decoration_never_creates_its_object() {
    let env = TestEnv::new("decorate-guard").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &kube::api::ApiResource::erase::<ConfigMap>(&()),
    );
    let configmaps: Api<ConfigMap> = env.api();
    let decorate = |name: &str, uid: &str| ruleop_plan::Decorate {
        key: ruleop_schema::meta::ObjectKey {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: env.ns.clone(),
            name: name.into(),
        },
        uid: uid.into(),
        manager: "ruleop-decorate/test/parent".into(),
        labels: BTreeMap::from([("decorated".to_string(), "yes".to_string())]),
        annotations: BTreeMap::new(),
    };

    // Deleted meanwhile: the write is refused, nothing is created.
    let gone = ruleop::apply::decorate::write(
        &api,
        &decorate("gone", "0b4c6f62-0000-4000-8000-000000000000"),
    )
    .await;
    // The API server answers 409 "uid mismatch ... no existing object was found".
    assert!(matches!(gone, Ok(false)), "{gone:?}");
    assert!(
        configmaps.get_opt("gone").await.unwrap().is_none(),
        "created by a decoration"
    );

    // A resourceVersion instead of the uid does not guard: the API server creates.
    let mut body = ruleop::apply::decorate::body(&decorate("by-version", ""));
    body["metadata"].as_object_mut().unwrap().remove("uid");
    body["metadata"]["resourceVersion"] = json!("12345");
    let created = api
        .patch(
            "by-version",
            &PatchParams::apply("test"),
            &Patch::Apply(&body),
        )
        .await;
    assert!(created.is_ok(), "{created:?}");

    // Replaced by another object of the same name: that one is not touched.
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("replaced".into());
    let first = configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let old_uid = first.metadata.uid.unwrap();
    configmaps
        .delete("replaced", &Default::default())
        .await
        .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let stale = ruleop::apply::decorate::write(&api, &decorate("replaced", &old_uid)).await;
    assert!(matches!(stale, Ok(false)), "{stale:?}");
    let now = configmaps.get("replaced").await.unwrap();
    assert!(
        now.metadata.labels.unwrap_or_default().is_empty(),
        "the new object was decorated"
    );

    // The right uid decorates, and an empty apply removes exactly the decoration.
    let uid = now.metadata.uid.unwrap();
    let wrote = ruleop::apply::decorate::write(&api, &decorate("replaced", &uid)).await;
    assert!(matches!(wrote, Ok(true)), "{wrote:?}");
    let labels = configmaps
        .get("replaced")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels.get("decorated").map(String::as_str), Some("yes"));
    let mut removal = decorate("replaced", &uid);
    removal.labels.clear();
    ruleop::apply::decorate::write(&api, &removal)
        .await
        .unwrap();
    let after = configmaps.get("replaced").await.unwrap();
    assert!(after.metadata.labels.unwrap_or_default().is_empty());
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        !managers.iter().any(|m| m.starts_with("ruleop-decorate/")),
        "{managers:?}"
    );
}

/// The ClusterRole `ruleop rbac` prints for the example is enough to decorate: `patch` on
/// Pods, never `create` or `update`.
#[tokio::test]
async fn the_generated_role_is_enough_to_decorate() {
    let env = TestEnv::new("decorate-rbac").await;
    let role = format!("ruleop-decorate-{}", support::unique_suffix());
    let rule = rule_file("pod-name-label");
    let (ok, role_yaml) =
        support::operator::ruleop(&["rbac", "--name", &role, "--rules", rule.to_str().unwrap()]);
    assert!(ok, "{role_yaml}");
    support::kubectl_with_input(&["apply", "-f", "-"], Some(&role_yaml));
    env.delete_on_drop("clusterrole", &role);
    env.kubectl(&["create", "serviceaccount", "ruleop"]);
    let account = format!("{}:ruleop", env.ns);
    support::kubectl(&[
        "create",
        "clusterrolebinding",
        &role,
        "--clusterrole",
        &role,
        "--serviceaccount",
        &account,
    ]);
    env.delete_on_drop("clusterrolebinding", &role);
    let who = format!("--as=system:serviceaccount:{account}");
    let can = |verb: &str| {
        support::try_kubectl(&["auth", "can-i", verb, "pods", "-n", &env.ns, &who], None).is_ok()
    };
    assert!(can("patch") && can("watch") && !can("create") && !can("update") && !can("delete"));

    let token = env.kubectl(&["create", "token", "ruleop", "--duration=1h"]);
    let dir = tempfile::tempdir().unwrap();
    let admin: Json =
        ruleop_lang::yaml::from_str(&std::fs::read_to_string(support::kubeconfig()).unwrap())
            .unwrap();
    let mut config = admin.clone();
    config["users"] = json!([{"name": "sa", "user": {"token": token.trim()}}]);
    config["contexts"][0]["context"]["user"] = json!("sa");
    config["current-context"] = config["contexts"][0]["name"].clone();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, ruleop_lang::yaml::to_string(&config)).unwrap();

    let _op = Operator::start_as(&env.ns, &rule, &[], &kubeconfig);
    env.apply_yaml(&read("pod-name-label", "sample.yaml"));
    for pod in ["web-0", "web-1"] {
        wait_for(
            &format!("{pod} labelled under the generated role"),
            T,
            || async { label(&env, pod, "pod-name").as_deref() == Some(pod) },
        )
        .await;
    }
}
