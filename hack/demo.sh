#!/usr/bin/env bash
# `make demo`: ruleop end to end on a local control plane, in one terminal.
#
# Builds ruleop and the local control plane, starts the control plane (kubeconfig:
# target/demo/kubeconfig), installs the reference CRDs, runs `ruleop run` on namespace demo
# (logs: target/demo/ruleop.log), applies samples/ and shows a live summary every 2 s until
# Ctrl-C, which stops the operator and the control plane and removes their data.
#
#   make demo                  interactive
#   DEMO_ONCE=1 make demo      (or hack/demo.sh --once) wait until every sample CR is
#                              Ready (timeout DEMO_TIMEOUT, default 120 s), print the summary
#                              once, clean up; exit 1 if not all are Ready.
#   CONTROLPLANE=/path/bin     use this control plane binary instead of building it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

ONCE="${DEMO_ONCE:-0}"
[[ "${1:-}" == "--once" ]] && ONCE=1
[[ "$ONCE" == "0" || -z "$ONCE" ]] && ONCE=0 || ONCE=1
TIMEOUT="${DEMO_TIMEOUT:-120}"
NS=demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ruleop/target}"
RULEOP="$CARGO_TARGET_DIR/debug/ruleop"
DEMO_DIR=target/demo
KC="$DEMO_DIR/kubeconfig"
DATA="$DEMO_DIR/data"
CP_LOG="$DEMO_DIR/controlplane.log"
OP_LOG="$DEMO_DIR/ruleop.log"

if [[ -t 1 ]]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B="" G="" R="" N=""; fi
step() { printf '%s==> %s%s\n' "$B" "$*" "$N"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
for tool in kubectl python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

CP_PID="" OP_PID="" TICKER_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$TICKER_PID" ]] && kill "$TICKER_PID" 2>/dev/null
    echo
    if [[ -n "$OP_PID" ]] && kill -0 "$OP_PID" 2>/dev/null; then
        step "stopping ruleop (pid $OP_PID)"
        kill -TERM "$OP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$OP_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$OP_PID" 2>/dev/null || true
    fi
    if [[ -n "$CP_PID" ]] && kill -0 "$CP_PID" 2>/dev/null; then
        step "stopping the control plane (pid $CP_PID)"
        kill -TERM "$CP_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CP_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$CP_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$DATA" "$KC"
    echo "removed $DATA and $KC; logs kept: $OP_LOG, $CP_LOG"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints "still working" lines (or a spinner on a terminal) while a long step runs.
start_ticker() {
    local what="$1" start=$SECONDS
    (
        i=0 spin='|/-\'
        while sleep 1; do
            i=$((i + 1)) e=$((SECONDS - start))
            if [[ -t 1 ]]; then
                printf '\r   %s %s: %dm%02ds elapsed ' "${spin:i%4:1}" "$what" $((e / 60)) $((e % 60))
            elif ((i % 15 == 0)); then
                printf '   ... %s: %dm%02ds elapsed\n' "$what" $((e / 60)) $((e % 60))
            fi
        done
    ) &
    TICKER_PID=$!
}
stop_ticker() {
    kill "$TICKER_PID" 2>/dev/null || true
    wait "$TICKER_PID" 2>/dev/null || true
    TICKER_PID=""
    [[ -t 1 ]] && printf '\r\e[K'
    return 0
}

# The control plane and ruleop run in their own session (setsid), so that Ctrl-C reaches only
# this script, whose trap stops ruleop first and then the control plane. (The control plane
# also stops by itself if this script dies: it watches its parent process.)
DETACH=""
command -v setsid >/dev/null && DETACH=setsid

mkdir -p "$DEMO_DIR"
rm -rf "$DATA" "$KC"
mkdir -p "$DATA"

# 1. Build.
step "building ruleop (cargo build --bin ruleop; the first build takes a few minutes)"
cargo build --bin ruleop

if [[ -n "${CONTROLPLANE:-}" ]]; then
    CP_BIN="$CONTROLPLANE"
    step "using the control plane binary $CP_BIN (CONTROLPLANE is set)"
else
    CP_BIN=target/controlplane/controlplane
    [[ -d tests/controlplane ]] || die "tests/controlplane/ is missing: set CONTROLPLANE=/path/to/controlplane"
    if [[ -x "$CP_BIN" ]]; then
        step "building the local control plane (make controlplane; up to date: a few seconds)"
    else
        step "building the local control plane (make controlplane): the FIRST Go build downloads"
        echo "    and compiles kube-apiserver, etcd, the controller manager, scheduler and kwok:"
        echo "    expect several minutes (go reports module downloads; a timer shows it is alive)"
    fi
    start_ticker "building the control plane"
    if ! make --no-print-directory controlplane; then
        stop_ticker
        die "control plane build failed"
    fi
    stop_ticker
fi
[[ -x "$CP_BIN" ]] || die "no control plane binary at $CP_BIN"

# 2. Control plane.
step "starting the local control plane (kubeconfig $KC, log $CP_LOG)"
rm -f "$DEMO_DIR/controlplane.out" "$KC" # no stale "ready" line from a previous run
$DETACH "$CP_BIN" --kubeconfig "$KC" --data-dir "$DATA" >"$DEMO_DIR/controlplane.out" 2>"$CP_LOG" &
CP_PID=$!
deadline=$((SECONDS + 120))
until grep -q '^ready ' "$DEMO_DIR/controlplane.out" 2>/dev/null && [[ -s "$KC" ]]; do
    kill -0 "$CP_PID" 2>/dev/null || { tail -20 "$CP_LOG" >&2; die "the control plane exited; see $CP_LOG"; }
    ((SECONDS < deadline)) || { tail -20 "$CP_LOG" >&2; die "the control plane was not ready within 120 s; see $CP_LOG"; }
    sleep 0.5
done
export KUBECONFIG="$ROOT/$KC"
echo "    ready: Kubernetes $(kubectl get --raw /version | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["major"] + "." + v["minor"])'), $(kubectl get nodes --no-headers | wc -l) simulated nodes (kwok: pods go Running, no real containers)"

# 3. CRDs and namespace.
step "installing the reference CRDs (kubectl apply -f crds/)"
kubectl apply -f crds/
kubectl wait --for condition=Established -f crds/ --timeout=60s
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -

# 4. The operator.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
step "starting ruleop run --rules rules --namespace $NS --metrics-addr 127.0.0.1:$PORT (log $OP_LOG)"
$DETACH "$RULEOP" run --rules rules --namespace "$NS" --metrics-addr "127.0.0.1:$PORT" >"$OP_LOG" 2>&1 &
OP_PID=$!
deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
    kill -0 "$OP_PID" 2>/dev/null || { tail -20 "$OP_LOG" >&2; die "ruleop exited; see $OP_LOG"; }
    ((SECONDS < deadline)) || { tail -20 "$OP_LOG" >&2; die "ruleop not ready within 30 s; see $OP_LOG"; }
    sleep 0.5
done
echo "    ruleop is ready (caches synced)"

# 5. Samples.
step "applying the samples (kubectl apply -n $NS -f samples/)"
kubectl apply -n "$NS" -f samples/
EXPECT="$(cat samples/*.yaml | grep -c '^kind:')"

# Child kinds: whatever the rule set may create (from `ruleop rbac`), minus events/leases.
CHILDREN="$("$RULEOP" rbac --rules rules | kubectl create --dry-run=client -o json -f - | python3 -c '
import json, sys
out = set()
for r in json.load(sys.stdin)["rules"]:
    if "create" not in r.get("verbs", []):
        continue
    for g in r.get("apiGroups", []):
        for res in r.get("resources", []):
            if res not in ("events", "leases") and "/" not in res:
                out.add(res + ("." + g if g else ""))
print(",".join(sorted(out)) or "pods")
')"

HEADERS=(
    "${B}ruleop demo${N}: ruleop reconciles the $EXPECT sample CRs in namespace $NS on a local control"
    "plane (kwok nodes: pods are simulated). Ctrl-C stops everything and removes the cluster data."
    "log: $OP_LOG  kubeconfig: $KC  metrics: 127.0.0.1:$PORT/metrics"
    "try: kubectl --kubeconfig $KC -n $NS patch podset example-podset --type merge \\"
    "       -p '{\"spec\":{\"replicas\":5}}'      or edit rules/*.yaml (hot reload)"
)
summary() {
    local args=("$NS" "$CHILDREN" --expect "$EXPECT")
    for h in "$@"; do args+=(--header "$h"); done
    python3 hack/demo-summary.py "${args[@]}"
}

if ((ONCE)); then
    step "waiting up to ${TIMEOUT}s for all $EXPECT CRs to be Ready"
    deadline=$((SECONDS + TIMEOUT))
    start=$SECONDS
    rc=3
    while ((SECONDS < deadline)); do
        kill -0 "$OP_PID" 2>/dev/null || { tail -20 "$OP_LOG" >&2; die "ruleop exited; see $OP_LOG"; }
        if summary >/dev/null 2>&1; then rc=0; break; fi
        sleep 2
    done
    echo
    summary "${HEADERS[@]}" && rc=0 || true # the final word: it may have become Ready meanwhile
    echo
    if ((rc == 0)); then
        printf '%sall %s CRs Ready after %ds%s\n' "$G" "$EXPECT" $((SECONDS - start)) "$N"
        exit 0
    fi
    printf '%snot all CRs Ready after %ds (see %s)%s\n' "$R" "$TIMEOUT" "$OP_LOG" "$N" >&2
    exit 1
fi

while true; do
    kill -0 "$OP_PID" 2>/dev/null || { tail -20 "$OP_LOG" >&2; die "ruleop exited; see $OP_LOG"; }
    kill -0 "$CP_PID" 2>/dev/null || die "the control plane exited; see $CP_LOG"
    out="$(summary "${HEADERS[@]}" 2>&1 || true)"
    if [[ -t 1 ]]; then
        printf '\e[H\e[2J%s\n' "$out"
    else
        printf '%s\n\n' "$out"
    fi
    sleep 2
done
