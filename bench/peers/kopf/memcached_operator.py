"""The Kopf Memcached operator from seeds/004 (Kopf part), extended to do exactly
what rules/memcached.yaml does: Deployment + Service <name> (labels
app=memcached,memcached_cr=<name>, memcached:1.4.36, port 11211, replicas =
spec.size), owned by the CR; status.nodes (sorted pod names),
status.readyReplicas and a Ready condition, kept current from Deployment and Pod
events. Kopf's default settings; the article's synchronous kubernetes client."""
import asyncio
import datetime

import kopf
import kubernetes
from kubernetes import client, config

config.load_kube_config()
apps_v1 = client.AppsV1Api()
core_v1 = client.CoreV1Api()
custom = client.CustomObjectsApi()
GROUP, VERSION, PLURAL = 'cache.example.com', 'v1alpha1', 'memcacheds'


def children(name, size):
    labels = {'app': 'memcached', 'memcached_cr': name}
    deployment = {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': name},
        'spec': {
            'replicas': size,
            'selector': {'matchLabels': labels},
            'template': {
                'metadata': {'labels': labels},
                'spec': {'containers': [{
                    'name': 'memcached', 'image': 'memcached:1.4.36',
                    'ports': [{'containerPort': 11211, 'name': 'memcached'}],
                }]},
            },
        },
    }
    service = {
        'apiVersion': 'v1', 'kind': 'Service',
        'metadata': {'name': name},
        'spec': {'selector': labels,
                 'ports': [{'port': 11211, 'targetPort': 11211, 'name': 'memcached'}]},
    }
    kopf.adopt(deployment)
    kopf.adopt(service)
    return deployment, service


@kopf.index('', 'v1', 'pods', labels={'app': 'memcached'})
def pods_by_cr(namespace, name, labels, **_):
    return {(namespace, labels.get('memcached_cr')): name}


@kopf.index(GROUP, VERSION, PLURAL)
def memcacheds(namespace, name, spec, status, meta, **_):
    return {(namespace, name): (spec.get('size', 1), dict(status), meta.get('generation'))}


@kopf.index('apps', 'v1', 'deployments')
def ready_by_name(namespace, name, status, **_):
    return {(namespace, name): (status or {}).get('readyReplicas') or 0}


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(spec, name, namespace, logger, **kwargs):
    deployment, service = children(name, spec.get('size', 1))
    for create, patch, body in (
        (apps_v1.create_namespaced_deployment, apps_v1.patch_namespaced_deployment, deployment),
        (core_v1.create_namespaced_service, core_v1.patch_namespaced_service, service),
    ):
        try:
            create(namespace=namespace, body=body)
        except kubernetes.client.exceptions.ApiException as e:
            if e.status != 409:
                raise
            patch(name=name, namespace=namespace, body=body)


@kopf.on.update(GROUP, VERSION, PLURAL, field='spec.size')
def update_fn(spec, name, namespace, logger, **kwargs):
    apps_v1.patch_namespaced_deployment(
        name=name, namespace=namespace, body={'spec': {'replicas': spec.get('size', 1)}})


async def sync_status(namespace, name, pods_by_cr, memcacheds, ready_by_name):
    """Write status from the in-memory indices, only if it changed (the check runs
    on the event loop; only the write goes to a thread, as the client is sync)."""
    try:
        [(size, status, generation)] = memcacheds[(namespace, name)]
    except KeyError:
        return
    nodes = sorted(pods_by_cr.get((namespace, name), []))
    ready = next(iter(ready_by_name.get((namespace, name), [0])))
    ok = 'True' if ready == size else 'False'
    prev = next((c for c in status.get('conditions', []) if c.get('type') == 'Ready'), {})
    cond = {'type': 'Ready', 'status': ok, 'reason': 'Ready' if ok == 'True' else 'NotReady',
            'message': f'{ready}/{size} pods ready', 'observedGeneration': generation,
            'lastTransitionTime': prev.get('lastTransitionTime') if prev.get('status') == ok
            else datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}
    new = {'nodes': nodes, 'readyReplicas': ready, 'conditions': [cond]}
    if all(status.get(k) == v for k, v in new.items()):
        return
    await asyncio.to_thread(custom.patch_namespaced_custom_object_status,
                            GROUP, VERSION, namespace, PLURAL, name, {'status': new})


def owner(meta):
    return next((o['name'] for o in meta.get('ownerReferences', []) if o.get('kind') == 'Memcached'), None)


@kopf.on.event('apps', 'v1', 'deployments')
async def deployment_event(namespace, meta, pods_by_cr, memcacheds, ready_by_name, **_):
    if (name := owner(meta)) is not None:
        await sync_status(namespace, name, pods_by_cr, memcacheds, ready_by_name)


@kopf.on.event('', 'v1', 'pods', labels={'app': 'memcached'})
async def pod_event(namespace, labels, pods_by_cr, memcacheds, ready_by_name, **_):
    if (name := labels.get('memcached_cr')) is not None:
        await sync_status(namespace, name, pods_by_cr, memcacheds, ready_by_name)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def memcached_event(namespace, name, pods_by_cr, memcacheds, ready_by_name, **_):
    await sync_status(namespace, name, pods_by_cr, memcacheds, ready_by_name)
