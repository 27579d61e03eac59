//! Interpolated values in manifests: `tojson` and `escape` give values, macros and blocks
//! stay template text, whatever the value's characters. Pure: no API server.

use minijinja::HtmlEscape;
use ruleop_lang::template::Limits;
use ruleop_lang::template::{Templates, from_json, to_json};
use serde_json::{Value as Json, json};

fn templates(source: &str) -> Templates {
    let mut t = Templates::new(&Limits::default());
    t.add_template("t", source).unwrap();
    t
}

fn ctx(v: Json) -> minijinja::Value {
    from_json(&v)
}

/// Strings that break YAML or JSON quoting, or look like structure or tokens.
const HOSTILE: [&str; 6] = [
    "a\"b'c\\d",
    "x\n---\nkind: Secret\nspec: {evil: true}",
    "}: [{\"",
    "\u{E000}0\u{E001}",
    "<script>&amp;</script>",
    "# not a comment: '' \"\" \\n",
];

#[test]
fn tojson_is_a_value_in_every_scalar_style() {
    let t = templates(concat!(
        "double: \"{{ v | tojson }}\"\n",
        "single: '{{ v | tojson }}'\n",
        "plain: {{ v | tojson }}\n",
        "inside: \"cfg={{ v | tojson }};\"\n",
        "block: |\n  {{ v | tojson }}\n",
        "pretty: \"{{ v | tojson(indent=2) }}\"\n",
    ));
    for s in HOSTILE {
        let v = json!({"s": s, "list": [1, s], "n": 3});
        let out = t
            .render_object("t", &ctx(json!({"v": v})))
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        for key in ["double", "single", "plain"] {
            let text = out[key].as_str().unwrap_or_else(|| panic!("{key}: {out}"));
            let back: Json = serde_json::from_str(text).unwrap();
            assert_eq!(back, v, "{key} for {s:?}");
        }
        let inside = out["inside"].as_str().unwrap();
        let inner = inside
            .strip_prefix("cfg=")
            .unwrap()
            .strip_suffix(';')
            .unwrap();
        assert_eq!(serde_json::from_str::<Json>(inner).unwrap(), v);
        let block = out["block"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Json>(block.trim_end()).unwrap(), v);
        let pretty = out["pretty"].as_str().unwrap();
        assert!(pretty.contains('\n'), "{pretty:?}");
        assert_eq!(serde_json::from_str::<Json>(pretty).unwrap(), v);
        assert_eq!(out.as_object().unwrap().len(), 6, "no injected keys: {out}");
    }
    // A string's JSON is a JSON string.
    let out = t
        .render_object("t", &ctx(json!({"v": "it's \"x\""})))
        .unwrap();
    assert_eq!(out["double"], json!("\"it\\u0027s \\\"x\\\"\""));
}

#[test]
fn escape_filter_is_a_value() {
    let t = templates("a: \"{{ v | e }}\"\nb: {{ v | escape }}\n");
    for s in HOSTILE {
        let out = t.render_object("t", &ctx(json!({"v": s}))).unwrap();
        let escaped = HtmlEscape(s).to_string();
        assert_eq!(out, json!({"a": escaped, "b": escaped}), "{s:?}");
    }
}

#[test]
fn macros_and_filter_blocks_are_template_text() {
    let t = templates(concat!(
        "{% macro entry(k, v) %}{{ k }}: {{ v }}{% endmacro %}",
        "{% macro dashed(x) %}{{ x }}-y{% endmacro %}",
        "data:\n  {{ entry('first', v) }}\n",
        "name: {{ dashed(v) }}\n",
        "quoted: \"{{ dashed(v) }}\"\n",
        "replaced: {{ dashed('q') | replace('-', v) }}\n",
        "{% filter upper %}upper: {% endfilter %}{{ v }}\n",
        "{% set block %}[{{ v }}, 2]{% endset %}list: {{ block }}\n",
    ));
    for s in HOSTILE {
        let out = t
            .render_object("t", &ctx(json!({"v": s})))
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(
            out,
            json!({
                "data": {"first": s},
                "name": format!("{s}-y"),
                "quoted": format!("{s}-y"),
                "replaced": format!("q{s}y"),
                "UPPER": s,
                "list": [s, 2],
            }),
            "{s:?}"
        );
    }
}

#[test]
fn template_names_do_not_choose_an_escaping() {
    let mut t = Templates::new(&Limits::default());
    t.add_template("config.json", "a: \"{{ v }}\"\n").unwrap();
    t.add_template("page.html", "a: {{ v }}\n").unwrap();
    let c = ctx(json!({"v": "<b>\"x\"</b>"}));
    assert_eq!(
        t.render_object("config.json", &c).unwrap(),
        json!({"a": "<b>\"x\"</b>"})
    );
    assert_eq!(
        t.render_object("page.html", &c).unwrap(),
        json!({"a": "<b>\"x\"</b>"})
    );
}

#[test]
fn expressions_with_tojson_and_escape_give_plain_strings() {
    let mut t = Templates::new(&Limits::default());
    t.add_expression("j", "parent.spec | tojson").unwrap();
    t.add_expression("e", "parent.spec.s | e").unwrap();
    let c = ctx(json!({"parent": {"spec": {"s": "<a'b>"}}}));
    assert_eq!(
        to_json(&t.eval("j", &c).unwrap()),
        json!("{\"s\": \"\\u003ca\\u0027b\\u003e\"}")
    );
    assert_eq!(
        to_json(&t.eval("e", &c).unwrap()),
        json!("&lt;a&#x27;b&gt;")
    );
}

#[test]
fn helm_filters_give_values() {
    let t = templates(concat!(
        "checksum: {{ cfg | sha256 }}\n",
        "secret: {{ s | b64encode }}\n",
        "plain: {{ s | b64encode | b64decode }}\n",
        "yaml: |\n  {{ cfg | toyaml }}\n",
        "back: {{ (cfg | toyaml | fromyaml).b }}\n",
        "json: {{ ('{\"n\": 3}' | fromjson).n }}\n",
    ));
    for s in HOSTILE {
        let cfg = json!({"a": s, "b": [1, 2]});
        let out = t
            .render_object("t", &ctx(json!({"cfg": cfg, "s": s})))
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let checksum = out["checksum"].as_str().unwrap();
        assert_eq!(checksum.len(), 64, "{checksum}");
        assert_eq!(out["plain"], json!(s));
        assert_eq!(
            ruleop_lang::template::filters::decode(out["secret"].as_str().unwrap()).unwrap(),
            s.as_bytes()
        );
        let yaml: Json = ruleop_lang::yaml::from_str(out["yaml"].as_str().unwrap()).unwrap();
        assert_eq!(yaml, cfg, "{s:?}");
        assert_eq!(out["back"], json!([1, 2]));
        assert_eq!(out["json"], json!(3));
    }
    // A changed config changes the checksum; the same config keeps it.
    let a = t
        .render_object("t", &ctx(json!({"cfg": {"a": "x", "b": 1}, "s": ""})))
        .unwrap();
    let b = t
        .render_object("t", &ctx(json!({"cfg": {"a": "y", "b": 1}, "s": ""})))
        .unwrap();
    assert_ne!(a["checksum"], b["checksum"]);
}

#[test]
fn b64decode_of_bad_input_is_an_error() {
    let t = templates("x: {{ s | b64decode }}\n");
    let err = t.render_object("t", &ctx(json!({"s": "no*"}))).unwrap_err();
    assert!(err.to_string().contains("not valid base64"), "{err}");
}
