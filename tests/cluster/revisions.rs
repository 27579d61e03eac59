//! End to end: rule revisions as cluster objects. Each distinct content of a rule becomes a
//! `RuleRevision` (refused edits too), numbered on across restarts; parents carry the revision
//! that last planned them as the label `ruleop.dev/revision`, written once per revision change;
//! an edit of whitespace, comments or key order creates and writes nothing.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::operator::{Operator, jsonpath, ready, root};
use support::{TestEnv, audit, kubectl, try_kubectl, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(8);
const SHELVES: [&str; 3] = ["s1", "s2", "s3"];
const CRD: &str = "crds/ruleop.dev_rulerevisions.yaml";

/// Writes `content` to `file` the way an editor saves: a temporary file renamed over it.
fn save(file: &Path, content: &str) {
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The RuleRevision `name` as JSON, if it exists.
fn revision(name: &str) -> Option<serde_json::Value> {
    try_kubectl(
        &["get", "rulerevisions.ruleop.dev", name, "-o", "json"],
        None,
    )
    .ok()
    .map(|s| serde_json::from_str(&s).unwrap())
}

/// The numbers of the rule's RuleRevisions, sorted.
fn numbers(rule: &str) -> Vec<u64> {
    let out = kubectl(&[
        "get",
        "rulerevisions.ruleop.dev",
        "-l",
        &format!("ruleop.dev/rule={rule}"),
        "-o",
        "jsonpath={.items[*].spec.revision}",
    ]);
    let mut n: Vec<u64> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    n.sort();
    n
}

fn condition(rev: &serde_json::Value, type_: &str) -> serde_json::Value {
    rev["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default()
}

/// Whether revision `name` is in `state` with `parents` parents, all Ready.
fn shows(name: &str, state: &str, parents: u64) -> bool {
    revision(name).is_some_and(|r| {
        r["status"]["state"] == state
            && r["status"]["parents"] == parents
            && r["status"]["ready"] == parents
    })
}

fn labels(env: &TestEnv) -> Vec<String> {
    SHELVES
        .iter()
        .map(|s| {
            jsonpath(
                env,
                "shelves.revisions.test.ruleop.dev",
                s,
                "{.metadata.labels.ruleop\\.dev/revision}",
            )
        })
        .collect()
}

fn edition(env: &TestEnv, shelf: &str) -> String {
    jsonpath(
        env,
        "configmap",
        &format!("{shelf}-label"),
        "{.data.edition}",
    )
}

/// The operator's writes to the Shelves' metadata (not their status) after `mark`.
fn metadata_writes(mark: &audit::Mark, env: &TestEnv) -> Vec<audit::Write> {
    mark.operator_writes_where(|w| {
        w.namespace == env.ns && w.resource == "shelves" && w.subresource.is_empty()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_recorded_pinned_and_numbered_on() {
    // The CRD is installed (once per run, shared with the other test here), and passes a
    // server-side dry run (after the install: a dry-run create racing the other test's
    // install would find it existing).
    support::install_crds_at(&root().join(CRD));
    let dry = support::kubectl_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&std::fs::read_to_string(root().join(CRD)).unwrap()),
    );
    assert!(dry.contains("(server dry run)"), "{dry}");
    support::install_crds_at(&root().join("tests/rules/revisions/crds"));
    let env = TestEnv::new("e2e-revisions").await;
    // A rule name of this run only: RuleRevisions are cluster-scoped.
    let rule = format!("shelf-{}", unique_suffix());
    let v1 = std::fs::read_to_string(root().join("tests/rules/revisions/shelf.yaml"))
        .unwrap()
        .replace("name: shelf\n", &format!("name: {rule}\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shelf.yaml");
    save(&file, &v1);
    let cleanup = || {
        let _ = try_kubectl(
            &[
                "delete",
                "rulerevisions.ruleop.dev",
                "-l",
                &format!("ruleop.dev/rule={rule}"),
                "--wait=false",
            ],
            None,
        );
    };
    let args = ["--revisions=true"];
    let op = Operator::start_with_rules(&env.ns, dir.path(), &args);
    for s in SHELVES {
        env.apply_yaml(&format!(
            "apiVersion: revisions.test.ruleop.dev/v1\nkind: Shelf\nmetadata: {{name: {s}}}\nspec: {{title: t-{s}}}\n"
        ));
    }

    // Loading the rule created revision 1, Accepted and Active; every parent is on it.
    let r1 = format!("{rule}-1");
    wait_for("revision 1 Active with 3 Ready parents", T, || async {
        shows(&r1, "Active", 3) && labels(&env) == ["1", "1", "1"]
    })
    .await;
    let rev1 = revision(&r1).unwrap();
    assert_eq!(rev1["spec"]["ruleName"], rule.as_str());
    assert_eq!(rev1["spec"]["revision"], 1);
    assert_eq!(rev1["spec"]["text"], v1.as_str());
    assert!(
        rev1["spec"]["source"]
            .as_str()
            .unwrap()
            .ends_with("shelf.yaml")
    );
    assert!(
        rev1["spec"]["contentHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(condition(&rev1, "Accepted")["status"], "True");
    assert_eq!(condition(&rev1, "Active")["status"], "True");
    for s in SHELVES {
        assert_eq!(
            ready(&env, "shelves.revisions.test.ruleop.dev", s).0,
            "True"
        );
    }
    // The spec is immutable: the API server refuses a change.
    let refused = try_kubectl(
        &[
            "patch",
            "rulerevisions.ruleop.dev",
            &r1,
            "--type=merge",
            "-p",
            r#"{"spec":{"text":"changed"}}"#,
        ],
        None,
    )
    .unwrap_err();
    assert!(refused.contains("immutable"), "{refused}");
    // The printer columns.
    let table = kubectl(&[
        "get",
        "rulerevisions.ruleop.dev",
        "-l",
        &format!("ruleop.dev/rule={rule}"),
    ]);
    for column in ["RULE", "REVISION", "STATE", "PARENTS", "READY", "AGE"] {
        assert!(table.contains(column), "{table}");
    }
    // Settled: nothing is written while nothing changes (revision status included).
    audit::assert_no_writes("revision 1 settled", IDLE, |w| {
        w.namespace == env.ns || op.sent(w)
    })
    .await;

    // An edit: revision 2; each parent's label is written once, the children follow.
    let mark = audit::Mark::now();
    let v2 = v1.replace("edition: \"1\"", "edition: \"2\"");
    save(&file, &v2);
    let r2 = format!("{rule}-2");
    wait_for("revision 2 Active, parents on it", T, || async {
        shows(&r2, "Active", 3)
            && labels(&env) == ["2", "2", "2"]
            && SHELVES.iter().all(|s| edition(&env, s) == "2")
            && shows(&r1, "Inactive", 0)
    })
    .await;
    let selected = env.kubectl(&[
        "get",
        "shelves.revisions.test.ruleop.dev",
        "-l",
        "ruleop.dev/revision=2",
        "-o",
        "name",
    ]);
    assert_eq!(selected.lines().count(), 3, "{selected}");
    let writes = metadata_writes(&mark, &env);
    let mut patched: Vec<&str> = writes.iter().map(|w| w.name.as_str()).collect();
    patched.sort();
    assert_eq!(
        patched,
        SHELVES,
        "one label write per parent:\n{}",
        audit::describe(&writes)
    );

    // Whitespace, a comment and key order: the same revision; nothing created or written.
    let mark = audit::Mark::now();
    let reloads = op.log().matches("rules loaded").count();
    let reordered = format!(
        "# the same rule, reformatted\nkind:   Rule\n{}\n",
        v2.replacen("kind: Rule\n", "", 1)
            .replace("allow:\n", "allow:   # children it may create\n")
    );
    assert_ne!(reordered, v2);
    save(&file, &reordered);
    wait_for("the reformatted rule is loaded", T, || async {
        op.log().matches("rules loaded").count() > reloads
    })
    .await;
    tokio::time::sleep(IDLE).await;
    let writes = mark.operator_writes_where(|w| w.namespace == env.ns || op.sent(w));
    assert!(
        writes.is_empty(),
        "a reformatted rule writes nothing:\n{}",
        audit::describe(&writes)
    );
    assert_eq!(numbers(&rule), [1, 2]);

    // A restart continues: the same content is revision 2 again, and nothing is written.
    drop(op);
    let op = Operator::start_with_rules(&env.ns, dir.path(), &args);
    wait_for("restarted operator ready", T, || async {
        op.http_get("/readyz").contains("200 OK")
    })
    .await;
    audit::assert_no_writes("restarted on the same revision", IDLE, |w| {
        w.namespace == env.ns || op.sent(w)
    })
    .await;
    assert_eq!(numbers(&rule), [1, 2]);
    let v3 = v2.replace("edition: \"2\"", "edition: \"3\"");
    save(&file, &v3);
    let r3 = format!("{rule}-3");
    wait_for("revision 3 (not 1) after the restart", T, || async {
        shows(&r3, "Active", 3)
            && labels(&env) == ["3", "3", "3"]
            && SHELVES.iter().all(|s| edition(&env, s) == "3")
    })
    .await;

    // A broken edit is a revision too: Refused with the file:line error, and an Event; the
    // last good revision keeps running and its children are unchanged.
    let broken = v3.replace(
        "title: \"{{ parent.spec.title }}\"",
        "title: \"{{ parent.spec.title \"",
    );
    save(&file, &broken);
    let r4 = format!("{rule}-4");
    wait_for("revision 4 Refused", T, || async {
        revision(&r4).is_some_and(|r| r["status"]["state"] == "Refused")
    })
    .await;
    let rev4 = revision(&r4).unwrap();
    let accepted = condition(&rev4, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Refused");
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.contains("shelf.yaml:") && message.contains("template"),
        "{message}"
    );
    assert!(
        message.split("shelf.yaml:").nth(1).unwrap().as_bytes()[0].is_ascii_digit(),
        "a line number: {message}"
    );
    assert_eq!(condition(&rev4, "Active")["status"], "False");
    wait_for("a Refused Event on the revision", T, || async {
        kubectl(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            &format!("involvedObject.name={r4}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .contains("Refused")
    })
    .await;
    assert!(shows(&r3, "Active", 3), "{:?}", revision(&r3));
    assert_eq!(labels(&env), ["3", "3", "3"]);
    assert!(SHELVES.iter().all(|s| edition(&env, s) == "3"));
    assert!(
        op.http_get("/readyz").contains("200 OK"),
        "/readyz stays ok"
    );
    // The last good revision still reconciles.
    env.kubectl(&[
        "patch",
        "shelves.revisions.test.ruleop.dev",
        "s1",
        "--type=merge",
        "-p",
        r#"{"spec":{"title":"new"}}"#,
    ]);
    wait_for("the last good revision reconciles", T, || async {
        jsonpath(&env, "configmap", "s1-label", "{.data.title}") == "new"
    })
    .await;
    audit::assert_no_writes("idle after the refused edit", IDLE, |w| {
        w.namespace == env.ns || op.sent(w)
    })
    .await;
    assert_eq!(numbers(&rule), [1, 2, 3, 4]);
    drop(op);
    cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_through_the_configmap_is_a_refused_revision() {
    support::install_crds_at(&root().join(CRD));
    support::install_crds_at(&root().join("tests/rules/revisions/crds"));
    let env = TestEnv::new("e2e-revisions-cm").await;
    let rule = format!("shelf-{}", unique_suffix());
    let v1 = std::fs::read_to_string(root().join("tests/rules/revisions/shelf.yaml"))
        .unwrap()
        .replace("name: shelf\n", &format!("name: {rule}\n"));
    let write_cm = |content: &str| {
        let mut cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rules"}, "data": {}});
        cm["data"]["shelf.yaml"] = content.into();
        env.apply_yaml(&serde_json::to_string(&cm).unwrap());
    };
    write_cm(&v1);
    let empty = tempfile::tempdir().unwrap();
    let source = format!("{}/rules", env.ns);
    let op = Operator::start_with_rules(
        &env.ns,
        empty.path(),
        &["--revisions=true", "--rules-configmap", &source],
    );
    let (r1, r2) = (format!("{rule}-1"), format!("{rule}-2"));
    wait_for("revision 1 Active", T, || async { shows(&r1, "Active", 0) }).await;
    write_cm(&v1.replace("edition: \"1\"", "edition: {{ oops"));
    wait_for("revision 2 Refused", T, || async {
        revision(&r2).is_some_and(|r| r["status"]["state"] == "Refused")
    })
    .await;
    let rev2 = revision(&r2).unwrap();
    let message = condition(&rev2, "Accepted")["message"]
        .as_str()
        .unwrap()
        .to_string();
    let located = format!("configmap/{}/rules/shelf.yaml:", env.ns);
    assert!(message.starts_with(&located), "{message}");
    assert_eq!(
        rev2["spec"]["source"],
        format!("configmap/{}/rules/shelf.yaml", env.ns)
    );
    assert!(shows(&r1, "Active", 0), "{:?}", revision(&r1));
    assert!(
        op.http_get("/readyz").contains("200 OK"),
        "/readyz stays ok"
    );
    drop(op);
    let _ = try_kubectl(
        &[
            "delete",
            "rulerevisions.ruleop.dev",
            "-l",
            &format!("ruleop.dev/rule={rule}"),
            "--wait=false",
        ],
        None,
    );
}
