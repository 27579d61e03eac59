//! CPU per API request: ruleop's client (`ruleop::kubeclient`) or kube's default one, on a
//! current-thread runtime or a thread pool, creating Events or applying ConfigMaps in the
//! `default` namespace of the current kubeconfig's cluster (use a throwaway one: `make cluster`).
//!
//! `bench-requests <ruleop|kube> <current|pool> <event|apply> <requests> <in flight> [fenced]`
//!
//! `handoff` instead of `event`/`apply` sends no request: each "request" is the round trip of
//! a reconcile's plan to the blocking pool and back (`ruleop::controller`), with an empty plan.
//!
//! `fenced`: ruleop's client as a leader's (`ruleop run --leader-elect`), whose writes pass
//! the write fence and go on connections of their own (`ruleop::fence`).

use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// This process's CPU seconds (user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, fenced) = match args.split_last() {
        Some((last, rest)) if last == "fenced" => (rest.to_vec(), true),
        _ => (args, false),
    };
    let [which, runtime, kind, requests, in_flight] = args.as_slice() else {
        eprintln!(
            "usage: bench-requests <ruleop|kube> <current|pool> <event|apply> <requests> <in flight> [fenced]"
        );
        std::process::exit(2);
    };
    let requests: usize = requests.parse().expect("requests: a number");
    let in_flight: usize = in_flight.parse().expect("in flight: a number");
    let rt = match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        "pool" => tokio::runtime::Runtime::new(),
        other => panic!("runtime {other}: current or pool"),
    }
    .expect("a runtime");
    rt.block_on(async {
        let config = kube::Config::infer().await.expect("a kubeconfig");
        let fence = ruleop::fence::Fence::shut();
        if fenced {
            // Renewed as a leader's would be.
            let fence = fence.clone();
            tokio::spawn(async move {
                loop {
                    fence.extend(std::time::Instant::now(), std::time::SystemTime::now());
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            });
        }
        let fence = fenced.then_some(&fence);
        let client = match which.as_str() {
            "ruleop" => ruleop::kubeclient::build(config, fence).expect("ruleop's client"),
            "kube" => kube::Client::try_from(config).expect("kube's client"),
            other => panic!("client {other}: ruleop or kube"),
        };
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let prefix = format!("bench-requests-{}", std::process::id());
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        stream::iter(0..requests)
            .for_each_concurrent(in_flight, |i| {
                let (events, maps, name) = (events.clone(), maps.clone(), format!("{prefix}-{i}"));
                async move {
                    match kind.as_str() {
                        "handoff" => {
                            let planned = tokio::task::spawn_blocking(move || name.len());
                            std::hint::black_box(planned.await.expect("planned"));
                        }
                        "event" => {
                            events.create(&PostParams::default(), &event(&name)).await.expect("create");
                        }
                        _ => {
                            let map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name}, "data": {"a": "b"}});
                            let params = PatchParams::apply("bench-requests").force();
                            maps.patch(&name, &params, &Patch::Apply(&map)).await.expect("apply");
                        }
                    }
                }
            })
            .await;
        let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
        println!(
            "{which} client{}, {runtime} runtime, {requests} {kind} requests, {in_flight} in flight: \
             CPU {cpu:.2} s = {:.0} us per request, wall {wall:.1} s",
            if fenced { " (fenced)" } else { "" },
            cpu / requests as f64 * 1e6
        );
    });
}

/// A `Created` Event like ruleop's.
fn event(name: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        action: Some("Reconcile".into()),
        reason: Some("Created".into()),
        note: Some(format!("created apps/v1 Deployment default/{name}")),
        type_: Some("Normal".into()),
        reporting_controller: Some("bench-requests".into()),
        reporting_instance: Some("bench".into()),
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}
