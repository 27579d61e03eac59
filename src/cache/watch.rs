//! The watch of one kind in one scope: lists, then streams changes into its cache.

use std::fmt::Debug;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::Resource;
use kube::api::{Api, ApiResource};
use kube::core::DynamicResourceScope;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::object::{metadata_to_cached, to_cached};
use super::{Cached, Change, KindCache};
use ruleop_schema::meta;

/// Watch events, objects already in their cached form.
type Events = BoxStream<'static, Result<Event<Arc<Cached>>, watcher::Error>>;

/// Converts the objects of a watch event.
fn convert<K>(event: Event<K>, f: impl Fn(K) -> Arc<Cached>) -> Event<Arc<Cached>> {
    match event {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

/// The watch of `cache`'s kind in `namespace` (or all): whole objects, or only their
/// metadata (`PartialObjectMetadata`) when the cache is metadata-only.
fn events(
    client: Client,
    cache: &KindCache,
    namespace: Option<&str>,
    config: watcher::Config,
) -> Events {
    let resource = cache.resource.clone();
    let namespace = namespace.filter(|_| cache.namespaced);
    if cache.metadata_only {
        stream(client, namespace, config, resource, metadata_to_cached)
    } else {
        stream(client, namespace, config, resource, to_cached)
    }
}

/// The watch of objects read as `K`, converted by `cached`.
fn stream<K>(
    client: Client,
    namespace: Option<&str>,
    config: watcher::Config,
    resource: ApiResource,
    cached: fn(K, &ApiResource) -> Arc<Cached>,
) -> Events
where
    K: Resource<DynamicType = ApiResource, Scope = DynamicResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    watcher::watcher(api, config)
        .default_backoff()
        .map_ok(move |e| convert(e, |o| cached(o, &resource)))
        .boxed()
}

/// Whether a watch error is the API server refusing the list or watch (403).
fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 403,
        watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// Runs the watch of `cache` for one namespace (or all), feeding `changes` until cancelled.
pub async fn watch(
    client: Client,
    cache: Arc<KindCache>,
    namespace: Option<String>,
    changes: mpsc::UnboundedSender<Change>,
    cancel: CancellationToken,
) {
    let mut config = crate::client::kubeclient::watcher_config().any_semantic();
    if cache.managed_only {
        config = config.labels(&format!("{}={}", meta::MANAGED_BY_LABEL, meta::MANAGED_BY));
    } else if let Some(selector) = &cache.label_selector {
        config = config.labels(selector);
    }
    let scope = if cache.namespaced {
        namespace.clone()
    } else {
        None
    };
    let mut stream = events(client, &cache, namespace.as_deref(), config);
    let mut buffer: Vec<Arc<Cached>> = Vec::new();
    let mut counted = false;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            next = stream.next() => match next {
                Some(e) => e,
                None => return,
            },
        };
        let send = |object: Arc<Cached>, old: Option<Arc<Cached>>| {
            let _ = changes.send(Change {
                kind: cache.kind.clone(),
                object,
                old,
            });
        };
        match event {
            Ok(Event::Apply(obj)) => {
                let old = cache.apply(obj.clone());
                send(obj, old);
            }
            Ok(Event::Delete(obj)) => {
                let old = cache.delete(&obj);
                send(obj, old);
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(obj)) => buffer.push(obj),
            Ok(Event::InitDone) => {
                let objects = std::mem::take(&mut buffer);
                let gone = cache.replace_scope(scope.as_deref(), objects.clone());
                if !counted {
                    counted = true;
                    cache.scope_listed();
                }
                tracing::debug!(kind = %cache.kind, objects = objects.len(), "listed");
                for o in gone {
                    send(o.clone(), Some(o));
                }
                for o in objects {
                    send(o, None);
                }
            }
            Err(e) if is_forbidden(&e) => {
                // Waiting for a list that RBAC refuses would hold every parent of the rule
                // back forever: the kind counts as listed (empty), so its parents are planned
                // and their writes report `Forbidden` on the parent. Listing is retried.
                if !counted {
                    counted = true;
                    tracing::warn!(kind = %cache.kind, error = %e, "not allowed to list or watch this kind; its objects are treated as absent until RBAC allows it (retrying with backoff)");
                    cache.scope_listed();
                } else {
                    tracing::debug!(kind = %cache.kind, error = %e, "watch still forbidden");
                }
            }
            Err(e) => {
                tracing::warn!(kind = %cache.kind, error = %e, "watch failed; retrying with backoff");
            }
        }
    }
}
