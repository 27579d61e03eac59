//! Hand-written typed kube-rs controller doing exactly what rules/memcached.yaml
//! does: Deployment + Service `<name>` (labels app=memcached,memcached_cr=<name>,
//! memcached:1.4.36, port 11211, replicas = spec.size), status.nodes (sorted pod
//! names), status.readyReplicas and a Ready condition. The floor for ruleop.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const IMAGE: &str = "memcached:1.4.36";
const MANAGER: &str = "memcached-kube-rs";

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "cache.example.com",
    version = "v1alpha1",
    kind = "Memcached",
    namespaced,
    status = "MemcachedStatus"
)]
pub struct MemcachedSpec {
    pub size: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemcachedStatus {
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub conditions: Vec<Cond>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cond {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub last_transition_time: String,
    #[serde(default)]
    pub observed_generation: i64,
}

/// (namespace, memcached_cr label) -> pod names.
type PodIndex = Arc<Mutex<HashMap<(String, String), BTreeSet<String>>>>;

struct Ctx {
    client: Client,
    deployments: Store<Deployment>,
    services: Store<Service>,
    pods: PodIndex,
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".into(), "memcached".into()),
        ("memcached_cr".into(), name.into()),
    ])
}

fn pod_key(p: &Pod) -> Option<(String, String)> {
    let l = p.metadata.labels.as_ref()?;
    (l.get("app")? == "memcached").then_some(())?;
    Some((p.namespace()?, l.get("memcached_cr")?.clone()))
}

fn deployment_ok(d: &Deployment, size: i32, ls: &BTreeMap<String, String>) -> bool {
    let Some(spec) = &d.spec else { return false };
    let pod = spec.template.spec.as_ref();
    spec.replicas == Some(size)
        && spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            == Some(ls)
        && pod.is_some_and(|p| {
            p.containers.len() == 1 && p.containers[0].image.as_deref() == Some(IMAGE)
        })
}

async fn reconcile(mc: Arc<Memcached>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = mc.namespace().unwrap_or_default();
    let name = mc.name_any();
    let size = mc.spec.size;
    let ls = labels(&name);
    let owner = mc.controller_owner_ref(&()).into_iter().collect::<Vec<_>>();
    let meta = ObjectMeta {
        name: Some(name.clone()),
        owner_references: Some(owner),
        ..Default::default()
    };
    let pp = PatchParams::apply(MANAGER).force();

    let key = ObjectRef::<Deployment>::new(&name).within(&ns);
    let cur = ctx.deployments.get(&key);
    let ready = match cur {
        Some(d) if deployment_ok(&d, size, &ls) => d.status.as_ref().and_then(|s| s.ready_replicas),
        _ => {
            let desired = Deployment {
                metadata: meta.clone(),
                spec: Some(DeploymentSpec {
                    replicas: Some(size),
                    selector: LabelSelector {
                        match_labels: Some(ls.clone()),
                        ..Default::default()
                    },
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(ls.clone()),
                            ..Default::default()
                        }),
                        spec: Some(PodSpec {
                            containers: vec![Container {
                                name: "memcached".into(),
                                image: Some(IMAGE.into()),
                                ports: Some(vec![ContainerPort {
                                    container_port: 11211,
                                    name: Some("memcached".into()),
                                    ..Default::default()
                                }]),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
                ..Default::default()
            };
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let d = api
                .patch(
                    &name,
                    &pp,
                    &Patch::Apply(&serde_json::json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": desired.metadata, "spec": desired.spec,
                    })),
                )
                .await?;
            d.status.and_then(|s| s.ready_replicas)
        }
    }
    .unwrap_or(0);

    if ctx
        .services
        .get(&ObjectRef::new(&name).within(&ns))
        .is_none()
    {
        let spec = ServiceSpec {
            selector: Some(ls.clone()),
            ports: Some(vec![ServicePort {
                port: 11211,
                target_port: Some(IntOrString::Int(11211)),
                name: Some("memcached".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch(
            &name,
            &pp,
            &Patch::Apply(&serde_json::json!({
                "apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
            })),
        )
        .await?;
    }

    let nodes: Vec<String> = ctx
        .pods
        .lock()
        .expect("pod index")
        .get(&(ns.clone(), name.clone()))
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let old = mc.status.clone().unwrap_or_default();
    let is_ready = if ready == size { "True" } else { "False" };
    let prev = old.conditions.iter().find(|c| c.type_ == "Ready");
    let cond = Cond {
        type_: "Ready".into(),
        status: is_ready.into(),
        reason: if ready == size { "Ready" } else { "NotReady" }.into(),
        message: format!("{ready}/{size} pods ready"),
        last_transition_time: match prev {
            Some(p) if p.status == is_ready => p.last_transition_time.clone(),
            _ => jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_default()
                .to_string(),
        },
        observed_generation: mc.metadata.generation.unwrap_or(0),
    };
    let new = MemcachedStatus {
        nodes,
        ready_replicas: ready,
        conditions: vec![cond],
    };
    if new != old {
        let api: Api<Memcached> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": new })),
        )
        .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Memcached>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    eprintln!("reconcile error: {err}");
    Action::requeue(std::time::Duration::from_secs(1))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut ns = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--namespace" {
            ns = args.next();
        }
    }
    let client = Client::try_default().await?;
    fn api<K>(c: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match ns {
            Some(n) => Api::namespaced(c.clone(), n),
            None => Api::all(c.clone()),
        }
    }
    let cfg = watcher::Config::default();
    let (deployments, dep_w) = reflector::store();
    let dep_stream =
        reflector::reflector(dep_w, watcher(api::<Deployment>(&client, &ns), cfg.clone()))
            .default_backoff()
            .touched_objects();
    let (services, svc_w) = reflector::store();
    let svc_stream =
        reflector::reflector(svc_w, watcher(api::<Service>(&client, &ns), cfg.clone()))
            .default_backoff()
            .touched_objects();
    let pods: PodIndex = Arc::default();
    let index = pods.clone();
    let pod_stream = watcher(
        api::<Pod>(&client, &ns),
        cfg.clone().labels("app=memcached"),
    )
    .default_backoff()
    .map_ok(move |ev| {
        let mut idx = index.lock().expect("pod index");
        let mut touched = Vec::new();
        match ev {
            watcher::Event::Init => idx.clear(),
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                if let (Some(k), Some(n)) = (pod_key(&p), p.metadata.name.clone()) {
                    idx.entry(k).or_default().insert(n);
                }
                touched.push(p);
            }
            watcher::Event::Delete(p) => {
                if let (Some(k), Some(n)) = (pod_key(&p), p.metadata.name.as_ref()) {
                    idx.entry(k).or_default().remove(n);
                }
                touched.push(p);
            }
            watcher::Event::InitDone => {}
        }
        futures::stream::iter(touched.into_iter().map(Ok))
    })
    .try_flatten();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        deployments,
        services,
        pods,
    });
    // 16 parallel reconciles, like `ruleop run`'s default --concurrency (kube-rs'
    // default is unbounded: one TLS connection per in-flight reconcile).
    Controller::new(api::<Memcached>(&client, &ns), cfg.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .owns_stream(dep_stream)
        .owns_stream(svc_stream)
        .watches_stream(pod_stream, |p: Pod| {
            let (ns, cr) = pod_key(&p)?;
            Some(ObjectRef::new(&cr).within(&ns))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}
