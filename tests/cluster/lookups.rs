//! Lookups over a list, end to end with `examples/reloader`: each ConfigMap its parent's
//! annotation names is watched and routed, an edit of any one rolls the Deployment exactly
//! once, a missing one stops the rule without deleting anything.

use crate::support;

use std::time::Duration;

use support::examples::{assert_passes_offline, read, rule_file};
use support::operator::{Operator, jsonpath, ready, root, ruleop};
use support::{TestEnv, audit, kubectl_with_input, wait_for};

const T: Duration = Duration::from_secs(90);
const LISTED: [&str; 3] = ["web-settings", "web-features", "shared-banner"];

#[test]
fn reloader_example_passes_check_and_its_rule_tests() {
    assert_passes_offline("reloader");
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    assert!(
        docs.contains("| `reloader` (") && docs.contains("objectNames"),
        "docs/rules.md does not describe list lookups or what examples/reloader cannot express"
    );
}

/// Installs the CRD that `ruleop crd` generates from the example's `spec.crd`.
fn install_generated_crd(name: &str) {
    let (ok, crd) = ruleop(&["crd", "--rule", rule_file(name).to_str().unwrap()]);
    assert!(ok, "ruleop crd {name}: {crd}");
    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    kubectl_with_input(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "-",
        ],
        Some(&crd),
    );
}

/// The operator's writes to the Deployment `web` in `ns` after `mark`.
fn deployment_writes(mark: audit::Mark, ns: &str) -> Vec<audit::Write> {
    mark.operator_writes_where(|w| {
        w.namespace == ns && w.resource == "deployments" && w.name == "web"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_any_listed_configmap_rolls_the_deployment_once() {
    install_generated_crd("reloader");
    let env = TestEnv::new("lookups").await;
    let _op = Operator::start_with_rules(&env.ns, &rule_file("reloader"), &[]);
    let ns = env.ns.clone();
    let hash = || {
        jsonpath(
            &env,
            "deployment",
            "web",
            "{.spec.template.metadata.annotations.reloader\\.ruleop\\.dev/configs-hash}",
        )
    };
    for (i, name) in LISTED.iter().chain(&["unlisted"]).enumerate() {
        env.kubectl(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=K{i}=v0"),
        ]);
    }
    env.apply_yaml(&read("reloader", "sample.yaml"));
    wait_for("ReloadedApp Ready", T, || async {
        ready(&env, "reloadedapp", "web").0 == "True" && hash().len() == 64
    })
    .await;
    assert_eq!(
        jsonpath(
            &env,
            "deployment",
            "web",
            "{.spec.template.spec.containers[0].envFrom[*].configMapRef.name}"
        ),
        LISTED.join(" ")
    );
    audit::assert_no_writes("idle", Duration::from_secs(6), |w| w.namespace == ns).await;

    // Each listed ConfigMap's edit: one new hash, one Deployment write.
    let mut hashes = vec![hash()];
    for (i, name) in LISTED.iter().enumerate() {
        let mark = audit::Mark::now();
        let patch = format!(r#"{{"data":{{"K{i}":"v1"}}}}"#);
        env.kubectl(&["patch", "configmap", name, "--type", "merge", "-p", &patch]);
        let before = hashes.last().unwrap().clone();
        wait_for(
            &format!("{name}'s edit rolls the Deployment"),
            T,
            || async {
                let now = hash();
                now.len() == 64 && now != before
            },
        )
        .await;
        hashes.push(hash());
        // Settled: nothing more follows the edit.
        audit::assert_no_writes("after the edit", Duration::from_secs(4), |w| {
            w.namespace == ns && w.resource == "deployments"
        })
        .await;
        let writes = deployment_writes(mark, &ns);
        assert_eq!(
            writes.len(),
            1,
            "{name}: not exactly one Deployment write:\n{}",
            audit::describe(&writes)
        );
    }
    let distinct: std::collections::BTreeSet<&String> = hashes.iter().collect();
    assert_eq!(distinct.len(), 4, "hashes: {hashes:?}");

    // A ConfigMap the annotation does not list: nothing is written.
    let mark = audit::Mark::now();
    env.kubectl(&[
        "patch",
        "configmap",
        "unlisted",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"K3":"v1"}}"#,
    ]);
    audit::assert_no_writes("unlisted edit", Duration::from_secs(6), |w| {
        w.namespace == ns
    })
    .await;
    assert!(mark.operator_writes(&ns).is_empty());

    // A listed ConfigMap deleted: LookupMissing naming it, nothing deleted or changed.
    let mark = audit::Mark::now();
    env.kubectl(&["delete", "configmap", "web-features"]);
    wait_for("LookupMissing", T, || async {
        ready(&env, "reloadedapp", "web") == ("False".into(), "LookupMissing".into())
    })
    .await;
    let message = jsonpath(
        &env,
        "reloadedapp",
        "web",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert_eq!(
        message,
        format!("not found: ConfigMap {ns}/web-features (lookup configs)")
    );
    audit::assert_no_writes("while missing", Duration::from_secs(6), |w| {
        w.namespace == ns
    })
    .await;
    let writes = mark.operator_writes(&ns);
    assert!(
        writes
            .iter()
            .all(|w| w.resource == "reloadedapps" && w.subresource == "status"),
        "only the status is written:\n{}",
        audit::describe(&writes)
    );
    assert_eq!(hash(), *hashes.last().unwrap());
    assert!(env.get("deployment", "web").is_some());

    // Back again: Ready, and the Deployment follows the recreated ConfigMap's content.
    env.kubectl(&[
        "create",
        "configmap",
        "web-features",
        "--from-literal=K1=v2",
    ]);
    wait_for("Ready again", T, || async {
        ready(&env, "reloadedapp", "web").0 == "True" && hash() != *hashes.last().unwrap()
    })
    .await;
    audit::assert_no_writes("idle again", Duration::from_secs(6), |w| w.namespace == ns).await;
}
