//! End to end: children the API server defaulted, normalised or extended count as up to
//! date (no writes, no recreation), and hand edits are still put back, including a keyed
//! list entry whose key was edited. Rules and CRDs: `tests/rules/uptodate/`.

use crate::support;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use serde_json::Value as Json;
use support::operator::{Operator, jsonpath, ready, root};
use support::{TestEnv, audit, wait_for};

const T: Duration = Duration::from_secs(90);
/// How long an idle window lasts after the last nudge.
const IDLE: Duration = Duration::from_secs(5);
/// The Gadget kind by its full name: the ownership tests serve a Gadget of their own on the
/// same control plane, and `kubectl get gadget` would pick one of the two.
const GADGET: &str = "gadgets.uptodate.test.ruleop.dev";

fn rules() -> PathBuf {
    root().join("tests/rules/uptodate")
}

/// Installs the test CRDs once, and waits until the API server publishes their schemas.
fn install_crds() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        support::install_crds_at(&rules().join("crds"));
        let published = || {
            support::try_kubectl(
                &[
                    "get",
                    "--raw",
                    "/openapi/v3/apis/uptodate.test.ruleop.dev/v1",
                ],
                None,
            )
            .is_ok_and(|doc| doc.contains("\"Gadget\""))
        };
        for _ in 0..240 {
            if published() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the Gadget schema was not published in the OpenAPI v3 document");
    });
}

async fn setup(prefix: &str) -> (TestEnv, Operator) {
    install_crds();
    let env = TestEnv::new(prefix).await;
    let op = Operator::start_with_rules(&env.ns, &rules(), &[]);
    (env, op)
}

fn get(env: &TestEnv, what: &str, name: &str) -> Json {
    serde_json::from_str(&env.kubectl(&["get", what, name, "-o", "json"])).unwrap()
}

/// `kind/name` of every object of `kinds` labelled as a child of `parent`.
fn children(env: &TestEnv, kinds: &str, parent: &str, parent_kind: &str) -> Vec<String> {
    let uid = jsonpath(env, parent_kind, parent, "{.metadata.uid}");
    let mut names: Vec<String> = env
        .kubectl(&[
            "get",
            kinds,
            "-l",
            &format!("ruleop.dev/owner={uid}"),
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Nudges the parent (an annotation no template reads) `times` times, so the operator
/// reconciles it, then waits out the idle window; returns how many reconciles ran.
async fn nudge(
    env: &TestEnv,
    op: &Operator,
    rule: &str,
    what: &str,
    name: &str,
    times: u32,
) -> f64 {
    let filter = format!("rule=\"{rule}\"");
    let before = op.counter("ruleop_reconciles_total", &filter);
    for i in 0..times {
        env.kubectl(&["annotate", what, name, &format!("nudge={i}"), "--overwrite"]);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(IDLE).await;
    op.counter("ruleop_reconciles_total", &filter) - before
}

/// No operator writes in the namespace since `mark`, though the parent was reconciled.
async fn assert_idle(env: &TestEnv, op: &Operator, rule: &str, what: &str, name: &str) {
    let mark = audit::Mark::now();
    let reconciles = nudge(env, op, rule, what, name, 3).await;
    assert!(
        reconciles >= 3.0,
        "the nudges were reconciled ({reconciles})"
    );
    let writes = mark.operator_writes(&env.ns);
    assert!(
        writes.is_empty(),
        "reconciling an up-to-date parent writes nothing:\n{}\n--- operator log ---\n{}",
        audit::describe(&writes),
        op.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalised_recreate_children_are_created_once() {
    let (env, op) = setup("e2e-uptodate-runner").await;
    env.apply_yaml(
        "apiVersion: uptodate.test.ruleop.dev/v1\nkind: Runner\nmetadata: {name: r}\n\
         spec: {memory: 1024Mi, word: hello}\n",
    );
    wait_for("Runner Ready", T, || async {
        ready(&env, "runner", "r").0 == "True"
    })
    .await;
    let pod = get(&env, "pod", "r-worker");
    // What the API server did to the rendering, which must not count as a change.
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert!(
        volumes.len() == 2,
        "the token volume was added: {volumes:?}"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "1Gi"
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tolerations.len() == 3,
        "admission appended to the atomic list: {tolerations:?}"
    );
    let uid = |what: &str, name: &str| jsonpath(&env, what, name, "{.metadata.uid}");
    let (pod_uid, job_uid) = (uid("pod", "r-worker"), uid("job", "r-once"));

    assert_idle(&env, &op, "uptodate-runner", "runner", "r").await;
    assert_eq!(uid("pod", "r-worker"), pod_uid, "the Pod was not recreated");
    assert_eq!(uid("job", "r-once"), job_uid, "the Job was not recreated");
    assert_eq!(
        children(&env, "pods,jobs", "r", "runner"),
        ["job.batch/r-once", "pod/r-worker"]
    );

    // A hand edit is still put back although admission keeps the Pod different from the
    // rendering (the skipped no-op apply is only for an object exactly as ruleop left it):
    // in place, since the rendering did not change, and idle again afterwards.
    env.kubectl(&["set", "image", "pod/r-worker", "main=busybox:1.36"]);
    wait_for("the hand-edited image put back", T, || async {
        jsonpath(&env, "pod", "r-worker", "{.spec.containers[0].image}") == "busybox"
    })
    .await;
    assert_eq!(uid("pod", "r-worker"), pod_uid, "put back in place");
    assert_idle(&env, &op, "uptodate-runner", "runner", "r").await;

    // A rendering change recreates the Job (its template changed), and only it.
    env.kubectl(&[
        "patch",
        "runner",
        "r",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"word":"bye"}}"#,
    ]);
    wait_for("Job recreated with the new word", T, || async {
        let j = uid("job", "r-once");
        !j.is_empty()
            && j != job_uid
            && jsonpath(
                &env,
                "job",
                "r-once",
                "{.spec.template.spec.containers[0].args[1]}",
            ) == "bye"
    })
    .await;
    let new_job_uid = uid("job", "r-once");
    assert_idle(&env, &op, "uptodate-runner", "runner", "r").await;
    assert_eq!(uid("job", "r-once"), new_job_uid, "recreated once");
    assert_eq!(
        uid("pod", "r-worker"),
        pod_uid,
        "the Pod's rendering did not change"
    );
    assert_eq!(
        children(&env, "pods,jobs", "r", "runner"),
        ["job.batch/r-once", "pod/r-worker"]
    );
}

fn service_ports(env: &TestEnv) -> Vec<(String, i64)> {
    let svc = get(env, "service", "f");
    let mut ports: Vec<(String, i64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
            )
        })
        .collect();
    ports.sort();
    ports
}

fn field_managers(env: &TestEnv, what: &str, name: &str) -> Vec<String> {
    let o: Json = serde_json::from_str(&env.kubectl(&[
        "get",
        what,
        name,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    o["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_service_port_is_put_back() {
    let (env, op) = setup("e2e-uptodate-frontend").await;
    env.apply_yaml(
        "apiVersion: uptodate.test.ruleop.dev/v1\nkind: Frontend\nmetadata: {name: f}\nspec: {port: 80}\n",
    );
    wait_for("Frontend Ready", T, || async {
        ready(&env, "frontend", "f").0 == "True"
    })
    .await;
    let rendered = vec![("http".to_string(), 80), ("metrics".to_string(), 9090)];
    assert_eq!(service_ports(&env), rendered);
    assert_idle(&env, &op, "uptodate-frontend", "frontend", "f").await;

    env.kubectl(&[
        "patch",
        "service",
        "f",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":81}]"#,
    ]);
    wait_for("the edited port put back", T, || async {
        service_ports(&env) == rendered
    })
    .await;
    wait_for("Frontend Ready again", T, || async {
        ready(&env, "frontend", "f").0 == "True"
    })
    .await;
    assert!(
        !field_managers(&env, "service", "f").contains(&"ruleop-repair".to_string()),
        "the repair leaves no field manager behind: {:?}",
        field_managers(&env, "service", "f")
    );
    assert_idle(&env, &op, "uptodate-frontend", "frontend", "f").await;
    assert_eq!(children(&env, "services", "f", "frontend"), ["service/f"]);

    // The rule still owns the port: a new rendering moves it, leaving no stale entry.
    env.kubectl(&[
        "patch",
        "frontend",
        "f",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"port":82}}"#,
    ]);
    let moved = vec![("http".to_string(), 82), ("metrics".to_string(), 9090)];
    wait_for("the port follows the parent", T, || async {
        service_ports(&env) == moved
    })
    .await;
    assert_idle(&env, &op, "uptodate-frontend", "frontend", "f").await;
    assert_eq!(service_ports(&env), moved);
}

fn bays(env: &TestEnv) -> Vec<(i64, String, String)> {
    let g = get(env, GADGET, "g");
    let mut bays: Vec<(i64, String, String)> = g["spec"]["bays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let s = |f: &str| b[f].as_str().unwrap_or_default().to_string();
            (b["bay"].as_i64().unwrap(), s("label"), s("mode"))
        })
        .collect();
    bays.sort();
    bays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_kinds_lists_compare_by_their_schema_keys() {
    let (env, op) = setup("e2e-uptodate-fleet").await;
    env.apply_yaml(
        "apiVersion: uptodate.test.ruleop.dev/v1\nkind: Fleet\nmetadata: {name: g}\n\
         spec: {bays: [{bay: 1, label: one}, {bay: 2, label: two}]}\n",
    );
    wait_for("Fleet Ready", T, || async {
        ready(&env, "fleet", "g").0 == "True"
    })
    .await;
    // Another manager adds an entry to each list; the server defaults `mode` in entries.
    support::kubectl_with_input(
        &[
            "-n",
            &env.ns,
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            "-",
        ],
        Some(
            "apiVersion: uptodate.test.ruleop.dev/v1\nkind: Gadget\nmetadata: {name: g}\n\
             spec: {bays: [{bay: 9, label: theirs}], tags: [green]}\n",
        ),
    );
    let merged = |first: &str| {
        vec![
            (1, first.to_string(), "auto".to_string()),
            (2, "two".to_string(), "auto".to_string()),
            (9, "theirs".to_string(), "auto".to_string()),
        ]
    };
    assert_eq!(bays(&env), merged("one"));
    assert_idle(&env, &op, "uptodate-fleet", "fleet", "g").await;
    assert_eq!(bays(&env), merged("one"), "the other manager's entry stays");
    let tags = jsonpath(&env, GADGET, "g", "{.spec.tags}");
    assert_eq!(tags, r#"["red","blue","green"]"#);

    // A hand edit inside an entry is put back, by key.
    let at = get(&env, GADGET, "g")["spec"]["bays"]
        .as_array()
        .unwrap()
        .iter()
        .position(|b| b["bay"] == 1)
        .unwrap();
    let mark = audit::Mark::now();
    env.kubectl(&[
        "patch",
        GADGET,
        "g",
        "--type",
        "json",
        "-p",
        &format!(r#"[{{"op":"replace","path":"/spec/bays/{at}/label","value":"hand"}}]"#),
    ]);
    wait_for("the edited label put back", T, || async {
        bays(&env) == merged("one")
    })
    .await;
    let writes = mark.operator_writes(&env.ns);
    assert!(
        writes
            .iter()
            .any(|w| w.resource == "gadgets" && w.verb == "patch"),
        "the operator applied the Gadget: {}",
        audit::describe(&writes)
    );
    assert_idle(&env, &op, "uptodate-fleet", "fleet", "g").await;
    assert_eq!(
        children(&env, GADGET, "g", "fleet"),
        ["gadget.uptodate.test.ruleop.dev/g"]
    );
}
