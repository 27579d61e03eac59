//! Criterion benchmark of ruleop's planner (`make bench`).
//! `memcached/plan_steady`: a converged parent with its Deployment, Service and 3 ready pods
//! observed (the common reconcile: everything up to date), planned from scratch (the pods
//! carry no resourceVersion, so the memo of converged plans cannot key them);
//! `memcached/plan_unchanged`: the same with every object as the API server holds it (the
//! memo answers); `memcached/plan_first`: nothing observed yet; `converged/<rule>`: every
//! reference rule (`rules/*.yaml`) on its sample parent (`samples/`), after the simulated
//! cluster took every plan until one writes nothing (planned from scratch: the simulated
//! objects have no resourceVersion); `reconcile/*`: one reconcile of a converged parent up to
//! the first API call, with the controller's own functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ruleop_lang::load::parse_rule;
use ruleop_lang::rule::CompiledRule;
use ruleop_plan::testkit::world::World;
use ruleop_plan::{Action, FinalizerChange, Input, Plan, plan};
use serde_json::{Value as Json, json};
use std::hint::black_box;
use std::path::Path;

/// The crate root, read at run time (cargo sets it): `env!` keeps the path the bench was built
/// at, which a target directory shared by two clones would reuse for the other clone.
fn root() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
}

fn now() -> jiff::Timestamp {
    "2026-01-01T00:00:10Z".parse().unwrap()
}

/// The planner's input at the benchmark's time, without schemas.
fn input<'a>(parent: &'a Json, observed: &'a [Json]) -> Input<'a> {
    Input {
        parent,
        observed,
        now: now(),
        schemas: None,
    }
}

fn load_rule(name: &str) -> (CompiledRule, String) {
    let path = format!("{}/rules/{name}.yaml", root());
    let source = std::fs::read_to_string(&path).unwrap();
    (parse_rule(Path::new(&path), &source).unwrap(), source)
}

fn observed_for(rule: &CompiledRule, parent: &Json, now: jiff::Timestamp) -> Vec<Json> {
    // The children as the API server would hold them after the first plan was applied.
    let first = plan(
        rule,
        Input {
            parent,
            observed: &[],
            now,
            schemas: None,
        },
    );
    let mut observed: Vec<Json> = first
        .apply
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut o = d.object.clone();
            o["metadata"]["uid"] = json!(format!("child-{i}"));
            o["metadata"]["resourceVersion"] = json!("100");
            o["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            if o["kind"] == "Deployment" {
                o["status"] = json!({"replicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                    "updatedReplicas": 3, "observedGeneration": 1});
            }
            o
        })
        .collect();
    assert_eq!(
        observed.len(),
        2,
        "the memcached rule renders a Deployment and a Service"
    );
    for i in 0..3 {
        observed.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("example-memcached-5d4f8b7c9-{i}abcd"), "namespace": "ns",
                "uid": format!("pod-{i}"), "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "memcached", "memcached_cr": "example-memcached", "pod-template-hash": "5d4f8b7c9"}},
            "spec": {"containers": [{"name": "memcached", "image": "memcached:1.4.36"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
    }
    observed
}

/// The Memcached parent with its first status, and its children and pods as the API server
/// holds them once converged (the pods without a resourceVersion).
fn converged_memcached(rule: &CompiledRule) -> (Json, Vec<Json>) {
    let mut parent = json!({"apiVersion": "cache.example.com/v1alpha1", "kind": "Memcached",
        "metadata": {"name": "example-memcached", "namespace": "ns", "uid": "uid-1", "generation": 1,
            "resourceVersion": "99"},
        "spec": {"size": 3}});
    let observed = observed_for(rule, &parent, now());
    // The steady plan must be the converged one: nothing to write but the status.
    let steady = plan(rule, input(&parent, &observed));
    assert!(steady.apply.iter().all(|d| d.action == Action::UpToDate));
    parent["status"] = steady.status.unwrap();
    (parent, observed)
}

/// Whether a plan writes nothing: every child up to date, no deletion, status or finalizer.
fn writes_nothing(p: &Plan) -> bool {
    p.apply.iter().all(|d| d.action == Action::UpToDate)
        && p.delete.is_empty()
        && p.status.is_none()
        && p.finalizer == FinalizerChange::None
}

/// The sample parent of rule `name` and its simulated cluster once a plan writes nothing.
fn converged(rule: &CompiledRule, name: &str) -> World {
    let sample = std::fs::read_to_string(format!("{}/samples/{name}.yaml", root())).unwrap();
    let mut parent: Json = ruleop_lang::yaml::from_str(&sample).unwrap();
    let meta = parent["metadata"].as_object_mut().unwrap();
    meta.insert("namespace".into(), json!("bench"));
    meta.insert("uid".into(), json!(format!("uid-{name}")));
    meta.insert("generation".into(), json!(1));
    meta.insert("resourceVersion".into(), json!("99"));
    let mut world = World::new(parent, Vec::new());
    for _ in 0..50 {
        let p = plan(rule, input(&world.parent, &world.observed));
        assert!(p.failure.is_none(), "{name}: {:?}", p.failure);
        if writes_nothing(&p) {
            return world;
        }
        world.apply(&p, now());
    }
    panic!("{name}: no converged plan after 50 steps");
}

fn memcached(c: &mut Criterion) {
    let (rule, source) = load_rule("memcached");
    let path = format!("{}/rules/memcached.yaml", root());
    let (parent, observed) = converged_memcached(&rule);

    let mut g = c.benchmark_group("memcached");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plan_steady", |b| {
        b.iter(|| {
            let p = plan(black_box(&rule), input(black_box(&parent), &observed));
            debug_assert!(writes_nothing(&p));
            p
        })
    });
    let mut unchanged = observed.clone();
    for (i, o) in unchanged.iter_mut().enumerate() {
        o["metadata"]["resourceVersion"] = json!(format!("{}", 200 + i));
    }
    let memo = ruleop::controller::memo::PlanMemo::default();
    g.bench_function("plan_unchanged", |b| {
        b.iter(|| memo.plan(black_box(&rule), input(black_box(&parent), &unchanged)))
    });
    g.bench_function("plan_first", |b| {
        b.iter(|| plan(black_box(&rule), input(black_box(&parent), &[])))
    });
    g.bench_function("parse_rule", |b| {
        b.iter(|| parse_rule(path.as_ref(), black_box(&source)).unwrap())
    });
    g.finish();
}

fn reference_rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("converged");
    g.throughput(Throughput::Elements(1));
    for name in [
        "whalesay",
        "podset",
        "etcdcluster",
        "myapp",
        "memcached",
        "nginxserver",
    ] {
        let (rule, _) = load_rule(name);
        let world = converged(&rule, name);
        g.bench_function(name, |b| {
            b.iter(|| {
                plan(
                    black_box(&rule),
                    input(black_box(&world.parent), &world.observed),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, memcached, reference_rules, reconcile);
criterion_main!(benches);

/// One reconcile of a converged Memcached parent up to the first API call, with the
/// controller's own functions: the parent and its children read from watch caches, the
/// related pods selected by label, the plan, and its comparisons with what is observed.
fn reconcile(c: &mut Criterion) {
    use ruleop::cache::{GroupKind, KindCache};
    use ruleop::controller::observe::{RuleKinds, observe, plan_observed};
    use std::collections::HashMap;
    use std::sync::Arc;

    let (rule, _) = load_rule("memcached");
    let (parent, observed) = converged_memcached(&rule);
    let gk = |group: &str, kind: &str| GroupKind {
        group: group.into(),
        kind: kind.into(),
    };
    let (memcached, deployment, service, pod) = (
        gk("cache.example.com", "Memcached"),
        gk("apps", "Deployment"),
        gk("", "Service"),
        gk("", "Pod"),
    );
    let cache = |kind: &GroupKind, version: &str, plural: &str, managed_only: bool| {
        let (group, _) = ruleop_schema::meta::split_api_version(version);
        let resource = kube::api::ApiResource {
            group: group.into(),
            version: version.rsplit('/').next().unwrap().into(),
            api_version: version.into(),
            kind: kind.kind.clone(),
            plural: plural.into(),
        };
        Arc::new(KindCache::new(
            kind.clone(),
            resource,
            true,
            managed_only,
            1,
        ))
    };
    let mut caches: HashMap<GroupKind, Arc<KindCache>> = HashMap::new();
    caches.insert(
        memcached.clone(),
        cache(
            &memcached,
            "cache.example.com/v1alpha1",
            "memcacheds",
            false,
        ),
    );
    caches.insert(
        deployment.clone(),
        cache(&deployment, "apps/v1", "deployments", true),
    );
    caches.insert(service.clone(), cache(&service, "v1", "services", true));
    caches.insert(pod.clone(), cache(&pod, "v1", "pods", false));
    caches[&memcached].put(parent.clone());
    // The cache of an observed object's kind.
    let cache_of = |o: &Json| match o["kind"].as_str().unwrap() {
        "Deployment" => &caches[&deployment],
        "Service" => &caches[&service],
        _ => &caches[&pod],
    };
    for o in &observed {
        cache_of(o).put(o.clone());
    }
    // Other parents' pods in the same namespace, as a busy namespace has.
    for i in 0..100 {
        caches[&pod].put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("other-{i}"), "namespace": "ns", "uid": format!("other-pod-{i}"),
                "resourceVersion": "1", "labels": {"app": "memcached", "memcached_cr": format!("other-{i}")}}}));
    }
    let children = [deployment.clone(), service.clone()];
    let related = [pod.clone()];
    let kinds = RuleKinds {
        children: &children,
        related: &related,
        lookups: &[],
        decorated: &[],
    };
    let memo = ruleop::controller::memo::PlanMemo::default();
    let one = || {
        let cached = caches[&memcached].get("ns", "example-memcached").unwrap();
        let mut seen = observe(
            &rule,
            kinds,
            &caches,
            |k| children.contains(k),
            &cached,
            now(),
        );
        plan_observed(&rule, &memo, &mut seen, None, now())
    };
    let p = one();
    assert!(writes_nothing(&p), "the cached parent is converged");
    let mut g = c.benchmark_group("reconcile");
    g.throughput(Throughput::Elements(1));
    // `observed_for`'s pods have no resourceVersion: planned from scratch every time.
    g.bench_function("memcached_converged", |b| b.iter(|| black_box(one())));
    // As the API server holds them: the memo of converged plans answers.
    for (i, o) in observed.iter().enumerate() {
        let mut o = o.clone();
        o["metadata"]["resourceVersion"] = json!(format!("{}", 200 + i));
        cache_of(&o).put(o);
    }
    assert!(writes_nothing(&one()));
    g.bench_function("memcached_unchanged", |b| b.iter(|| black_box(one())));
    g.finish();
}
