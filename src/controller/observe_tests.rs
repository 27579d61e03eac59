#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use kube::api::ApiResource;
use serde_json::{Value as Json, json};

use super::*;
use crate::controller::routes::{Facet, Routes};
use ruleop_lang::load::parse_rule;

const RELOADER: &str = include_str!("../../examples/reloader/rule.yaml");
const ANNOTATION: &str = "configmap.reloader.stakater.com/reload";

fn gk(group: &str, kind: &str) -> GroupKind {
    GroupKind {
        group: group.into(),
        kind: kind.into(),
    }
}

fn cache(kind: &GroupKind, api_version: &str, plural: &str) -> Arc<KindCache> {
    let resource = ApiResource {
        group: kind.group.clone(),
        version: api_version.rsplit('/').next().unwrap().into(),
        api_version: api_version.into(),
        kind: kind.kind.clone(),
        plural: plural.into(),
    };
    Arc::new(KindCache::new(kind.clone(), resource, true, false, 1))
}

fn app(list: &str) -> Json {
    json!({"apiVersion": "examples.ruleop.dev/v1", "kind": "ReloadedApp",
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-web", "resourceVersion": "1",
            "annotations": {ANNOTATION: list}}})
}

fn config(name: &str) -> Json {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("cm-{name}"), "resourceVersion": "1"},
        "data": {"k": name}})
}

fn named(name: &str) -> Cached {
    Cached::new(config(name))
}

/// Every name of a list lookup is read from the cache and routed; a name the list drops
/// leaves the routing index with the next plan.
#[test]
fn every_listed_name_is_routed_until_the_list_drops_it() {
    let rule = parse_rule(Path::new("reloader.yaml"), RELOADER).unwrap();
    let (apps, cms, deployments) = (
        gk("examples.ruleop.dev", "ReloadedApp"),
        gk("", "ConfigMap"),
        gk("apps", "Deployment"),
    );
    let mut caches: HashMap<GroupKind, Arc<KindCache>> = HashMap::new();
    caches.insert(
        apps.clone(),
        cache(&apps, "examples.ruleop.dev/v1", "reloadedapps"),
    );
    caches.insert(cms.clone(), cache(&cms, "v1", "configmaps"));
    caches.insert(
        deployments.clone(),
        cache(&deployments, "apps/v1", "deployments"),
    );
    // `c` is listed but missing: it is routed all the same, so its creation reconciles.
    for name in ["a", "b", "unlisted"] {
        caches[&cms].put(config(name));
    }
    let children = [deployments.clone()];
    let lookups = [(cms.clone(), true)];
    let kinds = RuleKinds {
        children: &children,
        related: &[],
        lookups: &lookups,
        decorated: &[],
    };
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut routes = Routes::default();
    let key = (
        "reloader".to_string(),
        ("ns".to_string(), "web".to_string()),
    );
    let observe_and_route = |routes: &mut Routes, list: &str| {
        caches[&apps].put(app(list));
        let parent = caches[&apps].get("ns", "web").unwrap();
        let mut seen = observe(&rule, kinds, &caches, |k| k == &deployments, &parent, now);
        let mut found: Vec<String> = seen
            .observed
            .iter()
            .map(|o| meta::name(o).to_string())
            .collect();
        found.sort();
        let interests = seen.take_lookup_interests().unwrap();
        routes.set(Facet::Lookups, key.clone(), interests);
        found
    };
    let routed_to = |routes: &Routes, name: &str| !routes.by_name(&cms, &named(name)).is_empty();

    assert_eq!(observe_and_route(&mut routes, "b, a,,a ,c"), ["a", "b"]);
    for name in ["a", "b", "c"] {
        assert!(routed_to(&routes, name), "{name} is not routed");
    }
    assert!(!routed_to(&routes, "unlisted"));
    assert_eq!(
        routes.by_name(&cms, &named("a")),
        std::slice::from_ref(&key)
    );

    // The list shrinks: the dropped names leave the index.
    assert_eq!(observe_and_route(&mut routes, "a"), ["a"]);
    assert!(routed_to(&routes, "a"));
    assert!(!routed_to(&routes, "b") && !routed_to(&routes, "c"));

    // An empty list routes nothing.
    assert!(observe_and_route(&mut routes, "").is_empty());
    assert!(routes.is_empty());
}
