//! Criterion benchmark of ruleop's planner on the Memcached rule (`make bench`).
//! `steady`: a converged parent with its Deployment, Service and 3 pods observed
//! (the common reconcile: everything up to date); `first`: nothing observed yet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ruleop::plan::{Input, plan};
use ruleop::rule::parse_rule;
use serde_json::{Value as Json, json};
use std::hint::black_box;

fn observed_for(
    rule: &ruleop::rule::CompiledRule,
    parent: &Json,
    now: jiff::Timestamp,
) -> Vec<Json> {
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

fn bench(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/memcached.yaml");
    let source = std::fs::read_to_string(path).unwrap();
    let rule = parse_rule(path.as_ref(), &source).unwrap();
    let parent = json!({"apiVersion": "cache.example.com/v1alpha1", "kind": "Memcached",
        "metadata": {"name": "example-memcached", "namespace": "ns", "uid": "uid-1", "generation": 1,
            "resourceVersion": "99"},
        "spec": {"size": 3}});
    let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
    let observed = observed_for(&rule, &parent, now);

    let mut g = c.benchmark_group("memcached");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plan_steady", |b| {
        b.iter(|| {
            plan(
                black_box(&rule),
                Input {
                    parent: black_box(&parent),
                    observed: &observed,
                    now,
                    schemas: None,
                },
            )
        })
    });
    g.bench_function("plan_first", |b| {
        b.iter(|| {
            plan(
                black_box(&rule),
                Input {
                    parent: black_box(&parent),
                    observed: &[],
                    now,
                    schemas: None,
                },
            )
        })
    });
    g.bench_function("parse_rule", |b| {
        b.iter(|| parse_rule(path.as_ref(), black_box(&source)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
