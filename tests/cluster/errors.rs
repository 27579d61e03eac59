//! End to end: rules whose CRD appears later, manifests the API server rejects, and two
//! children that render one object.

use crate::support;

use std::time::Duration;

use support::operator::{Operator, jsonpath, ready};
use support::{TestEnv, audit, kubectl_with_input, unique_suffix, wait_for};

const T: Duration = Duration::from_secs(60);
/// How long a settled operator is watched for writes.
const IDLE: Duration = Duration::from_secs(10);
/// How soon a parent shows the status its fixed CRD allows (a discovery tick and a
/// reconcile; well under the 20 s a timer retry once took).
const FIXED_CRD: Duration = Duration::from_secs(12);

/// A CRD of kind `Widget` in a group unique to this test, and a rule for it.
fn widget(group: &str, data_value: &str) -> (String, String) {
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#
    );
    let rule = format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: widget}}
spec:
  parent: {{apiVersion: {group}/v1, kind: Widget}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  children:
    - name: config
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: {{{{ parent.metadata.name }}}}}}
        data: {{value: {data_value}}}
"#
    );
    (crd, rule)
}

/// Installs the Widget CRD of `group` (deleted with `env`) and waits until it is served.
fn install_crd(env: &TestEnv, group: &str, crd: &str) {
    kubectl_with_input(&["apply", "-f", "-"], Some(crd));
    env.delete_on_drop("crd", &format!("widgets.{group}"));
    support::kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/widgets.{group}"),
    ]);
}

/// A directory holding `rule` as the operator's only rule file.
fn rules_dir(rule: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("widget.yaml"), rule).unwrap();
    dir
}

/// `rule` with a validation that `spec.value` is text (reason `NotText`, `message`).
fn requiring_text(rule: &str, message: &str) -> String {
    rule.replace(
        "  children:\n",
        &format!(
            "  validate:\n    - rule: parent.spec.value is string\n      reason: NotText\n      message: {message}\n  children:\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_waits_for_its_crd_and_starts_without_a_restart() {
    let env = TestEnv::new("e2e-latecrd").await;
    let group = format!("late{}.test.ruleop.dev", unique_suffix());
    let (crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    let dir = rules_dir(&rule);
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    wait_for("the wait is logged", T, || async {
        op.log().contains("rule waiting for its kinds")
    })
    .await;
    assert!(
        op.metrics().contains("state=\"waiting\""),
        "the wait shows in metrics"
    );

    kubectl_with_input(&["apply", "-f", "-"], Some(&crd));
    env.delete_on_drop("crd", &format!("widgets.{group}"));
    wait_for("rule active", T, || async {
        op.log().contains("rule active")
    })
    .await;
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{value: hello}}\n"
    ));
    wait_for("child created", T, || async {
        jsonpath(&env, "configmap", "w1", "{.data.value}") == "hello"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_manifest_is_reported_without_a_hot_loop_or_blocking_others() {
    let env = TestEnv::new("e2e-reject").await;
    let group = format!("rej{}.test.ruleop.dev", unique_suffix());
    // A number in ConfigMap data: the API server rejects it; a string is fine.
    let (crd, rule) = widget(&group, "{{ parent.spec.value }}");
    install_crd(&env, &group, &crd);
    let dir = rules_dir(&rule);
    let op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: bad}}\nspec: {{value: 42}}\n"
    ));
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: good}}\nspec: {{value: fine}}\n"
    ));
    wait_for("the rejection reported", T, || async {
        jsonpath(
            &env,
            &format!("widgets.{group}"),
            "bad",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "False"
    })
    .await;
    let reason = jsonpath(
        &env,
        &format!("widgets.{group}"),
        "bad",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    );
    let message = jsonpath(
        &env,
        &format!("widgets.{group}"),
        "bad",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(reason == "Invalid", "reason {reason}: {message}");
    assert!(
        message.contains("ConfigMap") && message.contains("bad"),
        "the API server's message: {message}"
    );
    wait_for("the good parent is not blocked", T, || async {
        jsonpath(&env, "configmap", "good", "{.data.value}") == "fine"
    })
    .await;
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=bad",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Invalid"), "{events}");
    let before = op.counter("ruleop_reconciles_total", "rule=\"widget\"");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = op.counter("ruleop_reconciles_total", "rule=\"widget\"");
    assert!(
        after - before <= 1.0,
        "no hot loop: {before} -> {after} reconciles in 5 s"
    );
}

/// A Warning repeated while its cause lasts is one Event whose series counts the repeats
/// (not one Event per reconcile), and a different message is an Event of its own. The rule
/// is unlike the reference ones: a `validate` over free-form data, no children created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_warning_is_counted_on_one_event() {
    let env = TestEnv::new("e2e-series").await;
    let group = format!("ser{}.test.ruleop.dev", unique_suffix());
    let (crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    let rule = requiring_text(&rule, "\"value must be text, got {{ parent.spec.value }}\"");
    install_crd(&env, &group, &crd);
    let dir = rules_dir(&rule);
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    let widgets = format!("widgets.{group}");
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {{value: 42}}\n"
    ));
    // (note, series count) of the NotText Events about w.
    let warnings = || {
        let list: serde_json::Value = serde_json::from_str(&env.kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=w,reason=NotText",
            "-o",
            "json",
        ]))
        .unwrap();
        let mut found: Vec<(String, i64)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let count = e["series"]["count"].as_i64().unwrap_or(1);
                (e["note"].as_str().unwrap_or("").to_string(), count)
            })
            .collect();
        found.sort();
        found
    };
    wait_for("the first warning", T, || async { warnings().len() == 1 }).await;
    // Label changes reconcile the parent, still invalid the same way: not a new occurrence
    // (the parent shows it already), so not announced again, and neither is the echo of its
    // own status write.
    for i in 0..2 {
        env.kubectl(&[
            "label",
            "--overwrite",
            &widgets,
            "w",
            &format!("touch=t{i}"),
        ]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let value = |v: &str| {
        env.kubectl(&[
            "patch",
            &widgets,
            "w",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"value":{v}}}}}"#),
        ]);
    };
    assert_eq!(warnings(), [("value must be text, got 42".to_string(), 1)]);
    // Fixed, then broken the same way again: a second occurrence, counted on the first Event.
    value(r#""fine""#);
    wait_for("the fixed parent Ready", T, || async {
        support::operator::ready(&env, &widgets, "w").0 == "True"
    })
    .await;
    value("42");
    wait_for("the repeat counted", T, || async {
        warnings().first().is_some_and(|w| w.1 == 2)
    })
    .await;
    // Another message is another Event; the first one's count stops.
    value("43");
    wait_for("the new message recorded", T, || async {
        warnings().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        warnings(),
        [
            ("value must be text, got 42".to_string(), 2),
            ("value must be text, got 43".to_string(), 1)
        ]
    );
}

/// A status the API server refuses (the CRD types a status field otherwise than the rule
/// writes it) still shows on the parent: `Ready=False` with reason `StatusRefused` and the
/// server's message, announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_status_shows_on_the_parent() {
    let env = TestEnv::new("e2e-refused").await;
    let group = format!("ref{}.test.ruleop.dev", unique_suffix());
    let (crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    let open = "          x-kubernetes-preserve-unknown-fields: true\n";
    let crd = crd.replace(
        open,
        &format!(
            "{open}          properties:\n            status:\n              type: object\n\
             {open_status}              properties: {{count: {{type: string}}}}\n",
            open_status = "              x-kubernetes-preserve-unknown-fields: true\n"
        ),
    );
    let rule = format!("{rule}  status:\n    fields:\n      count: {{expr: \"1\"}}\n");
    install_crd(&env, &group, &crd);
    let dir = rules_dir(&rule);
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    let widgets = format!("widgets.{group}");
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {{value: hello}}\n"
    ));
    wait_for("Ready=False StatusRefused on the parent", T, || async {
        support::operator::ready(&env, &widgets, "w") == ("False".into(), "StatusRefused".into())
    })
    .await;
    let message = jsonpath(
        &env,
        &widgets,
        "w",
        r#"{.status.conditions[?(@.type=="Ready")].message}"#,
    );
    assert!(message.contains("status.count"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = env.kubectl(&[
        "get",
        "events.events.k8s.io",
        "--field-selector",
        "regarding.name=w,reason=StatusRefused",
        "-o",
        "jsonpath={.items[*].series.count}",
    ]);
    assert_eq!(
        events.trim(),
        "",
        "one StatusRefused Event, counted once: {events:?}"
    );
    assert_eq!(
        env.kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=w,reason=StatusRefused",
            "-o",
            "name",
        ])
        .lines()
        .count(),
        1
    );
    // The CRD fixed (its status open): the parent is retried within seconds (the CRD's
    // published schema changed), not on a timer, with nothing else changing.
    let fixed = std::time::Instant::now();
    install_crd(&env, &group, &widget(&group, "").0);
    wait_for("Ready=True once the CRD takes the status", T, || async {
        support::operator::ready(&env, &widgets, "w").0 == "True"
            && jsonpath(&env, &widgets, "w", "{.status.count}") == "1"
    })
    .await;
    assert!(
        fixed.elapsed() < FIXED_CRD,
        "the parent took {:?} after its CRD was fixed",
        fixed.elapsed()
    );
}

/// A parent whose CRD allows only some of ruleop's status (no `conditions`) gets the rest
/// within seconds of its CRD allowing it: the status shape is decided again when the CRD's
/// published schema changes, and every parent of the rule is reconciled. Then it is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_that_gains_conditions_gets_them_within_seconds() {
    let env = TestEnv::new("e2e-crdfix").await;
    let group = format!("fix{}.test.ruleop.dev", unique_suffix());
    let (open_crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    // Closed status: only `replicas`, an integer; no conditions, no observedGeneration.
    let closed = "          x-kubernetes-preserve-unknown-fields: true\n";
    let crd = open_crd.replace(
        closed,
        &format!(
            "{closed}          properties:\n            status:\n              type: object\n\
             \x20             properties: {{replicas: {{type: integer}}}}\n"
        ),
    );
    let rule = format!(
        "{rule}  status:\n    fields:\n      replicas: {{expr: \"parent.spec.value | length\"}}\n"
    );
    install_crd(&env, &group, &crd);
    let dir = rules_dir(&rule);
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    let widgets = format!("widgets.{group}");
    for name in ["a", "b"] {
        env.apply_yaml(&format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{value: hello}}\n"
        ));
    }
    for name in ["a", "b"] {
        wait_for("the status field the CRD allows", T, || async {
            jsonpath(&env, &widgets, name, "{.status.replicas}") == "5"
                && jsonpath(&env, "configmap", name, "{.data.value}") == "hello"
        })
        .await;
    }
    assert_eq!(jsonpath(&env, &widgets, "a", "{.status.conditions}"), "");
    let fixed = std::time::Instant::now();
    install_crd(&env, &group, &open_crd);
    for name in ["a", "b"] {
        wait_for("Ready=True once the CRD allows conditions", T, || async {
            ready(&env, &widgets, name).0 == "True"
                && jsonpath(&env, &widgets, name, "{.status.replicas}") == "5"
        })
        .await;
    }
    assert!(
        fixed.elapsed() < FIXED_CRD,
        "the parents took {:?} after their CRD was fixed",
        fixed.elapsed()
    );
    audit::assert_no_writes("settled after the CRD fix", IDLE, |w| w.namespace == env.ns).await;
}

/// `--events warnings`: a parent's progress (its child created, Ready) records no Event, a
/// problem still does; `Normal` Events of the same run would otherwise be there (the
/// default records them, as the reference operators' tests show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_warnings_are_recorded_when_asked() {
    let env = TestEnv::new("e2e-evlevel").await;
    let group = format!("evl{}.test.ruleop.dev", unique_suffix());
    let (crd, rule) = widget(&group, "\"{{ parent.spec.value }}\"");
    let rule = requiring_text(&rule, "value must be text");
    install_crd(&env, &group, &crd);
    let dir = rules_dir(&rule);
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &["--events", "warnings"]);
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: good}}\nspec: {{value: fine}}\n"
    ));
    wait_for("the child of the good parent", T, || async {
        jsonpath(&env, "configmap", "good", "{.data.value}") == "fine"
    })
    .await;
    // The bad parent comes after the good one: its Warning is recorded after any Event of
    // the good parent's reconcile would have been.
    env.apply_yaml(&format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: bad}}\nspec: {{value: 42}}\n"
    ));
    let reasons = |name: &str| {
        env.kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            &format!("regarding.name={name}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ])
    };
    wait_for("the warning about the bad parent", T, || async {
        reasons("bad") == "NotText"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reasons("good"), "", "no progress Events");
    assert_eq!(reasons("bad"), "NotText");
}

/// Two children whose names collide for some parents (the same value by two expressions,
/// which `check` cannot prove): the plan fails, naming both children, and nothing is
/// written for that parent but its status; an object one child made from an earlier good
/// spec keeps its one rendering, the other child's object is not pruned, and no write loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_children_of_one_name_fail_the_plan_and_write_nothing() {
    let env = TestEnv::new("e2e-dupname").await;
    let group = format!("dup{}.test.ruleop.dev", unique_suffix());
    let (crd, _) = widget(&group, "unused");
    install_crd(&env, &group, &crd);
    let rule = format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: edition}}
spec:
  parent: {{apiVersion: {group}/v1, kind: Widget}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  children:
    - name: content
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}-content"}}
        data: {{text: "{{{{ parent.spec.text }}}}"}}
    - name: summary
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata:
          name: {{{{ parent.metadata.name ~ "-" ~ parent.spec.summary }}}}
        data: {{summary: short}}
"#
    );
    let template_line = |child: &str| {
        let start = support::cli::line_of(&rule, &format!("- name: {child}"));
        // The template's first line.
        start
            + rule
                .lines()
                .skip(start)
                .position(|l| l.contains("template: |"))
                .unwrap()
            + 2
    };
    let (content_at, summary_at) = (template_line("content"), template_line("summary"));
    let dir = rules_dir(&rule);
    let _op = Operator::start_with_rules(&env.ns, dir.path(), &[]);
    let widgets = format!("widgets.{group}");
    let widget = |name: &str, summary: &str, text: &str| {
        format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {{summary: {summary}, text: {text}}}\n"
        )
    };
    env.apply_yaml(&widget("w", "summary", "hello"));
    wait_for("w ready with both children", T, || async {
        ready(&env, &widgets, "w").0 == "True"
            && jsonpath(&env, "configmap", "w-content", "{.data.text}") == "hello"
            && env.get("configmap", "w-summary").is_some()
    })
    .await;
    let content = env.get("configmap", "w-content").unwrap();
    let summary = env.get("configmap", "w-summary").unwrap();

    let mark = audit::Mark::now();
    // `summary` now names `content`'s object, whose rendering changes too: either
    // rendering written would be a write to w-content.
    env.apply_yaml(&widget("w", "content", "bye"));
    env.apply_yaml(&widget("fresh", "content", "new"));
    for parent in ["w", "fresh"] {
        wait_for("the duplicate reported", T, || async {
            ready(&env, &widgets, parent) == ("False".into(), "DuplicateName".into())
        })
        .await;
        let message = jsonpath(
            &env,
            &widgets,
            parent,
            "{.status.conditions[?(@.type==\"Ready\")].message}",
        );
        for expected in [
            format!("ConfigMap/{}/{parent}-content", env.ns),
            "child \"content\" (".into(),
            format!("widget.yaml:{content_at}:"),
            "child \"summary\" (".into(),
            format!("widget.yaml:{summary_at}:"),
        ] {
            assert!(message.contains(&expected), "{expected} in {message}");
        }
        let events = env.kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            &format!("regarding.name={parent},type=Warning"),
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        assert!(events.contains("DuplicateName"), "{events}");
    }
    tokio::time::sleep(IDLE).await;
    let writes = mark.operator_writes(&env.ns);
    assert!(
        writes
            .iter()
            .all(|w| w.resource == widgets.split('.').next().unwrap() && w.subresource == "status"),
        "only the parents' status is written:\n{}",
        audit::describe(&writes)
    );
    assert!(
        writes.len() <= 2,
        "one status write per parent:\n{}",
        audit::describe(&writes)
    );
    let now = env.get("configmap", "w-content").unwrap();
    assert_eq!(
        now["data"]["text"], "hello",
        "w-content keeps its one rendering"
    );
    assert_eq!(
        now["metadata"]["resourceVersion"],
        content["metadata"]["resourceVersion"]
    );
    let kept = env
        .get("configmap", "w-summary")
        .expect("w-summary is not pruned");
    assert_eq!(kept["metadata"]["uid"], summary["metadata"]["uid"]);
    assert!(env.get("configmap", "fresh-content").is_none());
    audit::assert_no_writes("a failed plan settles", IDLE, |w| w.namespace == env.ns).await;

    // Put right, the parent converges as usual.
    env.apply_yaml(&widget("w", "summary", "bye"));
    wait_for("w ready again", T, || async {
        ready(&env, &widgets, "w").0 == "True"
            && jsonpath(&env, "configmap", "w-content", "{.data.text}") == "bye"
    })
    .await;
}
