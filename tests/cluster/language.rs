//! End to end: the language features on the local control plane with the test rule
//! `tests/rules/language/crew.yaml`: a lookup that is missing (failure status), then created
//! (its watch reconciles the parent), a cluster-scoped Theme looked up by a namespaced parent
//! whose change re-renders the children, and a collection whose middle item is removed.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use support::audit;
use support::operator::{Operator, jsonpath, ready, root};
use support::{Scope, TestEnv, install_crds_at, kubectl, live_uids, wait_for};

const T: Duration = Duration::from_secs(120);
const IDLE: Duration = Duration::from_secs(6);
/// The Crew kind by its full name: the ownership tests serve a Crew of their own on the same
/// control plane, and `kubectl get crew` would pick one of the two.
const CREW: &str = "crews.language.test.ruleop.dev";

fn install_language_crds() {
    install_crds_at(&root().join("tests/rules/language/crds"));
}

/// `Kind/name` → uid of every live object the crew rule labelled in the namespace.
fn children(env: &TestEnv) -> BTreeMap<String, String> {
    live_uids(
        Scope::Namespace(&env.ns),
        "configmaps,secrets",
        Some("ruleop.dev/rule=crew"),
    )
}

fn names(map: &BTreeMap<String, String>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

fn crew(workers: &[&str], theme: &str) -> String {
    let workers: Vec<String> = workers
        .iter()
        .map(|w| format!("{{name: {w}, image: img-{w}}}"))
        .collect();
    format!(
        "apiVersion: language.test.ruleop.dev/v1\nkind: Crew\nmetadata: {{name: crew}}\nspec:\n  settingsRef: settings\n  theme: {theme}\n  workers: [{}]\n",
        workers.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_watched_and_a_collection_loses_exactly_its_removed_item() {
    install_language_crds();
    let env = TestEnv::new("e2e-language").await;
    // Themes are cluster-scoped: a name of this test's own.
    let theme = format!("theme-{}", env.ns);
    kubectl(&["delete", "theme", &theme, "--ignore-not-found"]);
    env.delete_on_drop("theme", &theme);
    kubectl_apply(&format!(
        "apiVersion: language.test.ruleop.dev/v1\nkind: Theme\nmetadata: {{name: {theme}}}\nspec: {{color: teal}}\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let rule: PathBuf = root().join("tests/rules/language/crew.yaml");
    std::fs::copy(&rule, dir.path().join("crew.yaml")).unwrap();
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);

    // The settings ConfigMap does not exist yet: a failure, with the onFailure fields.
    env.apply_yaml(&crew(&["a", "b", "c"], &theme));
    wait_for("LookupMissing with phase Error", T, || async {
        ready(&env, CREW, "crew").1 == "LookupMissing"
            && jsonpath(&env, CREW, "crew", "{.status.phase}") == "Error"
    })
    .await;
    assert!(children(&env).is_empty(), "{:?}", children(&env));

    // Creating it is a watch event on a looked-up kind: the parent goes on by itself.
    env.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {token: t0}\n",
    );
    wait_for("Crew Ready", T, || async {
        ready(&env, CREW, "crew").0 == "True"
    })
    .await;
    let before = children(&env);
    assert_eq!(
        names(&before),
        [
            "ConfigMap/crew-a",
            "ConfigMap/crew-b",
            "ConfigMap/crew-c",
            "Secret/crew-token"
        ],
        "{}",
        op.log()
    );
    assert_eq!(jsonpath(&env, CREW, "crew", "{.status.phase}"), "Running");
    assert_eq!(
        jsonpath(&env, "configmap", "crew-a", "{.data.banner}"),
        "medium/teal"
    );

    // A change of the cluster-scoped Theme reaches the namespaced parent that reads it.
    kubectl(&[
        "patch",
        "theme",
        &theme,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"color":"plum"}}"#,
    ]);
    wait_for("banner follows the theme", T, || async {
        jsonpath(&env, "configmap", "crew-c", "{.data.banner}") == "medium/plum"
    })
    .await;

    // The middle worker goes: exactly its ConfigMap is deleted; the others keep their uid.
    env.apply_yaml(&crew(&["a", "c"], &theme));
    wait_for("crew-b deleted", T, || async {
        !children(&env).contains_key("ConfigMap/crew-b")
    })
    .await;
    wait_for("Crew Ready again", T, || async {
        ready(&env, CREW, "crew").0 == "True"
    })
    .await;
    let after = children(&env);
    let mut expected = before.clone();
    expected.remove("ConfigMap/crew-b");
    assert_eq!(after, expected, "same objects, same uids");
    assert_eq!(
        jsonpath(&env, CREW, "crew", "{.status.workers}"),
        r#"["img-a","img-c"]"#
    );

    // Idle: nothing more is written.
    audit::assert_no_writes("idle", IDLE, |w| w.namespace == env.ns).await;
}

fn kubectl_apply(yaml: &str) {
    support::kubectl_with_input(&["apply", "-f", "-"], Some(yaml));
}
