//! `deploy/` stays in sync with `rules/` and passes a server-side dry run against the local
//! control plane (`hack/deploy-check.sh`, the same script as `make deploy-check`); `crds/` is
//! what `ruleop crd` generates from the rules, and the API server enforces its schemas.

use crate::support;

use std::process::Command;

use support::TestEnv;
use support::operator::{install_crds, root};

/// The reference rules; each carries `spec.crd`, so `crds/<rule>.yaml` is generated.
const RULES: &[&str] = &[
    "etcdcluster",
    "memcached",
    "myapp",
    "nginxserver",
    "podset",
    "whalesay",
];

#[test]
fn deploy_manifests_pass_a_server_side_dry_run() {
    let out = Command::new("bash")
        .arg("hack/deploy-check.sh")
        .current_dir(support::cli::root())
        .env("KUBECONFIG", support::kubeconfig())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for object in [
        "deployment.apps/ruleop",
        "clusterrole.rbac.authorization.k8s.io/ruleop",
        "configmap/ruleop-rules",
    ] {
        assert!(
            text.contains(object) && text.contains("(server dry run)"),
            "{object} not in:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_crds_are_committed_accepted_and_enforced() {
    for rule in RULES {
        let out = Command::new(env!("CARGO_BIN_EXE_ruleop"))
            .args(["crd", "--rule", &format!("rules/{rule}.yaml")])
            .current_dir(root())
            .output()
            .unwrap();
        let generated = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "ruleop crd {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read_to_string(root().join(format!("crds/{rule}.yaml"))).unwrap();
        assert_eq!(
            committed, generated,
            "crds/{rule}.yaml is stale: run make crds"
        );
        let dry = support::kubectl_with_input(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&generated),
        );
        assert!(dry.contains("(server dry run)"), "{rule}: {dry}");
    }
    // The API server enforces each generated schema: what the contract forbids is refused
    // with the field named, defaults are filled in.
    install_crds();
    let env = TestEnv::new("crd-schemas").await;
    let create = |kind: &str, api: &str, spec: &str| {
        let yaml = format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\n{spec}\n");
        support::try_kubectl(
            &[
                "-n",
                &env.ns,
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
            ],
            Some(&yaml),
        )
    };
    let refused = [
        (
            "Memcached",
            "cache.example.com/v1alpha1",
            "spec: {size: 11}",
            "spec.size",
        ),
        (
            "Memcached",
            "cache.example.com/v1alpha1",
            "spec: {size: 0}",
            "spec.size",
        ),
        (
            "PodSet",
            "app.example.com/v1alpha1",
            "spec: {replicas: -1}",
            "spec.replicas",
        ),
        (
            "PodSet",
            "app.example.com/v1alpha1",
            "spec: {}",
            "spec.replicas",
        ),
        (
            "WhaleSay",
            "devsectim.io/v1alpha1",
            "spec: {message: ''}",
            "spec.message",
        ),
        (
            "WhaleSay",
            "devsectim.io/v1alpha1",
            "metadata: {labels: {a: b}}",
            "spec",
        ),
        (
            "MyApp",
            "example.com/v1",
            "spec: {replicas: 1}",
            "spec.image",
        ),
        (
            "NginxServer",
            "web.example.com/v1",
            "spec: {replicas: 11}",
            "spec.replicas",
        ),
        (
            "NginxServer",
            "web.example.com/v1",
            "spec: {image: ''}",
            "spec.image",
        ),
        (
            "EtcdCluster",
            "mycompany.com/v1alpha1",
            "spec: {version: '3.5', replicas: 3}",
            "spec.version",
        ),
        (
            "EtcdCluster",
            "mycompany.com/v1alpha1",
            "spec: {version: 3.5.9, replicas: 3, storageSize: lots}",
            "spec.storageSize",
        ),
        (
            "EtcdCluster",
            "mycompany.com/v1alpha1",
            "spec: {version: 3.5.9, replicas: 3, backupSchedule: never}",
            "spec.backupSchedule",
        ),
    ];
    for (kind, api, spec, field) in refused {
        match create(kind, api, spec) {
            Ok(out) => panic!("{kind} with {spec} was accepted: {out}"),
            Err(e) => assert!(
                e.contains(field),
                "{kind} with {spec}: {field} not named in {e}"
            ),
        }
    }
    let defaulted: serde_json::Value =
        serde_json::from_str(&create("NginxServer", "web.example.com/v1", "spec: {}").unwrap())
            .unwrap();
    assert_eq!(
        defaulted["spec"],
        serde_json::json!({"image": "nginx:latest", "replicas": 1})
    );
    let etcd: serde_json::Value = serde_json::from_str(
        &create(
            "EtcdCluster",
            "mycompany.com/v1alpha1",
            "spec: {version: 3.5.9, replicas: 3}",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(etcd["spec"]["storageSize"], "1Gi");
}
