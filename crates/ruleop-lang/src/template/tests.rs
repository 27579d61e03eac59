//! Tests of the template engine: rendering, limits, values and YAML splicing.
use super::*;
use serde_json::json;
use yaml::plain;

fn templates(source: &str) -> Templates {
    let mut t = Templates::new(&Limits::default());
    t.add_template("t", source).unwrap();
    t
}

fn ctx(v: Json) -> Value {
    from_json(&v)
}

#[test]
fn values_keep_their_type() {
    let t = templates("replicas: {{ n }}\nname: {{ name }}-job\nlabels: {{ labels }}\n");
    let out = t
        .render_object(
            "t",
            &ctx(json!({"n": 3, "name": "web", "labels": {"a": "b"}})),
        )
        .unwrap();
    assert_eq!(
        out,
        json!({"replicas": 3, "name": "web-job", "labels": {"a": "b"}})
    );
}

#[test]
fn hostile_strings_stay_one_string() {
    let t = templates("kind: Pod\nmessage: {{ m }}\nquoted: \"{{ m }}\"\n");
    let m = "hi\n---\nkind: Secret\nspec: {evil: true}";
    let out = t.render_object("t", &ctx(json!({"m": m}))).unwrap();
    assert_eq!(out, json!({"kind": "Pod", "message": m, "quoted": m}));
}

#[test]
fn quoted_interpolation_is_a_string() {
    let t = templates("value: \"{{ n }}\"\n");
    let out = t.render_object("t", &ctx(json!({"n": 8080}))).unwrap();
    assert_eq!(out, json!({"value": "8080"}));
}

#[test]
fn loops_and_conditionals_shape_the_document() {
    let t = templates(
        "peers:\n{% for i in range(n) %}  - {{ name }}-{{ i }}\n{% endfor %}{% if extra %}extra: yes{% endif %}\n",
    );
    let out = t
        .render_object("t", &ctx(json!({"n": 2, "name": "e", "extra": false})))
        .unwrap();
    assert_eq!(out, json!({"peers": ["e-0", "e-1"]}));
}

#[test]
fn multiple_documents_are_rejected() {
    let t = templates("a: 1\n---\nb: 2\n");
    let err = t.render_object("t", &ctx(json!({}))).unwrap_err();
    assert!(
        err.to_string().contains("exactly one YAML document"),
        "{err}"
    );
}

#[test]
fn printing_undefined_is_an_error() {
    let t = templates("a: {{ parent.spec.missing }}\n");
    let err = t
        .render_object("t", &ctx(json!({"parent": {"spec": {}}})))
        .unwrap_err();
    assert!(err.to_string().contains("undefined"), "{err}");
    assert_eq!(err.template_line(), Some(1));
}

#[test]
fn safe_filter_is_removed() {
    let mut t = Templates::new(&Limits::default());
    assert!(
        t.add_template("t", "a: {{ x | safe }}").is_err() || {
            t.render_object("t", &ctx(json!({"x": "b: c"}))).is_err()
        }
    );
}

#[test]
fn fuel_limit_stops_runaway_loops() {
    let mut t = Templates::new(&Limits {
        fuel: 1000,
        max_output_bytes: 1 << 20,
    });
    t.add_template("t", "{% for i in range(100000) %}x{% endfor %}")
        .unwrap();
    let err = t.render_text("t", &ctx(json!({}))).unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
}

#[test]
fn output_limit() {
    let mut t = Templates::new(&Limits {
        fuel: 1_000_000,
        max_output_bytes: 100,
    });
    t.add_template("t", "{% for i in range(200) %}x{% endfor %}")
        .unwrap();
    assert!(matches!(
        t.render_text("t", &ctx(json!({}))),
        Err(TemplateError::TooLarge { .. })
    ));
}

#[test]
fn the_output_limit_counts_interpolated_values() {
    let t = templates("a: {{ v }}\nb: \"{{ v }}\"\n");
    let limit = Limits::default().max_output_bytes;
    let big = "x".repeat(1_000_000);
    let err = t.render_object("t", &ctx(json!({"v": big}))).unwrap_err();
    assert!(
        matches!(err, TemplateError::TooLarge { limit: l, .. } if l == limit),
        "{err}"
    );
    // Printed twice, counted twice; a list counts as its JSON text.
    let half = "x".repeat(limit / 2);
    assert!(t.render_object("t", &ctx(json!({"v": half}))).is_err());
    let list: Vec<&str> = vec!["abcdefgh"; limit / 20];
    assert!(t.render_object("t", &ctx(json!({"v": list}))).is_err());
    let ok = "x".repeat(limit / 3);
    assert!(t.render_object("t", &ctx(json!({"v": ok}))).is_ok());
    // A value computed but never printed is not output.
    let quiet = templates("{% set x = v %}a: 1\n");
    assert!(quiet.render_object("t", &ctx(json!({"v": big}))).is_ok());
}

#[test]
fn expressions_evaluate_to_values() {
    let mut t = Templates::new(&Limits::default());
    t.add_expression("e", "parent.spec.size >= 1 and parent.spec.size <= 10")
        .unwrap();
    t.add_expression(
        "missing",
        "children.deployment.status.readyReplicas | default(0)",
    )
    .unwrap();
    let c = ctx(json!({"parent": {"spec": {"size": 3}}, "children": {}}));
    assert!(t.eval("e", &c).unwrap().is_true());
    assert_eq!(to_json(&t.eval("missing", &c).unwrap()), json!(0));
    assert!(t.add_expression("bad", "a }} x {{ b").is_err());
}

#[test]
fn messages_splice_text() {
    let t = templates("size must be 1..10, got {{ n }} ({{ s }})");
    assert_eq!(
        t.render_text("t", &ctx(json!({"n": 11, "s": "x"})))
            .unwrap(),
        "size must be 1..10, got 11 (x)"
    );
}

#[test]
fn plain_scalars_follow_yaml_core_schema() {
    assert_eq!(plain("3"), json!(3));
    assert_eq!(plain("1.5"), json!(1.5));
    assert_eq!(plain("true"), json!(true));
    assert_eq!(plain("yes"), json!("yes"));
    assert_eq!(plain("~"), Json::Null);
    assert_eq!(plain("1Gi"), json!("1Gi"));
    assert_eq!(plain("3.5.9"), json!("3.5.9"));
}

#[test]
fn readiness() {
    assert!(is_ready(
        &json!({"kind": "Pod", "status": {"phase": "Running"}})
    ));
    assert!(!is_ready(
        &json!({"kind": "Pod", "status": {"phase": "Pending"}})
    ));
    assert!(!is_ready(
        &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    ));
    assert!(is_ready(&json!({"kind": "Service"})));
}
