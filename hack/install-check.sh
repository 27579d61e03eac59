#!/usr/bin/env bash
# Follows the README's "Install in a cluster" section word for word (`make install-check`):
# runs each `sh` block marked `<!-- install-check -->`, in order, on a local control plane of
# its own, in a scratch directory holding copies of charts/ and deploy/, my-rules/ (the Tenant
# test rule) and my-crds/ (its CRD), with ruleop and helm on PATH and REGISTRY=localhost.
# After the blocks that install, upgrade and uninstall, checks what the cluster holds.
# (No container runs in the local control plane: pods are simulated; hack/image-test.sh runs
# the image itself.)
#   HELM, RULEOP, CP_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
source hack/lib/check.sh
source hack/lib/controlplane.sh
work="$(mktemp -d)"
trap 'rc=$?; stop_controlplane; rm -rf "$work"; (exit $rc); check_summary' EXIT

HELM="${HELM:-helm}"
RULEOP="${RULEOP:-${CARGO_TARGET_DIR:-$HOME/.cache/ruleop/target}/debug/ruleop}"
mkdir -p "$work/bin" "$work/dir/my-rules" "$work/dir/my-crds"
ln -s "$(command -v "$HELM")" "$work/bin/helm"
ln -s "$(realpath "$RULEOP")" "$work/bin/ruleop"
cp -r charts deploy "$work/dir/"
cp tests/rules/ship/tenant.yaml "$work/dir/my-rules/"
cp tests/rules/ship/crds/tenant.yaml "$work/dir/my-crds/"

# The marked blocks of the section, one file each.
awk -v out="$work/block" '
    /^## Install in a cluster/ { inside = 1; next }
    inside && /^## / { inside = 0 }
    !inside { next }
    /^<!-- install-check -->$/ { marked = 1; next }
    marked && /^```sh$/ { n++; file = sprintf("%s-%02d.sh", out, n); writing = 1; marked = 0; next }
    writing && /^```$/ { writing = 0; close(file); next }
    writing { print > file }
' README.md
blocks=("$work"/block-*.sh)
((${#blocks[@]} == 6)) || { echo "expected 6 install-check blocks in README.md, found ${#blocks[@]}" >&2; exit 1; }

start_controlplane
export PATH="$work/bin:$PATH" REGISTRY=localhost
block() { # block N: runs the README's N-th marked block, echoing each command
    (cd "$work/dir" && bash -euxo pipefail "$work/block-$(printf %02d "$1").sh")
}
deployment() { kubectl -n ruleop-system get deployment ruleop -o jsonpath="$1"; }
rule_keys() {
    kubectl -n ruleop-system get configmap "$1" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}'
}
grants_tenants() {
    kubectl get clusterrole ruleop -o jsonpath='{.rules[*].resources}' | grep -q '"tenants/finalizers"'
}
gone() { # gone resource...: none of them exists (within 60 s: garbage collection is async)
    local left i
    for i in $(seq 120); do
        left="$(kubectl get "$@" -o name --ignore-not-found 2>/dev/null)"
        [[ -z "$left" ]] && return 0
        sleep 0.5
    done
    echo "still there: $left" >&2
    return 1
}

check "README: check the rules, generate their ClusterRole, apply their CRDs" block 1
check "README: helm install and rollout status" block 2
check "the Deployment runs the pushed image with leader election, 2 replicas" bash -c \
    '[[ "$0" == localhost/ruleop:0.1.0 && "$1" == *--leader-elect* && "$2" == 2 ]]' \
    "$(deployment '{.spec.template.spec.containers[0].image}')" \
    "$(deployment '{.spec.template.spec.containers[0].args}')" \
    "$(deployment '{.status.readyReplicas}')"
check "the rules ConfigMap holds my-rules/tenant.yaml" \
    bash -c '[[ "$0" == "tenant.yaml " ]]' "$(rule_keys ruleop-rules)"
check "the ClusterRole grants the Tenant kind" grants_tenants

# The operator as the chart deploys it, but on this host (no container runs here): the
# release's ServiceAccount token, its rules ConfigMap, leader election in its namespace. A
# Tenant becomes Ready, so the ClusterRole from `ruleop rbac` is all it needs.
operator_as_the_chart() {
    kubectl config view --raw --minify >"$work/sa.kubeconfig"
    KUBECONFIG="$work/sa.kubeconfig" kubectl config set-credentials chart-sa \
        --token="$(kubectl -n ruleop-system create token ruleop)" >/dev/null
    KUBECONFIG="$work/sa.kubeconfig" kubectl config set-context --current --user=chart-sa >/dev/null
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    ruleop run --kubeconfig "$work/sa.kubeconfig" --rules-configmap ruleop-system/ruleop-rules \
        --leader-elect --leader-elect-namespace ruleop-system --metrics-addr "127.0.0.1:$port" \
        --log-format json 2>"$work/operator.log" &
    OP_PID=$!
    kubectl create namespace team-a >/dev/null
    printf 'apiVersion: ship.test.ruleop.dev/v1\nkind: Tenant\nmetadata: {name: acme, namespace: team-a}\nspec: {tier: gold}\n' |
        kubectl apply -f - >/dev/null
    kubectl wait -n team-a --for=condition=Ready=True --timeout=120s tenant/acme || {
        tail -20 "$work/operator.log" >&2
        return 1
    }
    local children
    children="$(kubectl get -n team-a configmaps,secrets,serviceaccounts -l ruleop.dev/owner -o name | sort | tr '\n' ' ')"
    [[ "$children" == "configmap/acme-quota configmap/acme-settings secret/acme-token serviceaccount/acme-runner " ]] || {
        echo "children: $children" >&2
        return 1
    }
}
check "with the release's ServiceAccount and rules, a Tenant becomes Ready" operator_as_the_chart
check "README: helm upgrade" block 3
check "README: uninstall (Helm)" block 4
check "the Tenant's children are gone with it" gone -n team-a configmap/acme-settings \
    configmap/acme-quota secret/acme-token serviceaccount/acme-runner
kill "$OP_PID" && wait "$OP_PID" || true
check "nothing left of the Helm install" gone namespace/ruleop-system clusterrole/ruleop \
    clusterrolebinding/ruleop crd/tenants.ship.test.ruleop.dev
check "README: install with kustomize" block 5
check "the overlay's rules ConfigMap holds my-rules/tenant.yaml only" \
    bash -c '[[ "$0" == "tenant.yaml " ]]' "$(rule_keys ruleop-rules)"
check "the overlay's ClusterRole grants the Tenant kind" grants_tenants
check "the overlay's image" bash -c '[[ "$0" == localhost/ruleop:0.1.0 ]]' \
    "$(deployment '{.spec.template.spec.containers[0].image}')"
check "README: uninstall (kustomize)" block 6
check "nothing left of the kustomize install" gone namespace/ruleop-system clusterrole/ruleop \
    clusterrolebinding/ruleop crd/tenants.ship.test.ruleop.dev
