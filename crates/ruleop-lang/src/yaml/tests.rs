//! The emitter's expected texts are serde_yaml 0.9's output for the same values (captured
//! before the switch); the reader's tests pin what serde_yaml read.

use serde_json::{Value as Json, json};

use super::*;

fn parse(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

#[test]
fn nested() {
    let value = parse(
        r##"{"a":[[1,2],[]],"b":{"c":[1,{"d":"e"}],"e":{}},"f":null,"g":1.5,"h":1e+20,"i":-3,"j":true}"##,
    );
    assert_eq!(
        to_string(&value),
        "a:\n- - 1\n  - 2\n- []\nb:\n  c:\n  - 1\n  - d: e\n  e: {}\nf: null\ng: 1.5\nh: 1e20\ni: -3\nj: true\n"
    );
}

#[test]
fn typed_text_quoted() {
    let value = parse(
        r##"{"1":"yes","s":["","~","null","True","1","0x1F","012","-0","1.",".inf","1e3"],"true":"on"}"##,
    );
    assert_eq!(
        to_string(&value),
        "'1': yes\ns:\n- ''\n- '~'\n- 'null'\n- 'True'\n- '1'\n- '0x1F'\n- '012'\n- '-0'\n- '1.'\n- '.inf'\n- '1e3'\n'true': on\n"
    );
}

#[test]
fn plain_text() {
    let value =
        parse(r##"["yes","NaN","1_000","a:b","a#b","http://x/y?z","ünï","emoji😀","nbsp "]"##);
    assert_eq!(
        to_string(&value),
        "- yes\n- NaN\n- 1_000\n- a:b\n- a#b\n- http://x/y?z\n- ünï\n- emoji😀\n- nbsp\u{a0}\n"
    );
}

#[test]
fn indicators() {
    let value = parse(
        r##"["- a","a: b","#x","a #b"," lead","trail ","'","\"","@x","*x","&x","!x","%x","|",">","? x","[a]","{b}","---x","..."]"##,
    );
    assert_eq!(
        to_string(&value),
        "- '- a'\n- 'a: b'\n- '#x'\n- 'a #b'\n- ' lead'\n- 'trail '\n- ''''\n- '\"'\n- '@x'\n- '*x'\n- '&x'\n- '!x'\n- '%x'\n- '|'\n- '>'\n- '? x'\n- '[a]'\n- '{b}'\n- '---x'\n- '...'\n"
    );
}

#[test]
fn double_quoted() {
    let value = parse(r##"["tab\there","ctl\u0001","bom﻿","a\\b","x \ny"]"##);
    assert_eq!(
        to_string(&value),
        "- \"tab\\there\"\n- \"ctl\\x01\"\n- \"bom\\uFEFF\"\n- \"a\\\\b\\N\"\n- \"x \\ny\"\n"
    );
}

#[test]
fn literal() {
    let value = parse(
        r##"{"a":"l1\nl2","b":["x\ny\n","\n","a\n\n","  lead\nx"],"c":{"d":[{"e":"f\ng"}]},"m\nk":"v"}"##,
    );
    assert_eq!(
        to_string(&value),
        "a: |-\n  l1\n  l2\nb:\n- |\n  x\n  y\n- |2+\n\n- |+\n  a\n\n- |2-\n    lead\n  x\nc:\n  d:\n  - e: |-\n      f\n      g\n? |-\n  m\n  k\n: v\n"
    );
}

#[test]
fn long_key() {
    let value = parse(
        r##"{"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk":{"a":1},"llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll":[1]}"##,
    );
    assert_eq!(
        to_string(&value),
        "? kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n: a: 1\n? llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll\n: - 1\n"
    );
}

#[test]
fn root_scalar() {
    let value = parse(r##""top\n""##);
    assert_eq!(to_string(&value), "|\n  top\n");
}

#[test]
fn root_list() {
    let value = parse(r##"[[{"a":1,"b":[2]}],[[]]]"##);
    assert_eq!(to_string(&value), "- - a: 1\n    b:\n    - 2\n- - []\n");
}

#[test]
fn reads_scalars_as_serde_yaml_did() {
    let value: Json =
        from_str("a: yes\nb: 0755\nc: 1_000\nd: True\ne: 0x1F\nf: 1.5\ng: ~\nh: '1'\n").unwrap();
    assert_eq!(
        value,
        json!({"a": "yes", "b": "0755", "c": "1_000", "d": true, "e": 31, "f": 1.5, "g": null, "h": "1"})
    );
}

#[test]
fn round_trips_through_the_emitter() {
    let value = json!({"s": ["", "~", "1", "yes", "a: b", "x\ny\n", " lead", "tab\t"], "n": [1, -2, 1.5], "m": {}});
    assert_eq!(from_str::<Json>(&to_string(&value)).unwrap(), value);
}

#[test]
fn syntax_errors_are_located_without_the_position_in_the_message() {
    let e = from_str::<Json>("a:\n  b: [\nc: 1\n").unwrap_err();
    assert_eq!(e.line, 2, "{e:?}");
    assert!(e.column > 0, "{e:?}");
    assert!(!e.message.contains("line"), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{}:{}: {}", e.line, e.column, e.message)
    );
}

#[test]
fn type_errors_are_located() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Small {
        #[allow(dead_code)]
        a: u8,
    }
    let e = from_str::<Small>("a: 1\nb: 2\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e:?}");
    assert!(e.message.starts_with("unknown field `b`"), "{e:?}");
    let e =
        from_str::<std::collections::BTreeMap<String, Vec<Small>>>("x:\n- a: 1\n- a: 2\n  c: 3\n")
            .unwrap_err();
    assert!(e.message.starts_with("x[1]: unknown field `c`"), "{e:?}");
    let e = from_str::<Small>("a: many\n").unwrap_err();
    assert!(e.message.starts_with("a: "), "{e:?}");
}

#[test]
fn deep_documents_are_refused() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(from_str::<Json>(&deep).is_err());
}

#[test]
fn streams_read_every_document() {
    let docs = from_str_multiple("a: 1\n---\n---\n- 2\n").unwrap();
    assert_eq!(docs.first(), Some(&json!({"a": 1})));
    assert_eq!(docs.last(), Some(&json!([2])));
}

#[test]
fn a_block_entry_in_a_flow_sequence_says_what_was_expected() {
    let mut parser = granit::Parser::new_from_str("a: [\n  - b\n");
    let e = std::iter::from_fn(|| parser.next_event())
        .find_map(Result::err)
        .unwrap();
    assert_eq!(e.marker().line(), 2);
    assert!(syntax_message(&e).starts_with("did not find expected node content ("));
}
