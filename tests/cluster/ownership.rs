//! End to end: scope and ownership. A cluster-scoped parent owns cluster-scoped children and
//! objects in the namespace it creates; two rules whose children share a name settle; an
//! object that holds a child's name first is never adopted; a child that lost its labels or
//! ownerReference is repaired, not duplicated; a built-in parent keeps the status fields
//! others own (a Deployment's observedGeneration among them: ruleop adds only its condition);
//! a CRD status without conditions gets the fields it declares. `ruleop run` is a real process
//! and its writes are counted in the audit log.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use support::operator::{Operator, jsonpath, ready, root};
use support::{
    Scope, TestEnv, audit, install_crds_at, kubectl, kubectl_with_input, live_names, try_kubectl,
    unique_suffix, wait_for,
};

const T: Duration = Duration::from_secs(90);
/// How long a settled operator must stay without writing.
const IDLE: Duration = Duration::from_secs(10);
/// The test kinds by their full names: other tests on the same control plane serve a Tenant
/// (ship, examples), a Crew (language) and a Gadget (uptodate) of their own, and
/// `kubectl get tenant` would pick one group's.
const TENANT: &str = "tenants.ownership.ruleop.test";
const CREW: &str = "crews.ownership.ruleop.test";
const GADGET: &str = "gadgets.ownership.ruleop.test";

fn rules(dir: &str) -> PathBuf {
    root().join("tests/rules/ownership").join(dir)
}

fn install_crds() {
    install_crds_at(&root().join("tests/rules/ownership/crds.yaml"));
}

/// The object as JSON, `None` when absent (`ns` `None`: cluster-scoped).
fn get(ns: Option<&str>, what: &str, name: &str) -> Option<Json> {
    let mut args = vec!["get", what, name, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    try_kubectl(&args, None)
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap())
}

/// Names of the live `what` objects in `ns` (or cluster-scoped) matching `selector`, sorted.
fn names(ns: Option<&str>, what: &str, selector: Option<&str>) -> Vec<String> {
    live_names(ns.map_or(Scope::Cluster, Scope::Namespace), what, selector)
}

/// Names of the `what` objects labelled as children of the parent with `uid`.
fn children(ns: Option<&str>, what: &str, uid: &str) -> Vec<String> {
    names(ns, what, Some(&format!("ruleop.dev/owner={uid}")))
}

fn uid(obj: &Json) -> String {
    obj["metadata"]["uid"].as_str().unwrap().to_string()
}

/// The uid of the object's controller.
fn controller(obj: &Json) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| r["uid"].as_str().unwrap().to_string())
}

fn managers(obj: &Json) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits, then asserts that ruleop wrote nothing that `keep` selects over an idle window.
async fn assert_quiet(what: &str, keep: impl Fn(&audit::Write) -> bool) {
    audit::assert_no_writes(what, IDLE, keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_owns_its_namespace_cluster_role_and_the_objects_inside() {
    install_crds();
    let env = TestEnv::new("own-tenant").await;
    let name = format!("tenant-{}", unique_suffix());
    let viewer = format!("{name}-viewer");
    env.delete_on_drop(TENANT, &name);
    env.delete_on_drop("namespace", &name);
    env.delete_on_drop("clusterrole", &viewer);
    let op = Operator::start_cluster_wide(&rules("tenant"), &[]);
    kubectl_with_input(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: ownership.ruleop.test/v1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec: {{team: devs, pods: 10}}\n"
        )),
    );
    wait_for("Tenant Ready", T, || async {
        ready(&env, TENANT, &name).0 == "True"
    })
    .await;
    let tenant = uid(&get(None, TENANT, &name).unwrap());

    // Exactly its children, each controlled by the tenant.
    assert_eq!(children(None, "namespaces", &tenant), [name.as_str()]);
    assert_eq!(children(None, "clusterroles", &tenant), [viewer.as_str()]);
    let inside = [
        ("resourcequotas", "quota"),
        ("limitranges", "limits"),
        ("rolebindings", "team-view"),
        ("networkpolicies", "same-namespace-only"),
    ];
    for (what, child) in inside {
        assert_eq!(children(Some(&name), what, &tenant), [child], "{what}");
        let obj = get(Some(&name), what, child).unwrap();
        assert_eq!(controller(&obj).as_deref(), Some(tenant.as_str()), "{what}");
    }
    for (what, child) in [("namespace", &name), ("clusterrole", &viewer)] {
        let obj = get(None, what, child).unwrap();
        assert_eq!(controller(&obj).as_deref(), Some(tenant.as_str()), "{what}");
    }
    assert_eq!(jsonpath(&env, TENANT, &name, "{.status.namespace}"), name);

    // Settled: no write to the tenant, its namespace or anything cluster-scoped (today the
    // namespace was applied and pruned on every reconcile). Only this operator's: other
    // tests' cluster-wide operators write their own cluster-scoped parents meanwhile.
    assert_quiet("tenant", |w| {
        op.sent(w) && (w.namespace == name || w.namespace.is_empty() || w.name == name)
    })
    .await;

    // Garbage collection follows the ownerReferences.
    kubectl(&["delete", TENANT, &name, "--wait=false"]);
    wait_for("the tenant's cluster role and namespace go", T, || async {
        get(None, "clusterrole", &viewer).is_none()
            && get(None, "namespace", &name)
                .is_none_or(|n| !n["metadata"]["deletionTimestamp"].is_null())
    })
    .await;
}

fn apply_parent(env: &TestEnv, kind: &str, name: &str, spec: &str) {
    env.apply_yaml(&format!(
        "apiVersion: ownership.ruleop.test/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rules_whose_children_share_a_name_settle_and_the_first_keeps_it() {
    install_crds();
    let env = TestEnv::new("own-collide").await;
    let ns = Some(env.ns.as_str());
    let _op = Operator::start_with_rules(&env.ns, &rules("collide"), &[]);
    apply_parent(&env, "Alpha", "a", "{configName: shared}");
    wait_for("Alpha Ready", T, || async {
        ready(&env, "alpha", "a").0 == "True"
    })
    .await;
    let alpha = uid(&get(ns, "alpha", "a").unwrap());
    apply_parent(&env, "Beta", "b", "{configName: shared}");
    wait_for("Beta in Conflict, its own ConfigMap made", T, || async {
        ready(&env, "beta", "b") == ("False".into(), "Conflict".into())
            && get(ns, "configmap", "b-own").is_some()
    })
    .await;
    let beta = uid(&get(ns, "beta", "b").unwrap());
    let before = get(ns, "configmap", "shared").unwrap();
    assert_eq!(controller(&before).as_deref(), Some(alpha.as_str()));
    assert_eq!(before["data"]["writer"], "alpha");

    // Settled: nothing written, and the ConfigMap never changed hands.
    assert_quiet("colliding rules", |w| w.namespace == env.ns).await;
    let after = get(ns, "configmap", "shared").unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(
        after["metadata"]["ownerReferences"],
        before["metadata"]["ownerReferences"]
    );
    assert_eq!(
        names(ns, "configmaps", None),
        ["b-own", "kube-root-ca.crt", "shared"]
    );
    assert_eq!(children(ns, "configmaps", &alpha), ["shared"]);
    assert_eq!(children(ns, "configmaps", &beta), ["b-own"]);

    // Once Alpha and its ConfigMap are gone, Beta makes it.
    env.kubectl(&["delete", "alpha", "a", "--wait=false"]);
    wait_for("Beta owns shared and is Ready", T, || async {
        get(ns, "configmap", "shared")
            .is_some_and(|cm| controller(&cm).as_deref() == Some(beta.as_str()))
            && ready(&env, "beta", "b").0 == "True"
    })
    .await;
    assert_eq!(children(ns, "configmaps", &beta), ["b-own", "shared"]);
    assert_eq!(
        get(ns, "configmap", "shared").unwrap()["data"]["writer"],
        "beta"
    );
}

/// A pod like the Crew's members (so taking it over would need no change to its spec).
fn member_like_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: squatter}}}}\nspec:\n  containers: [{{name: main, image: busybox, command: [sleep, \"3600\"]}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_holding_a_childs_name_first_are_never_adopted() {
    install_crds();
    let env = TestEnv::new("own-foreign").await;
    let ns = Some(env.ns.as_str());
    // Made before the Crew, with the names of its member 1 and its settings: a kind ruleop
    // watches in full (Pods are related objects) and one it watches for its objects only.
    env.apply_yaml(&member_like_pod("c-member-1"));
    env.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c-settings}\ndata: {owner: someone}\n",
    );
    let foreign_pod = get(ns, "pod", "c-member-1").unwrap();
    let _op = Operator::start_with_rules(&env.ns, &rules("crew"), &[]);
    apply_parent(&env, "Crew", "c", "{members: 2}");
    wait_for("Crew in Conflict with member 0 made", T, || async {
        ready(&env, CREW, "c") == ("False".into(), "Conflict".into())
            && jsonpath(&env, CREW, "c", "{.status.members}") == r#"["c-member-0"]"#
    })
    .await;
    let crew = uid(&get(ns, CREW, "c").unwrap());
    let message = jsonpath(
        &env,
        CREW,
        "c",
        r#"{.status.conditions[?(@.type=="Ready")].message}"#,
    );
    for key in ["c-member-1", "c-settings"] {
        assert!(message.contains(key), "{message}");
    }

    assert_quiet("crew with foreign objects", |w| w.namespace == env.ns).await;
    for (what, name) in [("pod", "c-member-1"), ("configmap", "c-settings")] {
        let obj = get(ns, what, name).unwrap();
        assert!(
            obj["metadata"]["ownerReferences"].is_null(),
            "{what} {name} was adopted: {obj}"
        );
        let labels = obj["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            labels.keys().all(|k| k == "app"),
            "{what} {name} got labels: {labels:?}"
        );
        assert!(!managers(&obj).contains(&"ruleop".to_string()), "{obj}");
    }
    let pod = get(ns, "pod", "c-member-1").unwrap();
    assert_eq!(uid(&pod), uid(&foreign_pod));
    assert_eq!(
        get(ns, "configmap", "c-settings").unwrap()["data"]["owner"],
        "someone"
    );
    assert_eq!(names(ns, "pods", None), ["c-member-0", "c-member-1"]);
    assert_eq!(children(ns, "pods", &crew), ["c-member-0"]);
    assert!(children(ns, "configmaps", &crew).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_that_lost_labels_or_owner_reference_are_repaired_not_duplicated() {
    install_crds();
    let env = TestEnv::new("own-repair").await;
    let ns = Some(env.ns.as_str());
    let _op = Operator::start_with_rules(&env.ns, &rules("crew"), &[]);
    apply_parent(&env, "Crew", "c", "{members: 3}");
    wait_for("Crew Ready", T, || async {
        ready(&env, CREW, "c").0 == "True"
    })
    .await;
    let crew = uid(&get(ns, CREW, "c").unwrap());
    let members = ["c-member-0", "c-member-1", "c-member-2"];
    let uids: Vec<String> = members
        .iter()
        .map(|m| uid(&get(ns, "pod", m).unwrap()))
        .collect();
    let settings = uid(&get(ns, "configmap", "c-settings").unwrap());

    // The owner label of member 1 and the ownerReference of member 2 removed by hand, and
    // every ruleop label of the settings (it leaves ruleop's label-filtered watch).
    env.kubectl(&["label", "pod", "c-member-1", "ruleop.dev/owner-"]);
    env.kubectl(&[
        "patch",
        "pod",
        "c-member-2",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ]);
    env.kubectl(&[
        "label",
        "configmap",
        "c-settings",
        "app.kubernetes.io/managed-by-",
        "ruleop.dev/owner-",
        "ruleop.dev/rule-",
        "ruleop.dev/child-",
    ]);
    wait_for("labels and ownerReference repaired", T, || async {
        let owner = |what: &str, name: &str| {
            get(ns, what, name).is_some_and(|o| {
                o["metadata"]["labels"]["ruleop.dev/owner"] == crew.as_str()
                    && controller(&o).as_deref() == Some(crew.as_str())
            })
        };
        owner("pod", "c-member-1") && owner("pod", "c-member-2") && owner("configmap", "c-settings")
    })
    .await;
    wait_for("Crew Ready again", T, || async {
        ready(&env, CREW, "c").0 == "True"
    })
    .await;

    // The same objects, none added.
    assert_eq!(names(ns, "pods", None), members);
    for (m, u) in members.iter().zip(&uids) {
        assert_eq!(&uid(&get(ns, "pod", m).unwrap()), u, "{m} was replaced");
    }
    assert_eq!(children(ns, "pods", &crew), members);
    assert_eq!(
        names(ns, "configmaps", None),
        ["c-settings", "kube-root-ca.crt"]
    );
    assert_eq!(uid(&get(ns, "configmap", "c-settings").unwrap()), settings);
    assert_quiet("repaired crew", |w| w.namespace == env.ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_governed_by_a_rule_keeps_its_phase() {
    // The Namespace rule governs every namespace, so its test runs alone (in the whole binary).
    let env = TestEnv::alone("own-ns").await;
    let ns = Some(env.ns.as_str());
    kubectl(&["label", "namespace", &env.ns, "team=blue"]);
    let _op = Operator::start_cluster_wide(&rules("namespace"), &[]);
    wait_for("the Namespace Ready with its team", T, || async {
        ready(&env, "namespace", &env.ns).0 == "True"
            && jsonpath(
                &env,
                "namespace",
                &env.ns,
                r#"{.status.conditions[?(@.type=="TeamAssigned")].message}"#,
            ) == "blue"
    })
    .await;
    let namespace = get(None, "namespace", &env.ns).unwrap();
    assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");
    assert_eq!(children(ns, "configmaps", &uid(&namespace)), ["team"]);
    let team = get(ns, "configmap", "team").unwrap();
    assert_eq!(controller(&team), Some(uid(&namespace)));

    assert_quiet("namespace rule", |w| {
        w.namespace == env.ns || w.name == env.ns
    })
    .await;
    assert_eq!(
        jsonpath(&env, "namespace", &env.ns, "{.status.phase}"),
        "Active"
    );
}

/// ruleop's status writes to `resource` in `ns` since `mark`: (all of them, the refused ones).
fn status_writes(mark: audit::Mark, ns: &str, resource: &str) -> (usize, Vec<audit::Write>) {
    let writes: Vec<audit::Write> = mark
        .writes()
        .into_iter()
        .filter(|w| {
            w.by_operator()
                && w.namespace == ns
                && w.resource == resource
                && w.subresource == "status"
        })
        .collect();
    let refused = writes.iter().filter(|w| !w.succeeded()).cloned().collect();
    (writes.len(), refused)
}

/// The fields of the parent's status ruleop's field manager owns (`f:` keys of `f:status`).
fn ruleop_status_fields(obj: &Json) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] == "ruleop" && m["subresource"] == "status")
        .flat_map(|m| {
            m["fieldsV1"]["f:status"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_gets_ruleops_condition_and_keeps_its_own_status() {
    let env = TestEnv::new("own-deploy").await;
    let mark = audit::Mark::now();
    let _op = Operator::start_with_rules(&env.ns, &rules("deployment"), &[]);
    let deployment = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec: {{containers: [{{name: web, image: \"{image}\"}}]}}\n"
        )
    };
    env.apply_yaml(&deployment("nginx:1"));
    let ns = Some(env.ns.as_str());
    let observed = |generation: &str| {
        jsonpath(&env, "deployment", "web", "{.status.observedGeneration}") == generation
    };
    wait_for(
        "web Ready beside the Deployment controller's status",
        T,
        || async {
            ready(&env, "deployment", "web").0 == "True"
                && observed("1")
                && get(ns, "configmap", "web-image")
                    .is_some_and(|c| c["data"]["image"] == "nginx:1")
        },
    )
    .await;
    let web = get(ns, "deployment", "web").unwrap();
    let conditions = web["status"]["conditions"].as_array().unwrap();
    let ready_condition = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
    // DeploymentCondition has no observedGeneration; the projected `image` has no place.
    assert!(ready_condition.get("observedGeneration").is_none(), "{web}");
    assert!(web["status"].get("image").is_none(), "{web}");
    // The Deployment controller's own condition stays beside ruleop's.
    assert!(
        conditions.iter().any(|c| c["type"] == "Progressing"),
        "{web}"
    );
    // ruleop owns its condition, never the controller's observedGeneration.
    let managed = kubectl(&[
        "get",
        "-n",
        &env.ns,
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let managed: Json = serde_json::from_str(&managed).unwrap();
    assert_eq!(
        ruleop_status_fields(&managed),
        ["f:conditions"],
        "{managed}"
    );

    // A new generation: the Deployment controller's observedGeneration follows it, ruleop's
    // condition and child follow the spec.
    env.apply_yaml(&deployment("nginx:2"));
    wait_for("the second generation observed", T, || async {
        observed("2")
            && get(ns, "configmap", "web-image").is_some_and(|c| c["data"]["image"] == "nginx:2")
            && ready(&env, "deployment", "web").0 == "True"
    })
    .await;
    let (written, refused) = status_writes(mark, &env.ns, "deployments");
    assert!(
        written > 0 && refused.is_empty(),
        "{}",
        audit::describe(&refused)
    );
    assert_quiet("deployment rule", |w| w.namespace == env.ns).await;
    assert_eq!(
        jsonpath(&env, "deployment", "web", "{.status.observedGeneration}"),
        jsonpath(&env, "deployment", "web", "{.metadata.generation}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_status_without_conditions_gets_the_fields_it_declares() {
    install_crds();
    let env = TestEnv::new("own-gadget").await;
    let mark = audit::Mark::now();
    let _op = Operator::start_with_rules(&env.ns, &rules("gadget"), &[]);
    let gadget = |size: u32| {
        format!(
            "apiVersion: ownership.ruleop.test/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec: {{size: {size}}}\n"
        )
    };
    env.apply_yaml(&gadget(3));
    let ns = Some(env.ns.as_str());
    let status = || get(ns, GADGET, "g").map(|g| g["status"].clone());
    wait_for("the declared status fields written", T, || async {
        status().is_some_and(|s| s["secretName"] == "g-token" && s["size"] == 6)
    })
    .await;
    // Exactly the declared fields: no conditions, observedGeneration or undeclared field.
    let written = status().unwrap();
    assert_eq!(written.as_object().unwrap().len(), 2, "{written}");
    env.apply_yaml(&gadget(5));
    wait_for("the status follows the spec", T, || async {
        status().is_some_and(|s| s["size"] == 10)
    })
    .await;
    let (count, refused) = status_writes(mark, &env.ns, "gadgets");
    assert!(
        count > 0 && refused.is_empty(),
        "{}",
        audit::describe(&refused)
    );
    assert_quiet("gadget rule", |w| w.namespace == env.ns).await;
}
