use serde_json::json;

use crate::load::parse_rule;

fn rule(parent_extra: &str) -> String {
    format!(
        "apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata:
  name: sel
spec:
  parent:
    apiVersion: apps/v1
    kind: StatefulSet
{parent_extra}  allow:
  - apiVersion: v1
    kind: ConfigMap
  children:
  - name: cm
    apiVersion: v1
    kind: ConfigMap
    template: |
      metadata:
        name: {{{{ parent.metadata.name }}}}
"
    )
}

fn errors(parent_extra: &str) -> Vec<String> {
    match parse_rule("r.yaml".as_ref(), &rule(parent_extra)) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn parent(labels: serde_json::Value, annotations: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "s", "namespace": "n", "labels": labels, "annotations": annotations}})
}

#[test]
fn selectors_parse_and_match_labels_and_annotations() {
    let source = rule(
        "    selector:
      matchLabels: {tier: web}
      matchExpressions:
      - {key: env, operator: In, values: [prod, staging]}
      - {key: legacy, operator: DoesNotExist}
    annotationSelector:
      matchExpressions:
      - {key: service-per-pod-label, operator: Exists}
",
    );
    let r = parse_rule("r.yaml".as_ref(), &source).unwrap();
    let p = &r.spec.parent;
    assert!(p.is_selective());
    let selected = parent(
        json!({"tier": "web", "env": "prod"}),
        json!({"service-per-pod-label": ""}),
    );
    assert_eq!(p.unselected(&selected), None);
    // Each requirement on its own can exclude a parent, and the reason names it.
    let cases = [
        (
            parent(
                json!({"env": "prod"}),
                json!({"service-per-pod-label": "x"}),
            ),
            "label tier=web required by spec.parent.selector",
        ),
        (
            parent(
                json!({"tier": "web", "env": "dev"}),
                json!({"service-per-pod-label": "x"}),
            ),
            "label env in (prod, staging) required by spec.parent.selector",
        ),
        (
            parent(
                json!({"tier": "web", "env": "prod", "legacy": "1"}),
                json!({"service-per-pod-label": "x"}),
            ),
            "label legacy absent required by spec.parent.selector",
        ),
        (
            parent(json!({"tier": "web", "env": "prod"}), json!({})),
            "annotation service-per-pod-label present required by spec.parent.annotationSelector",
        ),
    ];
    for (obj, why) in cases {
        assert_eq!(p.unselected(&obj).as_deref(), Some(why));
    }
    // A parent without labels or annotations at all.
    let bare = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}});
    assert!(p.unselected(&bare).is_some());
    assert_eq!(
        p.selector.as_ref().unwrap().to_query().as_deref(),
        Some("tier=web,env in (prod,staging),!legacy")
    );
    // The complement, one query per requirement.
    assert_eq!(
        p.selector.as_ref().unwrap().negations(),
        ["tier!=web", "env notin (prod,staging)", "legacy"]
    );
}

#[test]
fn exact_annotations_and_not_in() {
    let source = rule(
        "    selector:
      matchExpressions:
      - {key: example.com/team, operator: NotIn, values: [a]}
      - {key: example.com/team, operator: Exists}
    annotationSelector:
      matchAnnotations: {example.com/mode: on, other: \"\"}
",
    );
    let r = parse_rule("r.yaml".as_ref(), &source).unwrap();
    let p = &r.spec.parent;
    let ann = json!({"example.com/mode": "on", "other": ""});
    assert_eq!(
        p.unselected(&parent(json!({"example.com/team": "b"}), ann.clone())),
        None
    );
    assert!(
        p.unselected(&parent(json!({"example.com/team": "a"}), ann.clone()))
            .is_some()
    );
    // NotIn alone would hold for a missing key; Exists makes it required.
    assert!(p.unselected(&parent(json!({}), ann)).is_some());
    // An exact empty value is a value: a missing annotation does not match it.
    let partial = json!({"example.com/mode": "on"});
    assert_eq!(
        p.unselected(&parent(json!({"example.com/team": "b"}), partial))
            .as_deref(),
        Some("annotation other= required by spec.parent.annotationSelector")
    );
    assert_eq!(
        p.selector.as_ref().unwrap().to_query().as_deref(),
        Some("example.com/team notin (a),example.com/team")
    );
    assert_eq!(
        p.selector.as_ref().unwrap().negations(),
        ["example.com/team in (a)", "!example.com/team"]
    );
}

#[test]
fn no_selector_selects_everything_and_an_empty_one_too() {
    let r = parse_rule("r.yaml".as_ref(), &rule("")).unwrap();
    assert!(!r.spec.parent.is_selective());
    assert_eq!(
        r.spec.parent.unselected(&parent(json!({}), json!({}))),
        None
    );
    let r = parse_rule("r.yaml".as_ref(), &rule("    selector: {}\n")).unwrap();
    assert_eq!(
        r.spec.parent.unselected(&parent(json!({}), json!({}))),
        None
    );
    assert_eq!(r.spec.parent.selector.as_ref().unwrap().to_query(), None);
}

#[test]
fn malformed_selectors_are_errors_at_their_line() {
    let e = errors(
        "    selector:
      matchLabels: {\"bad key!\": web, ok: \"not a value!\"}
      matchExpressions:
      - {key: env, operator: In}
      - key: x
        operator: Exists
        values: [a]
      - {key: \"-bad.com/x\", operator: Exists}
    annotationSelector:
      matchExpressions:
      - {key: a, operator: NotIn, values: []}
",
    );
    let joined = e.join("\n");
    for want in [
        "r.yaml:10:33: key \"bad key!\": the name must be",
        "r.yaml:10:42: \"not a value!\" is not a valid label value",
        "r.yaml:12:9: operator In needs at least one value",
        "r.yaml:15:17: operator Exists takes no values",
        "r.yaml:16:15: key \"-bad.com/x\": the prefix before '/' must be a DNS subdomain",
        "r.yaml:19:9: operator NotIn needs at least one value",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    assert_eq!(e.len(), 6, "{joined}");
    // An unknown operator is refused when the file is read, with its line.
    let e = errors(
        "    annotationSelector:
      matchExpressions:
      - {key: a, operator: Present}
",
    )
    .join("\n");
    assert!(e.contains("r.yaml:11") && e.contains("Present"), "{e}");
}
