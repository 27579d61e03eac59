#!/usr/bin/env python3
"""ruleop benchmark harness (`make bench`): ruleop against hand-written peers.

Each system runs as a child process of this harness against its own fresh local
control plane (tests/controlplane), one system at a time, with its own
ServiceAccount token, so the kube-apiserver audit log attributes every mutating
request to it. Every number is measured here; nothing is hard-coded.

Environment: QUICK=1 (one repetition, 50 parents, short phases), REPS, PARENTS,
SYSTEMS (comma list), CONTROLPLANE (binary), RULEOP (binary), COLD_ONLY=1 (only the
cold sync and idle phases; no reload run), IDLE_SECONDS, DONE_TIMEOUT, NODES (simulated
nodes; default from the pod count), SCALE=1 (the growth run: cold sync, idle and
create-to-ready at each of SCALE_SIZES parents, default 1000,5000,10000; see scale_main),
RULEOP_ARGS (extra `ruleop run` arguments, e.g. "--events warnings"), RELOAD_PARENTS (parents of
the hot-reload run).
"""
import base64
import concurrent.futures as cf
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml  # from the venv (kubernetes depends on PyYAML)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
QUICK = os.environ.get("QUICK", "") not in ("", "0")
SCALE = os.environ.get("SCALE", "") not in ("", "0")
REPS = int(os.environ.get("REPS", "1" if QUICK or SCALE else "3"))
PARENTS = int(os.environ.get("PARENTS", "50" if QUICK else "1000"))
SIZE = int(os.environ.get("SIZE", "1"))  # spec.size of every parent (pods per parent)
# 10 creates/s: at 20/s on top of 1000 parents this 2-core control plane saturates and every
# system's latency is minutes of queueing in the kube-apiserver (docs/benchmarks.md, Run B).
RATE = int(os.environ.get("RATE", "10"))
RATE_SECONDS = int(os.environ.get("RATE_SECONDS", "10" if QUICK else "30"))
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "5" if QUICK else "60"))
SETTLE_SECONDS = 3 if QUICK else 5  # after convergence, before the idle window
UPDATE_RATES = [10, 25] if QUICK else [10, 25, 50, 100, 200]
UPDATE_STEP_SECONDS = 3 if QUICK else 10
RELOAD_PARENTS = int(os.environ.get("RELOAD_PARENTS", "50" if QUICK else "100"))
DONE_TIMEOUT = float(os.environ.get("DONE_TIMEOUT", "60" if QUICK else "600"))
# A cold sync's time grows with the parent count (about 0.07 s per parent at 1,000 on 2
# cores): without DONE_TIMEOUT=, a run of many parents gets 0.3 s per parent to converge.
COLD_TIMEOUT_PER_PARENT = 0.3
COLD_ONLY = os.environ.get("COLD_ONLY", "") not in ("", "0")  # stop after cold sync + idle (quick A/B runs)
# Extra `ruleop run` arguments, e.g. RULEOP_ARGS="--events warnings" (recorded in the results).
RULEOP_ARGS = os.environ.get("RULEOP_ARGS", "").split()
SCALE_SIZES = [int(x) for x in os.environ.get("SCALE_SIZES", "1000,5000,10000").split(",") if x]
# Pods one simulated node takes (`pods` capacity of the kwok nodes, tests/controlplane).
PODS_PER_NODE = 1000
# Nodes filled to at most this share: the scheduler spreads pods, but not perfectly evenly.
NODE_FILL = 0.8
NS = "bench"
OP_USER = "system:serviceaccount:kube-system:bench-operator"
MUTATING = {"create", "update", "patch", "delete", "deletecollection"}
CP = os.environ.get("CONTROLPLANE", os.path.join(ROOT, "target/controlplane/controlplane"))
RULEOP = os.environ.get("RULEOP", os.path.join(HOME, ".cache/ruleop/target/release/ruleop"))
BENCH_TARGET = os.path.join(HOME, ".cache/ruleop/bench-target")
OUT = os.path.join(ROOT, "target/bench")
VENV = os.path.join(OUT, "venv")
ALL_SYSTEMS = ["ruleop", "kube-rs", "go-controller-runtime", "kopf"]
SYSTEMS = os.environ.get("SYSTEMS", "ruleop,kube-rs" if SCALE else ",".join(ALL_SYSTEMS)).split(",")


def node_count(parents):
    """Simulated nodes for a run with `parents` parents: enough pod capacity, with headroom,
    for every pod the run can create (parents of the rate phase included, spec.size up to 2
    in the update phase); at least 3. NODES= overrides."""
    if os.environ.get("NODES"):
        return int(os.environ["NODES"])
    pods = (parents + RATE * RATE_SECONDS) * max(SIZE, 2)
    return max(3, -(-pods // int(PODS_PER_NODE * NODE_FILL)))


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    if xs[min(int((len(xs) - 1) * p / 100) + 1, len(xs) - 1)] == float("inf"):
        return float("inf")
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ---------------------------------------------------------------- API client
class Kube:
    """Minimal HTTPS client for the kube-apiserver (one connection per thread)."""

    def __init__(self, kubeconfig):
        cfg = yaml.safe_load(open(kubeconfig))
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.host, self.port = cluster["server"].removeprefix("https://").rsplit(":", 1)
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self.tmp = tempfile.mkdtemp(prefix="bench-kube-")
        cert, key = os.path.join(self.tmp, "c.pem"), os.path.join(self.tmp, "k.pem")
        open(cert, "wb").write(base64.b64decode(user["client-certificate-data"]))
        open(key, "wb").write(base64.b64decode(user["client-key-data"]))
        self.ctx.load_cert_chain(cert, key)
        self.ca_data = cluster["certificate-authority-data"]
        self.server = cluster["server"]
        self.local = threading.local()

    def conn(self, fresh=False):
        if fresh:
            return http.client.HTTPSConnection(self.host, int(self.port), context=self.ctx, timeout=3600)
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPSConnection(self.host, int(self.port), context=self.ctx, timeout=60)
        return c

    def req(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(5):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers={"Content-Type": ctype, "Accept": "application/json"})
                r = c.getresponse()
                out = r.read()
            except (http.client.HTTPException, OSError):
                self.local.c = None
                time.sleep(0.2 * (attempt + 1))
                continue
            if r.status in ok:
                return json.loads(out) if out else None
            if r.status == 429 or r.status >= 500:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
        raise RuntimeError(f"{method} {path}: gave up")

    def watch(self, path, rv, on_event, stop):
        """Stream watch events of `path` from resourceVersion rv until stop is set."""
        while not stop.is_set():
            c = self.conn(fresh=True)
            try:
                c.request("GET", f"{path}?watch=1&resourceVersion={rv}&timeoutSeconds=3600&allowWatchBookmarks=true")
                r = c.getresponse()
                while not stop.is_set():
                    line = r.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    now = time.monotonic()
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        on_event(ev["type"], obj, now)
            except (http.client.HTTPException, OSError, ValueError):
                # Back off: a retry loop without a pause would take a core from the
                # control plane being measured (and after it is gone, spin for ever).
                stop.wait(0.5)
            finally:
                c.close()
            if rv is None:
                raise RuntimeError(f"watch {path} expired")


PARENT_PATH = f"/apis/cache.example.com/v1alpha1/namespaces/{NS}/memcacheds"
DEP_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"
SVC_PATH = f"/api/v1/namespaces/{NS}/services"


def parent_done(obj):
    """The one definition of "done" for every system: children exist (implied by
    readyReplicas coming from the Deployment), status.readyReplicas == spec.size,
    status.nodes lists spec.size pods, and the Ready condition is True."""
    size = obj.get("spec", {}).get("size")
    st = obj.get("status") or {}
    return (st.get("readyReplicas") == size and len(st.get("nodes") or []) == size
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []))


class Observer:
    """Watches parents, Deployments and Services; records when things happen."""

    def __init__(self, kube):
        self.kube = kube
        self.lock = threading.Lock()
        self.done_at = {}  # parent -> first time done
        self.dep_at = {}  # deployment -> first seen
        self.svc_at = {}
        self.dep_changes = {}  # deployment -> [(time, replicas, image)]
        self.stop = threading.Event()
        self.threads = []

    def start(self):
        for path, fn in ((PARENT_PATH, self.on_parent), (DEP_PATH, self.on_dep), (SVC_PATH, self.on_svc)):
            lst = self.kube.req("GET", path + "?limit=0")
            for o in lst["items"]:
                fn("ADDED", o, time.monotonic())
            t = threading.Thread(target=self.kube.watch, args=(path, lst["metadata"]["resourceVersion"], fn, self.stop), daemon=True)
            t.start()
            self.threads.append(t)

    def on_parent(self, typ, o, now):
        if typ != "DELETED" and parent_done(o):
            with self.lock:
                self.done_at.setdefault(o["metadata"]["name"], now)

    def on_dep(self, typ, o, now):
        if typ == "DELETED":
            return
        name = o["metadata"]["name"]
        spec = o.get("spec", {})
        img = (spec.get("template", {}).get("spec", {}).get("containers") or [{}])[0].get("image")
        with self.lock:
            self.dep_at.setdefault(name, now)
            ch = self.dep_changes.setdefault(name, [])
            if not ch or ch[-1][1:] != (spec.get("replicas"), img):
                ch.append((now, spec.get("replicas"), img))

    def on_svc(self, typ, o, now):
        if typ != "DELETED":
            with self.lock:
                self.svc_at.setdefault(o["metadata"]["name"], now)

    def close(self):
        """Stops the watch threads (they end when their control plane closes the streams)."""
        self.stop.set()

    def wait(self, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if cond():
                    return True
            time.sleep(0.05)
        return False


# ------------------------------------------------------------- control plane
class ControlPlane:
    def __init__(self, audit_policy, parents):
        self.dir = tempfile.mkdtemp(prefix="bench-cp-", dir=OUT)
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        self.audit = os.path.join(self.dir, "audit.log")
        self.err = open(os.path.join(self.dir, "controlplane.stderr"), "w")
        args = [CP, "--kubeconfig", self.kubeconfig, "--data-dir", self.dir, "--nodes", str(node_count(parents)),
                "--exit-on-stdin-eof"]
        if audit_policy:
            args += ["--audit-log", self.audit, "--audit-policy", audit_policy]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"control plane did not start: {line!r}; see {self.err.name}")
        self.kube = Kube(self.kubeconfig)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def setup_cluster(cp):
    k = cp.kube
    # The parent's CRD, and ruleop's RuleRevision CRD as the chart installs it (ruleop records
    # revisions and pins parents to them; the peers ignore it).
    for path, name in (("crds/memcached.yaml", "memcacheds.cache.example.com"),
                       ("crds/ruleop.dev_rulerevisions.yaml", "rulerevisions.ruleop.dev")):
        crd = yaml.safe_load(open(os.path.join(ROOT, path)))
        k.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        ok = False
        for _ in range(200):
            c = k.req("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if any(x["type"] == "Established" and x["status"] == "True" for x in (c.get("status") or {}).get("conditions") or []):
                ok = True
                break
            time.sleep(0.1)
        assert ok, f"CRD {name} not established"
    k.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for _ in range(100):  # the default ServiceAccount, for pods
        try:
            k.req("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")
            break
        except RuntimeError:
            time.sleep(0.1)
    # The operator's own identity: a ServiceAccount bound to cluster-admin.
    k.req("POST", "/api/v1/namespaces/kube-system/serviceaccounts",
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench-operator"}})
    k.req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "bench-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "bench-operator", "namespace": "kube-system"}]})
    tok = k.req("POST", "/api/v1/namespaces/kube-system/serviceaccounts/bench-operator/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 86400}})
    path = os.path.join(cp.dir, "operator.kubeconfig")
    open(path, "w").write(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "op",
        "clusters": [{"name": "cp", "cluster": {"server": k.server, "certificate-authority-data": k.ca_data}}],
        "users": [{"name": "op", "user": {"token": tok["status"]["token"]}}],
        "contexts": [{"name": "op", "context": {"cluster": "cp", "user": "op", "namespace": NS}}]}))
    return path


def parent(name, size=SIZE):
    return {"apiVersion": "cache.example.com/v1alpha1", "kind": "Memcached",
            "metadata": {"name": name}, "spec": {"size": size}}


def create_parents(kube, names, threads=8):
    with cf.ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda n: kube.req("POST", PARENT_PATH, parent(n)), names))


# ----------------------------------------------------------------- operators
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def operator_cmd(system, rules_dir):
    if system == "ruleop":
        return [RULEOP, "run", "--rules", rules_dir, "--namespace", NS, "--metrics-addr", f"127.0.0.1:{free_port()}",
                *RULEOP_ARGS]
    if system == "kube-rs":
        return [os.path.join(BENCH_TARGET, "release/memcached-kube-rs"), "--namespace", NS]
    if system == "go-controller-runtime":
        return [os.path.join(BENCH_TARGET, "go-controller-runtime"), "--namespace", NS]
    if system == "kopf":
        return [os.path.join(VENV, "bin/kopf"), "run", "--standalone", "--namespace", NS,
                os.path.join(ROOT, "bench/peers/kopf/memcached_operator.py")]
    raise ValueError(system)


class Operator:
    def __init__(self, system, kubeconfig, logdir, rules_dir, prefix=()):
        env = dict(os.environ, KUBECONFIG=kubeconfig, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "info"))
        os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
        self.log = open(os.path.join(OUT, "logs", f"{system}.log"), "w")
        cmd = operator_cmd(system, rules_dir)
        self.metrics = cmd[cmd.index("--metrics-addr") + 1] if "--metrics-addr" in cmd else None
        self.proc = subprocess.Popen([*prefix, *cmd], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def status(self, key):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
        except OSError:
            return None

    def cpu_seconds(self):
        try:
            f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None

    def scrape(self, dest):
        """Save ruleop's /metrics (reconcile and queue-wait histograms) to dest."""
        if not self.metrics:
            return
        try:
            h, p = self.metrics.rsplit(":", 1)
            c = http.client.HTTPConnection(h, int(p), timeout=10)
            c.request("GET", "/metrics")
            open(dest, "wb").write(c.getresponse().read())
        except OSError as e:
            log("metrics scrape failed:", e)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def audit_count(path, start_offset):
    """Mutating requests by the operator's ServiceAccount in the audit log after start_offset."""
    writes, leases, by = 0, 0, {}
    with open(path, "rb") as f:
        f.seek(start_offset)
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("stage") != "ResponseComplete" or e.get("user", {}).get("username") != OP_USER:
                continue
            if e.get("verb") not in MUTATING:
                continue
            res = e.get("objectRef", {}).get("resource", "?")
            if res == "leases":
                leases += 1
            else:
                writes += 1
                key = f"{e['verb']} {res}" + ("/" + e["objectRef"]["subresource"] if e["objectRef"].get("subresource") else "")
                by[key] = by.get(key, 0) + 1
    return writes, leases, by


def paced(items, rate, workers, fn):
    """Calls fn(item) for each item at `rate` per second from a thread pool; returns the
    rate actually achieved."""
    start = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as ex:
        futs = []
        for i, item in enumerate(items):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futs.append(ex.submit(fn, item))
        for f in futs:
            f.result()
    return len(items) / max(time.monotonic() - start, 1e-9)


def size_of(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ------------------------------------------------------------------- phases
def run_system(system, rep, policy, results):
    tag = f"{system} rep {rep + 1}/{REPS}"
    cp = ControlPlane(policy, PARENTS)
    op = obs = None
    try:
        opkube = setup_cluster(cp)
        kube = cp.kube
        rules_dir = tempfile.mkdtemp(prefix="rules-", dir=cp.dir)
        shutil.copy(os.path.join(ROOT, "rules/memcached.yaml"), rules_dir)
        names = [f"mc-{i:05d}" for i in range(PARENTS)]
        create_parents(kube, names)
        obs = Observer(kube)
        obs.start()
        audit0 = size_of(cp.audit)

        # 1. cold sync
        log(f"{tag}: {PARENTS} parents exist; starting the operator")
        t0 = time.monotonic()
        op = Operator(system, opkube, cp.dir, rules_dir)
        cold_timeout = DONE_TIMEOUT if "DONE_TIMEOUT" in os.environ else max(DONE_TIMEOUT, COLD_TIMEOUT_PER_PARENT * PARENTS)
        ok = obs.wait(lambda: len(obs.done_at) >= PARENTS or not op.alive(), cold_timeout)
        if ok and op.alive():
            cold = max(obs.done_at[n] for n in names) - t0
            children = max(max(obs.dep_at[n], obs.svc_at.get(n, 0)) for n in names) - t0
            results.add("cold_sync_seconds", system, cold)
            results.add("cold_sync_children_seconds", system, children)
            results.add("cold_sync_cpu_seconds", system, op.cpu_seconds())
            log(f"{tag}: cold sync {cold:.2f}s (children applied {children:.2f}s, operator CPU {op.cpu_seconds():.1f}s)")
        else:
            log(f"{tag}: cold sync NOT done after {cold_timeout:.0f}s ({len(obs.done_at)}/{PARENTS} done, alive={op.alive()})")
            results.note(system, f"cold sync: {len(obs.done_at)}/{PARENTS} parents done after {cold_timeout:.0f}s timeout; later phases skipped")
            results.add("cold_sync_parents_done_at_timeout", system, len(obs.done_at), timeout_seconds=cold_timeout)
            results.add("rss_peak_mib", system, op.status("VmHWM"))
            return
        op.scrape(os.path.join(OUT, f"{system}-metrics-after-cold-sync.txt"))
        cold_writes = audit_count(cp.audit, audit0)[0] if policy else None
        results.add("cold_sync_writes", system, cold_writes)
        results.add("cold_sync_writes_per_parent", system, None if cold_writes is None else cold_writes / PARENTS)
        results.add("rss_peak_mib", system, op.status("VmHWM"))

        # 3. idle writes, 4. steady memory (still at PARENTS parents)
        time.sleep(SETTLE_SECONDS)
        off = size_of(cp.audit)
        cpu0 = op.cpu_seconds()
        time.sleep(IDLE_SECONDS)
        if policy:
            w, leases, by = audit_count(cp.audit, off)
            results.add("idle_writes", system, w, window_seconds=IDLE_SECONDS)
            results.add("idle_lease_writes", system, leases, window_seconds=IDLE_SECONDS)
            log(f"{tag}: idle writes in {IDLE_SECONDS}s: {w} {by} (+{leases} lease)")
        results.add("idle_cpu_seconds", system, op.cpu_seconds() - cpu0, window_seconds=IDLE_SECONDS)
        results.add("rss_steady_mib", system, op.status("VmRSS"))
        log(f"{tag}: RSS peak {op.status('VmHWM'):.1f} MiB, steady {op.status('VmRSS'):.1f} MiB")
        if COLD_ONLY:
            return

        # 2. create-to-ready latency at a steady rate
        n = RATE * RATE_SECONDS
        new = [f"rate-{i:05d}" for i in range(n)]
        created = {}

        def create(nm):
            t = time.monotonic()
            kube.req("POST", PARENT_PATH, parent(nm))
            created[nm] = t
        paced(new, RATE, 16, create)
        ok = obs.wait(lambda: all(x in obs.done_at for x in new), DONE_TIMEOUT)
        lat = [(obs.done_at[x] - created[x]) * 1000 for x in new if x in obs.done_at]
        chl = [(max(obs.dep_at[x], obs.svc_at.get(x, 0)) - created[x]) * 1000 for x in new if x in obs.dep_at and x in obs.svc_at]
        if not ok:
            results.note(system, f"create-to-ready: {len(lat)}/{n} done within {DONE_TIMEOUT:.0f}s")
        if lat:
            results.add("create_to_ready_p50_ms", system, pct(lat, 50), rate=RATE, seconds=RATE_SECONDS)
            results.add("create_to_ready_p99_ms", system, pct(lat, 99), rate=RATE, seconds=RATE_SECONDS)
            results.add("create_to_children_p50_ms", system, pct(chl, 50), rate=RATE, seconds=RATE_SECONDS)
            results.add("create_to_children_p99_ms", system, pct(chl, 99), rate=RATE, seconds=RATE_SECONDS)
            log(f"{tag}: create-to-ready p50 {pct(lat, 50):.0f}ms p99 {pct(lat, 99):.0f}ms; children p50 {pct(chl, 50):.0f}ms p99 {pct(chl, 99):.0f}ms")
        if SCALE:  # the growth run stops after create-to-ready
            return

        # 5. sustained updates: spec.size patches at increasing rates
        best = 0
        cursor = 0
        for rate in UPDATE_RATES:
            count = rate * UPDATE_STEP_SECONDS
            batch = [names[(cursor + i) % len(names)] for i in range(count)]
            cursor += count
            sent = {}

            def flip(nm):
                with obs.lock:
                    cur = obs.dep_changes[nm][-1][1]
                target = 2 if cur == 1 else 1
                t = time.monotonic()
                kube.req("PATCH", f"{PARENT_PATH}/{nm}", {"spec": {"size": target}},
                         ctype="application/merge-patch+json")
                sent[nm] = (t, target)
            achieved = paced(batch, rate, 32, flip)

            def seen(nm):
                t, target = sent[nm]
                return next((ct for ct, r, _ in obs.dep_changes[nm] if ct >= t and r == target), None)
            obs.wait(lambda: all(seen(nm) is not None for nm in sent), 30)
            with obs.lock:
                lat = [(seen(nm) - sent[nm][0]) * 1000 if seen(nm) is not None else float("inf") for nm in sent]
            p99 = pct(lat, 99)
            log(f"{tag}: updates at {rate}/s (sent {achieved:.0f}/s): p50 {pct(lat, 50):.0f}ms p99 {p99:.0f}ms")
            results.add(f"update_p99_ms_at_{rate}_per_s", system, p99 if p99 != float("inf") else None)
            if p99 < 1000 and achieved >= 0.9 * rate:
                best = rate
            else:
                break
            time.sleep(3)
        results.add("updates_per_second", system, best, rates=UPDATE_RATES, step_seconds=UPDATE_STEP_SECONDS)
    finally:
        if obs:
            obs.close()
        if op:
            op.stop()
        cp.close()


def run_reload(rep, results):
    """ruleop only: rewrite the memcached rule's image tag in the watched rules
    directory; seconds until every parent's Deployment carries the new image."""
    cp = ControlPlane(None, RELOAD_PARENTS)
    op = obs = None
    try:
        opkube = setup_cluster(cp)
        rules_dir = tempfile.mkdtemp(prefix="rules-", dir=cp.dir)
        shutil.copy(os.path.join(ROOT, "rules/memcached.yaml"), rules_dir)
        names = [f"mc-{i:05d}" for i in range(RELOAD_PARENTS)]
        create_parents(cp.kube, names)
        obs = Observer(cp.kube)
        obs.start()
        op = Operator("ruleop", opkube, cp.dir, rules_dir)
        if not obs.wait(lambda: len(obs.done_at) >= RELOAD_PARENTS, DONE_TIMEOUT):
            results.note("ruleop", "hot reload: parents never converged")
            return
        time.sleep(2)
        rule = open(os.path.join(rules_dir, "memcached.yaml")).read()
        assert "memcached:1.4.36" in rule
        tmp = os.path.join(rules_dir, ".memcached.yaml.tmp")
        open(tmp, "w").write(rule.replace("memcached:1.4.36", "memcached:1.4.37"))
        t0 = time.monotonic()
        os.rename(tmp, os.path.join(rules_dir, "memcached.yaml"))

        def updated(nm):
            return next((t for t, _, img in obs.dep_changes[nm] if img == "memcached:1.4.37"), None)
        if obs.wait(lambda: all(updated(n) for n in names), 60):
            with obs.lock:
                last = max(updated(n) for n in names) - t0
            results.add("hot_reload_seconds", "ruleop", last, parents=RELOAD_PARENTS)
            log(f"ruleop hot reload: all {RELOAD_PARENTS} Deployments updated in {last:.2f}s")
        else:
            results.note("ruleop", "hot reload: not all Deployments updated within 60s")
    finally:
        if obs:
            obs.close()
        if op:
            op.stop()
        cp.close()


def run_profile():
    """PROFILE=1: ruleop's cold sync of PARENTS parents under `perf record`; prints the report."""
    cp = ControlPlane(None, PARENTS)
    op = obs = None
    data = os.path.join(OUT, "ruleop-cold-sync.perf.data")
    try:
        opkube = setup_cluster(cp)
        rules_dir = tempfile.mkdtemp(prefix="rules-", dir=cp.dir)
        shutil.copy(os.path.join(ROOT, "rules/memcached.yaml"), rules_dir)
        names = [f"mc-{i:05d}" for i in range(PARENTS)]
        create_parents(cp.kube, names)
        obs = Observer(cp.kube)
        obs.start()
        t0 = time.monotonic()
        op = Operator("ruleop", opkube, OUT, rules_dir,
                      prefix=("perf", "record", "-F", "997", "--call-graph", "dwarf,16384", "-o", data, "--"))
        ok = obs.wait(lambda: len(obs.done_at) >= PARENTS, DONE_TIMEOUT)
        op.scrape(os.path.join(OUT, "ruleop-profile-metrics.txt"))
        log(f"profile: cold sync {'done' if ok else 'NOT done'} in {time.monotonic() - t0:.1f}s; children {max(obs.dep_at.values(), default=t0) - t0:.1f}s")
    finally:
        if obs:
            obs.close()
        if op:
            op.proc.send_signal(signal.SIGINT)  # perf forwards it and writes its data
            op.proc.wait(60)
        cp.close()
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio",
                          "--percent-limit", "1", "-g", "none"], capture_output=True, text=True).stdout
    open(os.path.join(OUT, "ruleop-cold-sync.perf.txt"), "w").write(rep)
    print(rep[:20000])


class Results:
    def __init__(self):
        self.raw = {}  # (metric, system) -> [values]
        self.extra = {}
        self.notes = []

    def add(self, metric, system, value, **extra):
        if value is None:
            return
        self.raw.setdefault((metric, system), []).append(float(value))
        self.extra[(metric, system)] = extra

    def note(self, system, text):
        self.notes.append(f"{system}: {text}")
        log("NOTE", system, text)

    def rows(self, parents, **extra):
        """One row per (metric, system) for the JSON report: median, spread, every value."""
        return [{"metric": metric, "parents": parents, "system": system, **extra,
                 "median": statistics.median(vals), "min": min(vals), "max": max(vals),
                 "values": vals, **self.extra[(metric, system)]}
                for (metric, system), vals in sorted(self.raw.items())]


def rotated(rep):
    """SYSTEMS in the order of repetition `rep`: rotated, so no system always runs first
    (on the coolest machine)."""
    k = rep % len(SYSTEMS)
    return SYSTEMS[k:] + SYSTEMS[:k]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB, {platform.system()} {platform.release()}"


METRICS = [
    ("cold_sync_seconds", "s", "lower"), ("cold_sync_children_seconds", "s", "lower"),
    ("cold_sync_cpu_seconds", "s", "lower"), ("cold_sync_writes", "", "lower"),
    ("cold_sync_writes_per_parent", "", "lower"),
    ("create_to_ready_p50_ms", "ms", "lower"), ("create_to_ready_p99_ms", "ms", "lower"),
    ("create_to_children_p50_ms", "ms", "lower"), ("create_to_children_p99_ms", "ms", "lower"),
    ("idle_writes", "", "lower"), ("idle_lease_writes", "", "lower"), ("idle_cpu_seconds", "s", "lower"),
    ("rss_peak_mib", "MiB", "lower"), ("rss_steady_mib", "MiB", "lower"),
    ("updates_per_second", "/s", "higher"), ("hot_reload_seconds", "s", "lower"),
    ("planner_steady_plans_per_second_per_core", "/s", "higher"),
    ("planner_first_plans_per_second_per_core", "/s", "higher"), ("parse_rule_per_second", "/s", "higher"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    policy = os.path.join(OUT, "audit-policy.yaml")
    open(policy, "w").write(yaml.safe_dump({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [{"level": "Metadata", "users": [OP_USER], "verbs": sorted(MUTATING)}, {"level": "None"}]}))
    if os.environ.get("NO_AUDIT"):
        policy = None
    if os.environ.get("PROFILE"):
        return run_profile()
    if SCALE:
        return scale_main(policy)
    results = Results()
    t_start = time.monotonic()
    log(f"bench: systems {SYSTEMS}, {REPS} repetition(s), {PARENTS} parents of size {SIZE}, "
        f"{RATE}/s for {RATE_SECONDS}s, idle {IDLE_SECONDS}s, update rates {UPDATE_RATES}")
    for rep in range(REPS):
        for system in rotated(rep):
            run_system(system, rep, policy, results)
        if "ruleop" in SYSTEMS and not COLD_ONLY:
            run_reload(rep, results)
    # Criterion's planner results (`cargo bench --bench planner`, run before this by make bench).
    crit = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(HOME, ".cache/ruleop/target")), "criterion/memcached")
    for bench, metric in (("plan_steady", "planner_steady_plans_per_second_per_core"),
                          ("plan_first", "planner_first_plans_per_second_per_core"),
                          ("parse_rule", "parse_rule_per_second")):
        try:
            est = json.load(open(os.path.join(crit, bench, "new/estimates.json")))
            mtime = os.path.getmtime(os.path.join(crit, bench, "new/estimates.json"))
            results.add(metric, "ruleop", 1e9 / est["median"]["point_estimate"], source="criterion",
                        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mtime)))
        except (OSError, KeyError, ValueError):
            log(f"no Criterion estimate for {bench} under {crit}")
    out = {"machine": machine(), "quick": QUICK, "repetitions": REPS, "parents": PARENTS, "size": SIZE,
           "wall_seconds": round(time.monotonic() - t_start, 1), "notes": results.notes, "results": []}
    out["results"] = results.rows(PARENTS)
    json.dump(out, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    print(table(out))


def table(out):
    get = {(r["metric"], r["system"]): r["median"] for r in out["results"]}
    systems = [s for s in ALL_SYSTEMS if s in SYSTEMS]
    peers = [s for s in systems if s != "ruleop"]
    hdr = ["metric"] + systems + [f"ruleop/{p}" for p in peers]
    rows = []
    for m, unit, _ in METRICS:
        if not any((m, s) in get for s in systems):
            continue
        row = [m + (f" ({unit})" if unit else "")]
        row += [fmt(get.get((m, s))) for s in systems]
        row += [ratio(get.get((m, "ruleop")), get.get((m, p))) for p in peers]
        rows.append(row)
    return report(out, f"{out['parents']} parents of spec.size {out['size']}", hdr, rows)


def fmt(v):
    return "-" if v is None else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def ratio(a, b):
    """a/b as `1.23x`, `-` when either is missing (or b is 0)."""
    return "-" if a is None or not b else f"{a / b:.2f}x"


def report(out, what, hdr, rows):
    """The machine, what ran, then a markdown table of `rows` under `hdr`, then the notes."""
    w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    s = [f"machine: {out['machine']}",
         f"{out['repetitions']} repetition(s) (medians), {what}, wall {out['wall_seconds']}s",
         line(hdr), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows]
    s += [f"note: {n}" for n in out["notes"]]
    return "\n".join(s)


# ---------------------------------------------------------------- SCALE=1
# The figures of the growth run (issue 16), in the order printed.
SCALE_METRICS = [
    ("cold_sync_seconds", "s"), ("cold_sync_cpu_seconds", "s"), ("cold_sync_writes_per_parent", ""),
    ("rss_peak_mib", "MiB"), ("rss_steady_mib", "MiB"), ("create_to_ready_p99_ms", "ms"),
]


def scale_main(policy):
    """SCALE=1: for each of SCALE_SIZES parents, every system's cold sync, idle window and
    create-to-ready (at RATE/s on top of the converged parents) on a fresh control plane
    with enough nodes; prints how each figure grows with the parent count and the ratio
    ruleop/peer at each size, and writes target/bench/scale.json."""
    global PARENTS
    t_start = time.monotonic()
    log(f"bench SCALE: systems {SYSTEMS}, parents {SCALE_SIZES}, {REPS} repetition(s), spec.size {SIZE}, "
        f"nodes {[node_count(n) for n in SCALE_SIZES]}")
    runs = []
    for parents in SCALE_SIZES:
        PARENTS = parents
        results = Results()
        for rep in range(REPS):
            for system in rotated(rep):
                run_system(system, rep, policy, results)
        runs.append((parents, results))
    out = {"machine": machine(), "repetitions": REPS, "size": SIZE, "sizes": SCALE_SIZES, "ruleop_args": RULEOP_ARGS,
           "systems": SYSTEMS, "rate": RATE, "rate_seconds": RATE_SECONDS,
           "wall_seconds": round(time.monotonic() - t_start, 1), "notes": [], "results": []}
    for parents, results in runs:
        out["notes"] += [f"{parents} parents: {n}" for n in results.notes]
        out["results"] += results.rows(parents, nodes=node_count(parents))
    json.dump(out, open(os.path.join(OUT, "scale.json"), "w"), indent=1)
    print(scale_table(out))


def scale_table(out):
    """One row per figure and system: its median at each size, the growth from the smallest
    to the largest size, and rows ruleop/<peer> with the ratio at each size."""
    get = {(r["metric"], r["system"], r["parents"]): r["median"] for r in out["results"]}
    sizes = out["sizes"]
    systems = out["systems"]
    peers = [s for s in systems if s != "ruleop"]
    hdr = ["metric", "system"] + [f"{n} parents" for n in sizes] + [f"x{sizes[-1] // max(sizes[0], 1)} parents: growth"]
    rows = []
    for m, unit in SCALE_METRICS:
        name = m + (f" ({unit})" if unit else "")
        for s in systems:
            vals = [get.get((m, s, n)) for n in sizes]
            rows.append([name, s] + [fmt(v) for v in vals] + [ratio(vals[-1], vals[0])])
        if "ruleop" in systems:
            for p in peers:
                rows.append([name, f"ruleop/{p}"]
                            + [ratio(get.get((m, "ruleop", n)), get.get((m, p, n))) for n in sizes] + [""])
    what = (f"spec.size {out['size']}, nodes per size {[node_count(n) for n in sizes]}, "
            f"create-to-ready at {out['rate']}/s for {out['rate_seconds']}s")
    return report(out, what, hdr, rows)


if __name__ == "__main__":
    main()
