//! End to end: the operator follows its rules directory live. The directory is managed exactly
//! as the kubelet's atomic writer manages a mounted ConfigMap (timestamped directory, `..data`
//! symlink swap, one top-level link per file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::operator::{Operator, install_crds, jsonpath, ready, root, sample};
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(60);

/// A directory written the way the kubelet writes a ConfigMap volume.
struct AtomicDir {
    dir: PathBuf,
    generation: u32,
    files: Vec<String>,
}

impl AtomicDir {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        AtomicDir {
            dir: dir.to_path_buf(),
            generation: 0,
            files: Vec::new(),
        }
    }

    /// Publishes `files` as the new content, atomically.
    fn publish(&mut self, files: &BTreeMap<&str, String>) {
        self.generation += 1;
        let ts = format!("..2026_11_21_00_00_00.{}", self.generation);
        let ts_dir = self.dir.join(&ts);
        std::fs::create_dir(&ts_dir).unwrap();
        for (name, content) in files {
            std::fs::write(ts_dir.join(name), content).unwrap();
        }
        let old_target = std::fs::read_link(self.dir.join("..data")).ok();
        std::os::unix::fs::symlink(&ts, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        for name in files.keys() {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        for old in &self.files {
            if !files.contains_key(old.as_str()) {
                std::fs::remove_file(self.dir.join(old)).unwrap();
            }
        }
        self.files = files.keys().map(|k| k.to_string()).collect();
        if let Some(old) = old_target {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

fn rule(op: &str) -> String {
    std::fs::read_to_string(root().join(format!("rules/{op}.yaml"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_follow_the_mounted_configmap() {
    install_crds();
    let env = TestEnv::new("e2e-reload").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = AtomicDir::new(&tmp.path().join("rules"));
    let memcached = rule("memcached");
    let etcd = rule("etcdcluster");
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", memcached.clone()),
        ("etcdcluster.yaml", etcd.clone()),
    ]));
    let op = Operator::start_with_rules(&env.ns, &rules.dir, &[]);

    env.apply_yaml(&sample("memcached"));
    env.apply_yaml(&sample("etcdcluster"));
    wait_for("Memcached Ready", T, || async {
        ready(&env, "memcached", "example-memcached").0 == "True"
    })
    .await;
    wait_for("EtcdCluster has its finalizer", T, || async {
        jsonpath(&env, "etcdcluster", "prod-etcd", "{.metadata.finalizers}")
            .contains("ruleop.dev/cleanup")
    })
    .await;

    // A MyApp exists before its rule does; adding the rule reconciles it.
    env.apply_yaml(&sample("myapp"));
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", memcached.clone()),
        ("etcdcluster.yaml", etcd.clone()),
        ("myapp.yaml", rule("myapp")),
    ]));
    wait_for("added rule reconciles its CRs", T, || async {
        ready(&env, "myapp", "myapp-sample").0 == "True"
    })
    .await;

    // A changed template reaches every Deployment.
    let v2 = memcached.replace("image: memcached:1.4.36", "image: memcached:1.6.38");
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", v2.clone()),
        ("etcdcluster.yaml", etcd.clone()),
        ("myapp.yaml", rule("myapp")),
    ]));
    wait_for("Deployment image updated", T, || async {
        jsonpath(
            &env,
            "deployment",
            "example-memcached",
            "{.spec.template.spec.containers[0].image}",
        ) == "memcached:1.6.38"
    })
    .await;

    // A broken rule: the error is reported and the last good version keeps working.
    let errors_before = op.counter("ruleop_rule_load_errors_total", "");
    let broken = v2.replace(
        "replicas: {{ parent.spec.size }}",
        "replicas: {{ parent.spec.size",
    );
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", broken),
        ("etcdcluster.yaml", etcd.clone()),
        ("myapp.yaml", rule("myapp")),
    ]));
    wait_for("error reported", T, || async {
        op.counter("ruleop_rule_load_errors_total", "") > errors_before
            && op.log().contains("template does not compile")
    })
    .await;
    assert!(
        op.log().contains("memcached.yaml:"),
        "the error names the file and line"
    );
    env.kubectl(&[
        "patch",
        "memcached",
        "example-memcached",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":2}}"#,
    ]);
    wait_for("old version still reconciles", T, || async {
        jsonpath(&env, "deployment", "example-memcached", "{.spec.replicas}") == "2"
    })
    .await;

    // Fixed: the new version takes over.
    let v3 = v2.replace("image: memcached:1.6.38", "image: memcached:1.6.39");
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", v3),
        ("etcdcluster.yaml", etcd.clone()),
        ("myapp.yaml", rule("myapp")),
    ]));
    wait_for("fixed rule applies", T, || async {
        jsonpath(
            &env,
            "deployment",
            "example-memcached",
            "{.spec.template.spec.containers[0].image}",
        ) == "memcached:1.6.39"
    })
    .await;

    // Removing a rule with a finalizer leaves no parent stuck; its children stay.
    rules.publish(&BTreeMap::from([
        ("memcached.yaml", memcached.clone()),
        ("myapp.yaml", rule("myapp")),
    ]));
    wait_for("finalizer released", T, || async {
        !jsonpath(&env, "etcdcluster", "prod-etcd", "{.metadata.finalizers}")
            .contains("ruleop.dev/cleanup")
    })
    .await;
    env.kubectl(&["delete", "etcdcluster", "prod-etcd", "--timeout=30s"]);
    assert!(op.log().contains("rules loaded"), "one log line per reload");
    let metrics = op.metrics();
    assert!(
        metrics.contains("ruleop_rule_info{rule=\"memcached\""),
        "{metrics}"
    );
    assert!(
        !metrics.contains("rule=\"etcdcluster\",hash"),
        "removed rule leaves the active set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_follow_a_configmap_read_through_the_api() {
    install_crds();
    let env = TestEnv::new("e2e-rulecm").await;
    let memcached = rule("memcached");
    let write_cm = |content: &str| {
        let mut cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rules"}, "data": {}});
        cm["data"]["memcached.yaml"] = content.into();
        env.apply_yaml(&serde_json::to_string(&cm).unwrap());
    };
    write_cm(&memcached);
    let source = format!("{}/rules", env.ns);
    let _op = Operator::start_with_rules(
        &env.ns,
        &root().join("rules"),
        &["--rules-configmap", &source],
    );
    env.apply_yaml(&sample("memcached"));
    wait_for("Memcached Ready", T, || async {
        ready(&env, "memcached", "example-memcached").0 == "True"
    })
    .await;
    write_cm(&memcached.replace("image: memcached:1.4.36", "image: memcached:1.6.38"));
    wait_for("Deployment follows the ConfigMap", T, || async {
        jsonpath(
            &env,
            "deployment",
            "example-memcached",
            "{.spec.template.spec.containers[0].image}",
        ) == "memcached:1.6.38"
    })
    .await;
    // Only the ConfigMap's rules run: the directory passed with --rules is ignored.
    env.apply_yaml(&sample("myapp"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ready(&env, "myapp", "myapp-sample").0,
        "",
        "no rule for MyApp in the ConfigMap"
    );
}
