#!/usr/bin/env python3
"""One screen of `make demo`: every ruleop CR in a namespace with its Ready condition, key
status fields and children (objects labelled ruleop.dev/owner=<uid>).

    demo-summary.py NAMESPACE CHILD_RESOURCES [--expect N] [--header LINE]...

CHILD_RESOURCES is a comma-separated kubectl resource list (pods,deployments.apps,...).
Exit status: 0 when at least N CRs exist and all are Ready=True, 3 otherwise (2 on a
kubectl error). Standard library only; uses kubectl from PATH and $KUBECONFIG.
"""
import json
import os
import shutil
import subprocess
import sys
import time

OWNER_LABEL = "ruleop.dev/owner"


def kubectl_json(*args):
    out = subprocess.run(["kubectl", *args, "-o", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or "kubectl failed")
    return json.loads(out.stdout).get("items", [])


def ready_condition(obj):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def compact(value):
    """A status value on one short line."""
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return "[" + ",".join(str(v) for v in value) + "]"
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={compact(v)}" for k, v in value.items()) + "}"
    return str(value)


def child_state(obj):
    kind, st, spec = obj["kind"], obj.get("status") or {}, obj.get("spec") or {}
    if kind == "Pod":
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in st.get("conditions") or [])
        phase = st.get("phase", "Pending")
        return phase + (", ready" if ready and phase == "Running" else "")
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)} ready"
    if kind == "Job":
        for c in st.get("conditions") or []:
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
                return c["type"]
        return f"active={st.get('active', 0)} succeeded={st.get('succeeded', 0)}"
    if kind == "CronJob":
        last = st.get("lastScheduleTime", "never run")
        return f"schedule '{spec.get('schedule')}', last: {last}"
    if kind == "Service":
        ports = ",".join(str(p.get("port")) for p in spec.get("ports") or [])
        return f"{spec.get('type', 'ClusterIP')} {spec.get('clusterIP', '')} ports {ports}"
    if kind in ("ConfigMap", "Secret"):
        return f"{len(obj.get('data') or {})} keys"
    return ""


def main():
    args = sys.argv[1:]
    expect, headers, pos = 0, [], []
    while args:
        a = args.pop(0)
        if a == "--expect":
            expect = int(args.pop(0))
        elif a == "--header":
            headers.append(args.pop(0))
        else:
            pos.append(a)
    namespace, child_resources = pos
    width = shutil.get_terminal_size((100, 40)).columns if sys.stdout.isatty() else 100
    width = max(60, min(width, 160))

    def line(text=""):
        print(text if len(text) <= width else text[: width - 1] + "…")

    try:
        crs = kubectl_json("get", "ruleop", "-n", namespace)
        children = kubectl_json("get", child_resources, "-n", namespace, "-l", OWNER_LABEL)
    except RuntimeError as e:
        for h in headers:
            line(h)
        line(f"kubectl: {e}")
        return 2
    by_owner = {}
    for c in children:
        owner = (c["metadata"].get("labels") or {}).get(OWNER_LABEL)
        by_owner.setdefault(owner, []).append(c)

    crs.sort(key=lambda o: (o["kind"], o["metadata"]["name"]))
    n_ready = sum(1 for o in crs if (ready_condition(o) or {}).get("status") == "True")
    for h in headers:
        line(h)
    line(f"{time.strftime('%H:%M:%S')}  namespace {namespace}: {n_ready}/{len(crs)} CRs Ready"
         + (f" (expecting {expect})" if expect and len(crs) < expect else ""))
    line("─" * min(width, 100))
    for o in crs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        cond = ready_condition(o)
        if cond is None:
            ready = "Ready=?    (not reconciled yet)"
        else:
            ready = f"Ready={cond.get('status')}"
            ready = f"{ready:<11}{cond.get('reason', '')}"
            if cond.get("message"):
                ready += f": {cond['message']}"
        line(f"{name:<34} {ready}")
        status = {k: v for k, v in (o.get("status") or {}).items()
                  if k not in ("conditions", "observedGeneration")}
        # status fields, wrapped at the terminal width (one over-long field is cut)
        cur = "    status:"
        for k, v in status.items():
            item = f"{k}={compact(v)}"
            if len(cur) + 2 + len(item) > width and cur.strip() != "status:":
                line(cur)
                cur = "           "
            cur += "  " + item
        if status:
            line(cur)
        kids = sorted(by_owner.get(o["metadata"]["uid"], []),
                      key=lambda c: (c["kind"], c["metadata"]["name"]))
        if not kids:
            line("    children: none")
        for c in kids:
            cname = f"{c['kind']}/{c['metadata']['name']}"
            line(f"    └ {cname:<40} {child_state(c)}")
    if not crs:
        line("(no ruleop CRs yet)")
    all_ready = len(crs) >= max(expect, 1) and n_ready == len(crs)
    return 0 if all_ready else 3


if __name__ == "__main__":
    sys.exit(main())
