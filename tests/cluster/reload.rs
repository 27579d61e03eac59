//! End to end: the operator follows its rules directory live. The directory is managed exactly
//! as the kubelet's atomic writer manages a mounted ConfigMap (timestamped directory, `..data`
//! symlink swap, one top-level link per file). Also: a rules directory missing for a moment
//! removes nothing, and a hostile template fails only its own parent.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::operator::{Operator, install_crds, jsonpath, ready, root, sample};
use support::{TestEnv, audit, wait_for};

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

/// Installs the CRDs of the test rules under `tests/rules/<topic>/crds`.
fn install_test_crds(topic: &str) {
    support::install_crds_at(&root().join(format!("tests/rules/{topic}/crds")));
}

fn test_rule(topic: &str, name: &str) -> String {
    std::fs::read_to_string(root().join(format!("tests/rules/{topic}/{name}.yaml"))).unwrap()
}

/// Names of the ConfigMaps that rule `rule` owns in the test namespace, sorted.
fn children_of(env: &TestEnv, rule: &str) -> Vec<String> {
    let out = env.kubectl(&[
        "get",
        "configmaps",
        "-l",
        &format!("ruleop.dev/rule={rule}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut names: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    names.sort();
    names
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
    // Logged once: reading the broken file must not trigger another reload.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(op.log().matches("rule refused").count(), 1, "{}", op.log());
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

/// The rules directory vanishes for a moment, in both ways it happens: moved away and back
/// (a `mv`, a remount), and the kubelet's `..data` link gone. A rule with a finalizer and
/// `onRuleRemoval: DeleteChildren` keeps running: nothing is deleted, no finalizer dropped,
/// nothing written. The operator runs with a relative `--rules` path, which must reload, and
/// one edit is one reload. Only an explicit change of the files removes the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_directory_missing_for_a_moment_removes_nothing() {
    install_test_crds("reload");
    let env = TestEnv::new("e2e-vanish").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = AtomicDir::new(&tmp.path().join("rules"));
    let bookcase = test_rule("reload", "bookcase");
    rules.publish(&BTreeMap::from([("bookcase.yaml", bookcase.clone())]));
    let op = Operator::start_in(&env.ns, tmp.path(), Path::new("rules"), &[]);

    env.apply_yaml(
        "apiVersion: reload.test.ruleop.dev/v1\nkind: Bookcase\nmetadata: {name: s1}\nspec: {books: [dune, emma, ulysses]}\n",
    );
    let expected = ["s1-count", "s1-index"];
    wait_for("Bookcase Ready with its children", T, || async {
        ready(&env, "bookcase", "s1").0 == "True" && children_of(&env, "bookcase") == expected
    })
    .await;
    let finalized = || {
        jsonpath(&env, "bookcase", "s1", "{.metadata.finalizers}").contains("ruleop.dev/cleanup")
    };
    assert!(finalized());

    // A relative --rules reloads, and one edit is one reload.
    let reloads = op.counter("ruleop_rule_reloads_total", "");
    rules.publish(&BTreeMap::from([(
        "bookcase.yaml",
        bookcase.replace("edition: \"1\"", "edition: \"2\""),
    )]));
    wait_for("the edit reaches the child", T, || async {
        jsonpath(&env, "configmap", "s1-index", "{.data.edition}") == "2"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        op.counter("ruleop_rule_reloads_total", ""),
        reloads + 1.0,
        "one edit, one reload (reading the files must not trigger another)"
    );

    let mark = audit::Mark::now();
    let errors = op.counter("ruleop_rule_load_errors_total", "");
    // Moved away: unreadable, an error once, the rule keeps running.
    let away = tmp.path().join("rules.away");
    std::fs::rename(&rules.dir, &away).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(children_of(&env, "bookcase"), expected, "nothing deleted");
    assert!(finalized(), "finalizer kept");
    assert_eq!(
        op.counter("ruleop_rule_load_errors_total", ""),
        errors + 1.0,
        "logged once"
    );
    assert_eq!(
        op.log().matches("the rules they held keep running").count(),
        1,
        "{}",
        op.log()
    );
    std::fs::rename(&away, &rules.dir).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The kubelet's `..data` link gone for a moment: every file link dangles.
    let data = rules.dir.join("..data");
    let target = std::fs::read_link(&data).unwrap();
    std::fs::remove_file(&data).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(children_of(&env, "bookcase"), expected, "nothing deleted");
    assert!(finalized(), "finalizer kept");
    std::os::unix::fs::symlink(&target, &data).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(op.log().contains("rules loaded"), "{}", op.log());

    let writes = mark.operator_writes(&env.ns);
    assert!(
        writes.is_empty(),
        "nothing written while the rules were away:\n{}",
        audit::describe(&writes)
    );
    assert_eq!(ready(&env, "bookcase", "s1").0, "True");
    assert_eq!(
        jsonpath(&env, "configmap", "s1-index", "{.data.edition}"),
        "2",
        "the last good version still runs"
    );

    // An explicit change of the files does remove the rule, with what it asked for.
    rules.publish(&BTreeMap::new());
    wait_for(
        "rule removed: children deleted, finalizer released",
        T,
        || async { children_of(&env, "bookcase").is_empty() && !finalized() },
    )
    .await;
    audit::assert_no_writes("after the removal", Duration::from_secs(5), |w| {
        w.namespace == env.ns
    })
    .await;
}

/// A template that doubles a 1 MiB string 12 times (4 GiB) is `RenderFailed` on its parent;
/// another parent of the same rule and a parent of another rule reconcile normally, and the
/// process stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_template_fails_its_parent_only() {
    install_crds();
    install_test_crds("hostile");
    let env = TestEnv::new("e2e-hostile").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("blob.yaml"), test_rule("hostile", "blob")).unwrap();
    std::fs::write(dir.join("memcached.yaml"), rule("memcached")).unwrap();
    let op = Operator::start_with_rules(&env.ns, &dir, &[]);

    let blob = |name: &str, seed: usize, rounds: u32| {
        format!(
            "apiVersion: hostile.test.ruleop.dev/v1\nkind: Blob\nmetadata: {{name: {name}}}\nspec: {{seedBytes: {seed}, rounds: {rounds}}}\n"
        )
    };
    env.apply_yaml(&blob("bomb", 1 << 20, 12));
    env.apply_yaml(&blob("calm", 8, 3));
    env.apply_yaml(&sample("memcached"));

    wait_for("the hostile parent fails to render", T, || async {
        ready(&env, "blob", "bomb") == ("False".to_string(), "RenderFailed".to_string())
    })
    .await;
    let message = jsonpath(
        &env,
        "blob",
        "bomb",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(message.contains("memory budget"), "{message}");
    wait_for(
        "the calm parent of the same rule gets its child",
        T,
        || async { children_of(&env, "blob") == ["calm-data"] },
    )
    .await;
    assert_eq!(
        jsonpath(&env, "configmap", "calm-data", "{.data.blob}"),
        "x".repeat(64)
    );
    wait_for("another rule's parent reconciles", T, || async {
        ready(&env, "memcached", "example-memcached").0 == "True"
    })
    .await;

    audit::assert_no_writes("hostile", Duration::from_secs(5), |w| w.namespace == env.ns).await;
    assert_eq!(
        children_of(&env, "blob"),
        ["calm-data"],
        "no child for the hostile parent"
    );
    assert!(
        op.metrics().contains("ruleop_rule_info"),
        "the process is up"
    );
    assert!(!op.log().contains("panicked"), "{}", op.log());
}
