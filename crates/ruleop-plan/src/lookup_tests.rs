#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};

use super::*;
use crate::tests::run;
use ruleop_lang::load::parse_rule;

/// A rule reading the ConfigMaps its parent lists in an annotation (Reloader's pattern),
/// beside a single lookup, and hashing their data into a child.
fn rule(optional: bool) -> CompiledRule {
    let source = format!(
        r#"apiVersion: ruleop.dev/v1alpha1
kind: Rule
metadata: {{name: reload}}
spec:
  parent: {{apiVersion: reload.ruleop.test/v1, kind: App}}
  allow: [{{apiVersion: v1, kind: ConfigMap}}]
  lookups:
    - {{name: theme, apiVersion: v1, kind: Secret, objectName: "{{{{ parent.spec.theme }}}}"}}
    - name: configs
      apiVersion: v1
      kind: ConfigMap
      objectNames: "parent.metadata.annotations['reload/configmaps'] | default('') | split(',')"
      optional: {optional}
  children:
    - name: digest
      apiVersion: v1
      kind: ConfigMap
      template: |
        metadata: {{name: "{{{{ parent.metadata.name }}}}-digest"}}
        data:
          names: "{{{{ lookups.configs | map(attribute='metadata.name') | join(',') }}}}"
          hash: "{{{{ lookups.configs | map(attribute='data') | list | sha256 }}}}"
"#
    );
    parse_rule("test.yaml".as_ref(), &source).unwrap()
}

fn parent(annotation: Option<&str>) -> Json {
    let mut p = json!({"apiVersion": "reload.ruleop.test/v1", "kind": "App",
        "metadata": {"name": "app", "namespace": "ns", "uid": "u-app", "generation": 1},
        "spec": {"theme": "dark"}});
    if let Some(a) = annotation {
        p["metadata"]["annotations"] = json!({"reload/configmaps": a});
    }
    p
}

fn config(name: &str, value: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("cm-{name}")},
        "data": {"k": value}})
}

fn theme() -> Json {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "dark", "namespace": "ns", "uid": "s-dark"}})
}

fn targets(rule: &CompiledRule, parent: &Json) -> Result<Vec<(usize, String)>, Failure> {
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    Ok(lookup_targets(rule, parent, now)?
        .into_iter()
        .map(|t| {
            assert_eq!(t.namespace, "ns");
            (t.lookup, t.name)
        })
        .collect())
}

fn names(list: &[(usize, &str)]) -> Vec<(usize, String)> {
    list.iter().map(|(i, n)| (*i, n.to_string())).collect()
}

#[test]
fn a_list_names_each_object_once_in_order_trimmed() {
    let r = rule(false);
    assert_eq!(
        targets(&r, &parent(Some(" b, a,,b , c,"))).unwrap(),
        names(&[(0, "dark"), (1, "b"), (1, "a"), (1, "c")])
    );
    // No annotation, or an empty one: no name at all, and not an error.
    assert_eq!(targets(&r, &parent(None)).unwrap(), names(&[(0, "dark")]));
    assert_eq!(
        targets(&r, &parent(Some(" , "))).unwrap(),
        names(&[(0, "dark")])
    );
}

#[test]
fn a_list_longer_than_the_cap_is_the_rules_error_at_its_line() {
    let r = rule(false);
    let many: Vec<String> = (0..=MAX_LOOKUP_NAMES).map(|i| format!("cm-{i}")).collect();
    let f = targets(&r, &parent(Some(&many.join(",")))).unwrap_err();
    assert_eq!(f.reason, reason::RENDER_FAILED);
    assert!(f.message.starts_with("test.yaml:12:"), "{}", f.message);
    assert!(f.message.contains("more than 100 names"), "{}", f.message);
    // Exactly the cap is fine, and repeats do not count.
    let mut at_cap = many[..MAX_LOOKUP_NAMES].to_vec();
    at_cap.extend(many[..10].iter().cloned());
    assert_eq!(
        targets(&r, &parent(Some(&at_cap.join(",")))).unwrap().len(),
        MAX_LOOKUP_NAMES + 1
    );
}

#[test]
fn names_that_are_not_a_list_of_strings_are_the_rules_error() {
    let source = |expr: &str| {
        format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {{apiVersion: x.dev/v1, kind: App}}\n  lookups:\n    - {{name: cms, apiVersion: v1, kind: ConfigMap, objectNames: \"{expr}\"}}\n"
        )
    };
    for (expr, says) in [
        ("parent.metadata.name", "got the string"),
        ("[parent.metadata.name, 3]", "item 1 is not a name"),
        ("{'a': 1}", "must give a list of names"),
    ] {
        let r = parse_rule("test.yaml".as_ref(), &source(expr)).unwrap();
        let f = targets(&r, &parent(None)).unwrap_err();
        assert!(f.message.starts_with("test.yaml:7:"), "{}", f.message);
        assert!(f.message.contains(says), "{expr}: {}", f.message);
    }
}

#[test]
fn a_lookup_has_exactly_one_of_a_name_and_a_list() {
    let source = |names: &str| {
        format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: r}}\nspec:\n  parent: {{apiVersion: x.dev/v1, kind: App}}\n  lookups:\n    - name: cms\n      apiVersion: v1\n      kind: ConfigMap\n{names}"
        )
    };
    for names in ["", "      objectName: a\n      objectNames: \"['a']\"\n"] {
        let e = parse_rule("test.yaml".as_ref(), &source(names))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(e.contains("test.yaml:7:"), "{e}");
        assert!(e.contains("exactly one of objectName"), "{e}");
    }
}

#[test]
fn templates_see_the_found_objects_in_the_order_of_the_names() {
    let r = rule(false);
    let observed = [
        theme(),
        config("a", "1"),
        config("b", "2"),
        config("c", "3"),
    ];
    let p = run(&r, &parent(Some("c,a,b")), &observed);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    let data = &p.apply[0].object["data"];
    assert_eq!(data["names"], "c,a,b");
    let hash = data["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);

    // Editing one listed object changes the hash; one not listed does not.
    let edited = [
        theme(),
        config("a", "1"),
        config("b", "9"),
        config("c", "3"),
    ];
    let p2 = run(&r, &parent(Some("c,a,b")), &edited);
    assert_ne!(p2.apply[0].object["data"]["hash"], hash.as_str());
    let extra = [
        theme(),
        config("a", "1"),
        config("b", "2"),
        config("c", "3"),
        config("d", "4"),
    ];
    let p3 = run(&r, &parent(Some("c,a,b")), &extra);
    assert_eq!(p3.apply[0].object["data"]["hash"], hash.as_str());

    // An empty list is a list.
    let p4 = run(&r, &parent(None), &observed);
    assert!(p4.failure.is_none(), "{:?}", p4.failure);
    assert_eq!(p4.apply[0].object["data"]["names"], "");
}

#[test]
fn missing_listed_objects_are_named_or_left_out_when_optional() {
    let observed = [theme(), config("a", "1")];
    let p = run(&rule(false), &parent(Some("a,b,c")), &observed);
    let f = p.failure.clone().unwrap();
    assert_eq!(f.reason, reason::LOOKUP_MISSING);
    assert_eq!(
        f.message,
        "not found: ConfigMap ns/b (lookup configs), ConfigMap ns/c (lookup configs)"
    );
    assert!(p.apply.is_empty() && p.delete.is_empty());

    let p = run(&rule(true), &parent(Some("a,b,c")), &observed);
    assert!(p.failure.is_none(), "{:?}", p.failure);
    assert_eq!(p.apply[0].object["data"]["names"], "a");
}
