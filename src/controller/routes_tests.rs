use serde_json::json;

use super::*;

fn gk(kind: &str) -> GroupKind {
    GroupKind {
        group: String::new(),
        kind: kind.into(),
    }
}

fn key(ns: &str, name: &str) -> ObjKey {
    (ns.to_string(), name.to_string())
}

fn object(kind: &str, ns: &str, name: &str) -> Interest {
    Interest::Object(gk(kind), ns.into(), name.into())
}

fn named(ns: &str, name: &str) -> Cached {
    Cached::new(json!({"metadata": {"namespace": ns, "name": name}}))
}

fn pod(ns: &str, labels: serde_json::Value) -> Cached {
    Cached::new(json!({"metadata": {"namespace": ns, "name": "p", "labels": labels}}))
}

fn sel(pairs: &[(&str, &str)]) -> Selector {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parent(rule: &str, ns: &str, name: &str) -> Parent {
    (rule.to_string(), key(ns, name))
}

#[test]
fn routes_an_object_to_exactly_its_readers() {
    let mut index = Routes::default();
    let a = parent("r", "ns", "a");
    let b = parent("r", "ns", "b");
    index.set(
        Facet::Lookups,
        a.clone(),
        vec![object("Secret", "ns", "s1"), object("Theme", "", "dark")],
    );
    index.set(
        Facet::Lookups,
        b.clone(),
        vec![object("Secret", "ns", "s2"), object("Theme", "", "dark")],
    );
    assert_eq!(
        index.by_name(&gk("Secret"), &named("ns", "s1")),
        std::slice::from_ref(&a)
    );
    assert_eq!(index.by_name(&gk("Theme"), &named("", "dark")).len(), 2);
    assert!(
        index
            .by_name(&gk("Secret"), &named("other", "s1"))
            .is_empty()
    );
    // A parent that now reads another object moves.
    index.set(
        Facet::Lookups,
        a.clone(),
        vec![object("Secret", "ns", "s3")],
    );
    assert!(index.by_name(&gk("Secret"), &named("ns", "s1")).is_empty());
    assert_eq!(
        index.by_name(&gk("Theme"), &named("", "dark")),
        std::slice::from_ref(&b)
    );
    index.remove_rule("r");
    assert!(index.is_empty());
}

#[test]
fn finds_the_parents_waiting_on_an_object_until_they_stop() {
    let shared = object("ConfigMap", "ns", "shared");
    let waiting = parent("beta", "ns", "b");
    let mut index = Routes::default();
    index.set(Facet::Conflicts, waiting.clone(), vec![shared.clone()]);
    let cm = gk("ConfigMap");
    assert_eq!(
        index.by_name(&cm, &named("ns", "shared")),
        std::slice::from_ref(&waiting)
    );
    assert!(index.by_name(&cm, &named("ns", "other")).is_empty());
    index.set(Facet::Conflicts, waiting.clone(), Vec::new());
    assert!(index.by_name(&cm, &named("ns", "shared")).is_empty());
    index.set(Facet::Conflicts, waiting.clone(), vec![shared.clone()]);
    // A lookup of the same object stays when the conflict goes.
    index.set(Facet::Lookups, waiting.clone(), vec![shared.clone()]);
    index.set(Facet::Conflicts, waiting.clone(), Vec::new());
    assert_eq!(index.by_name(&cm, &named("ns", "shared")).len(), 1);
    index.remove_rule("beta");
    assert!(index.by_name(&cm, &named("ns", "shared")).is_empty());
    assert!(index.is_empty());
}

#[test]
fn anchors_on_the_templated_label() {
    let raw: BTreeMap<String, String> = [
        ("app".to_string(), "memcached".to_string()),
        ("cr".to_string(), "{{ parent.metadata.name }}".to_string()),
    ]
    .into();
    assert_eq!(anchor_key(&raw), Some("cr"));
    let fixed: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
    assert_eq!(anchor_key(&fixed), Some("app"));
}

#[test]
fn finds_exactly_the_parents_whose_whole_selector_matches() {
    let mut index = Routes::default();
    let anchors = [Some("cr")];
    for name in ["one", "two"] {
        index.set_selectors(
            parent("mc", "a", name),
            &[Some("a".into())],
            vec![sel(&[("app", "mc"), ("cr", name)])],
            &anchors,
        );
    }
    // The same names in another namespace, and a cluster-wide parent.
    index.set_selectors(
        parent("mc", "b", "one"),
        &[Some("b".into())],
        vec![sel(&[("app", "mc"), ("cr", "one")])],
        &anchors,
    );
    index.set_selectors(
        parent("mc", "", "all"),
        &[None],
        vec![sel(&[("app", "mc"), ("cr", "one")])],
        &anchors,
    );
    let found = index.matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "one"})));
    assert_eq!(found, [key("", "all"), key("a", "one")]);
    // Every label of the selector must match, not only the anchor.
    assert!(
        index
            .matching("mc", 0, &pod("a", json!({"app": "other", "cr": "two"})))
            .is_empty()
    );
    assert!(
        index
            .matching(
                "other-rule",
                0,
                &pod("a", json!({"app": "mc", "cr": "one"}))
            )
            .is_empty()
    );
    // A parent whose selector changed moves; a removed one is gone.
    index.set_selectors(
        parent("mc", "a", "one"),
        &[Some("a".into())],
        vec![sel(&[("app", "mc"), ("cr", "uno")])],
        &anchors,
    );
    assert_eq!(
        index.matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "uno"}))),
        [key("a", "one")]
    );
    index.remove(&parent("mc", "a", "one"));
    assert!(
        index
            .matching("mc", 0, &pod("a", json!({"app": "mc", "cr": "uno"})))
            .is_empty()
    );
    index.remove_rule("mc");
    assert!(index.is_empty());
}
