#!/usr/bin/env bash
# Runs the built image (`make image`) against a local control plane of its own
# (`make image-test`): podman, host network, the reference rules mounted the way the kubelet
# mounts the Deployment's ConfigMap (files behind a `..data` link), the kubeconfig and its
# context passed with --kubeconfig/--context, leader election on as in the chart. Checks the
# image's user and OCI labels, that every sample becomes Ready with exactly its children, no
# writes once converged, /readyz, the JSON logs, and a clean stop on SIGTERM that releases
# the leader Lease.
#   IMAGE (default localhost/ruleop:<Cargo.toml version>), PODMAN (default "podman --runtime runc"), CP_BIN
#   PODMAN_RUN_OPTS (default: modest ulimits; podman's defaults exceed what these VMs permit
#   and runc then fails with "error setting rlimits")
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/check.sh
source hack/lib/controlplane.sh

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
IMAGE="${IMAGE:-localhost/ruleop:$VERSION}"
read -r -a PODMAN <<<"${PODMAN:-podman --runtime runc}"
read -r -a RUN_OPTS <<<"${PODMAN_RUN_OPTS:---ulimit nofile=8192:8192 --ulimit nproc=4096:4096}"
NAME="ruleop-image-test-$$"
NS=demo
work="$(mktemp -d)"
chmod 755 "$work"
cleanup() {
    local rc=$?
    if ((rc != 0)) && "${PODMAN[@]}" container exists "$NAME" 2>/dev/null; then
        echo "--- operator log (last 30 lines)" >&2
        "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -30 >&2
    fi
    "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    stop_controlplane
    rm -rf "$work"
    (exit "$rc")
    check_summary
}
trap cleanup EXIT

inspect() { "${PODMAN[@]}" image inspect -f "$1" "$IMAGE"; }
equals() { # equals what got want
    [[ "$2" == "$3" ]] || { echo "$1: got '$2', want '$3'" >&2; return 1; }
}
check "image $IMAGE exists" "${PODMAN[@]}" image exists "$IMAGE"
check "runs as non-root user 65532" equals user "$(inspect '{{.Config.User}}')" "65532:65532"
check "OCI label version" equals version \
    "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" "$VERSION"
check "OCI label licenses" equals licenses \
    "$(inspect '{{index .Config.Labels "org.opencontainers.image.licenses"}}')" \
    "$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml)"
check "OCI label source" bash -c '[[ "$0" == https://* ]]' \
    "$(inspect '{{index .Config.Labels "org.opencontainers.image.source"}}')"

start_controlplane
context="$(kubectl config current-context)"

# The kubeconfig, readable by the image's user.
mkdir -p "$work/kube"
cp "$KUBECONFIG" "$work/kube/config"
chmod 755 "$work/kube" && chmod 644 "$work/kube/config"
# The rules as a ConfigMap volume lays them out: a timestamped directory, `..data` pointing at
# it, and one link per key.
stamp="..$(date -u +%Y_%m_%d_%H_%M_%S.000000001)"
mkdir -p "$work/rules/$stamp"
cp rules/*.yaml "$work/rules/$stamp/"
ln -s "$stamp" "$work/rules/..data"
for f in rules/*.yaml; do ln -s "..data/${f##*/}" "$work/rules/${f##*/}"; done
chmod -R a+rX "$work/rules"

kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl apply -n "$NS" -f samples/ >/dev/null

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run() {
    "${PODMAN[@]}" run -d --name "$NAME" --network host "${RUN_OPTS[@]}" \
        -v "$work/kube:/var/run/ruleop-kube:ro" \
        -v "$work/rules:/etc/ruleop/rules:ro" \
        "$IMAGE" run --rules /etc/ruleop/rules \
        --kubeconfig /var/run/ruleop-kube/config --context "$context" \
        --namespace "$NS" --metrics-addr "127.0.0.1:$port" --log-format json \
        --leader-elect --leader-elect-namespace "$NS" >/dev/null
}
check "podman run (host network, rules and kubeconfig mounted read-only)" run
nonroot() {
    local pid
    pid="$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$NAME")"
    equals "uid of the container's process" "$(stat -c %u "/proc/$pid")" 65532
}
check "the process runs as uid 65532" nonroot

resources=(etcdcluster/prod-etcd memcached/example-memcached myapp/myapp-sample
    nginxserver/example-nginx podset/example-podset whalesay/example-whalesay)
all_ready() {
    kubectl wait -n "$NS" --for=condition=Ready=True --timeout=180s "${resources[@]}"
}
check "every sample is Ready" all_ready

# Exactly the children the rules render for the samples (owner label), nothing else.
children() {
    kubectl get -n "$NS" deployments,services,statefulsets,cronjobs,jobs,configmaps \
        -l ruleop.dev/owner -o go-template='{{range .items}}{{.kind}}/{{.metadata.name}}{{"\n"}}{{end}}' | sort
}
expected_children() {
    local got want
    got="$(children)"
    want="ConfigMap/prod-etcd-config
CronJob/prod-etcd-backup
Deployment/example-memcached
Deployment/example-nginx
Deployment/myapp-sample
Job/example-whalesay-job
Service/example-memcached
Service/prod-etcd
StatefulSet/prod-etcd"
    [[ "$got" == "$want" ]] || { printf 'children:\n%s\nwant:\n%s\n' "$got" "$want" >&2; return 1; }
}
check "exactly the expected children" expected_children
podset_pods() { # the PodSet's own pods (generated names): as many as it asks for
    local want got
    want="$(kubectl get -n "$NS" podset example-podset -o jsonpath='{.spec.replicas}')"
    got="$(kubectl get -n "$NS" pods -l ruleop.dev/owner -o name | grep -c '^pod/example-podset-')"
    equals "PodSet pods" "$got" "$want"
}
check "the PodSet has exactly its pods" podset_pods
readyz() { # /readyz is re-evaluated every few seconds: 200 within 30 s of the samples' Ready
    local i
    for i in $(seq 60); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
        sleep 0.5
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"
}
check "/readyz answers 200" readyz
writes() { # the operator's API writes so far (ruleop_api_writes_total, all verbs)
    curl -fsS "http://127.0.0.1:$port/metrics" |
        awk '/^ruleop_api_writes_total/ { n += $2 } END { print n + 0 }'
}
idle() { # converged: no write over 8 s (after the last Ready condition's status write settles)
    sleep 2
    local before after
    before="$(writes)"
    sleep 8
    after="$(writes)"
    equals "API writes over an idle window" "$after" "$before"
}
check "no writes once converged" idle
json_logs() {
    local logs
    logs="$("${PODMAN[@]}" logs "$NAME" 2>&1)"
    ! grep -q $'\e' <<<"$logs" || { echo "colour codes in the log" >&2; return 1; }
    python3 -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
assert lines, "no log lines"
for l in lines:
    json.loads(l)
' <<<"$logs"
}
check "logs are JSON lines without colour codes" json_logs

stop() {
    local start=$SECONDS
    "${PODMAN[@]}" stop -t 30 "$NAME" >/dev/null
    local took=$((SECONDS - start))
    ((took < 30)) || { echo "SIGTERM took ${took}s (killed at the timeout?)" >&2; return 1; }
    equals "exit code after SIGTERM" "$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$NAME")" 0
    "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -3 | grep -q '"message":"stopped"' || {
        echo "no 'stopped' line at the end of the log" >&2
        return 1
    }
}
check "stops cleanly on SIGTERM (exit 0, 'stopped' logged)" stop
lease_released() {
    equals "Lease holder after SIGTERM" \
        "$(kubectl get -n "$NS" lease ruleop-leader -o jsonpath='{.spec.holderIdentity}')" ""
}
check "the leader Lease is released on SIGTERM" lease_released
