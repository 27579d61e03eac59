//! `deploy/` stays in sync with `rules/` and passes a server-side dry run against the local
//! control plane (`hack/deploy-check.sh`, the same script as `make deploy-check`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

#[test]
fn deploy_manifests_pass_a_server_side_dry_run() {
    let out = Command::new("bash")
        .arg("hack/deploy-check.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
