//! `ruleop diff` against the local control plane: a converged rule shows no change (exit 0);
//! a template change shows the exact field diff of every affected parent (exit 1); neither
//! run writes anything (audit log, resourceVersions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use support::operator::Operator;
use support::{TestEnv, audit, kubectl, wait_for};

const T: Duration = Duration::from_secs(90);

fn rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/authoring")
}

fn diff(rule: &Path, ns: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruleop"))
        .args(["diff", "--rule", rule.to_str().unwrap(), "-n", ns])
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `Kind/name resourceVersion` of every ConfigMap and Shelf in the namespace.
fn versions(env: &TestEnv) -> Vec<String> {
    let list: Json =
        serde_json::from_str(&env.kubectl(&["get", "configmaps,shelves", "-o", "json"])).unwrap();
    let mut v: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
                o["metadata"]["resourceVersion"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

fn managed_configmaps(env: &TestEnv) -> Vec<String> {
    let out = env.kubectl(&[
        "get",
        "configmaps",
        "-l",
        "ruleop.dev/rule=shelf",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut names: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_the_exact_changes_and_writes_nothing() {
    let crds = rules().join("crds");
    kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        crds.to_str().unwrap(),
    ]);
    let env = TestEnv::new("diff").await;
    let ns = env.ns.clone();
    let mut op = Operator::start_with_rules(&ns, &rules(), &[]);
    env.apply_yaml(
        "apiVersion: library.example.org/v1\nkind: Shelf\nmetadata: {name: a}\nspec: {books: [Dune, Emma]}\n---\n\
         apiVersion: library.example.org/v1\nkind: Shelf\nmetadata: {name: b}\nspec: {books: [Ulysses], label: classics}\n---\n\
         apiVersion: library.example.org/v1\nkind: Shelf\nmetadata: {name: c}\nspec: {books: [Kim], index: true}\n",
    );
    let expected = ["a-book-0", "a-book-1", "b-book-0", "c-book-0", "c-index"];
    wait_for("every shelf's children and status", T, || async {
        managed_configmaps(&env) == expected
            && ["a", "b", "c"].iter().all(|s| {
                env.try_kubectl(&["get", "shelf", s, "-o", "jsonpath={.status.books}"])
                    .is_ok_and(|b| !b.is_empty() && b != "0")
            })
    })
    .await;
    // Converged: stop the operator so that every write after the mark would be diff's.
    wait_for("the operator idle", T, || async {
        let mark = audit::Mark::now();
        std::thread::sleep(Duration::from_secs(2));
        mark.operator_writes(&ns).is_empty()
    })
    .await;
    op.stop();
    let before = versions(&env);
    let mark = audit::Mark::now();

    let (code, out, err) = diff(&rules().join("shelf.yaml"), &ns);
    assert_eq!(code, 0, "no change: exit 0\n{out}{err}");
    assert_eq!(out, "0 of 3 parents change\n", "{err}");

    // A template change that affects shelves without a label only.
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("shelf.yaml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(rules().join("shelf.yaml"))
            .unwrap()
            .replace(r#"default("none")"#, r#"default("unlabelled")"#),
    )
    .unwrap();
    let (code, out, err) = diff(&changed, &ns);
    assert_eq!(code, 1, "changes: exit 1\n{out}{err}");
    let field = r#"      ~ data.label: "none" -> "unlabelled""#;
    assert_eq!(
        out,
        format!(
            "Shelf/{ns}/a:\n  ~ update ConfigMap/{ns}/a-book-0\n{field}\n  ~ update ConfigMap/{ns}/a-book-1\n{field}\n\
             Shelf/{ns}/c:\n  ~ update ConfigMap/{ns}/c-book-0\n{field}\n\
             2 of 3 parents change: 3 ConfigMaps updated\n"
        ),
        "{err}"
    );

    // A broken rule is an error (exit 2), not a verdict.
    std::fs::write(&changed, "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\n").unwrap();
    let (code, _, _) = diff(&changed, &ns);
    assert_eq!(code, 2);

    let writes: Vec<audit::Write> = mark
        .writes()
        .into_iter()
        .filter(|w| w.by_operator())
        .collect();
    assert!(
        writes.is_empty(),
        "diff wrote: {}",
        audit::describe(&writes)
    );
    assert_eq!(versions(&env), before, "no object changed");
    assert_eq!(managed_configmaps(&env), expected);
}
