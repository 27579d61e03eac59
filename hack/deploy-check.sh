#!/usr/bin/env bash
# Checks deploy/: generated files in sync with rules/, `kubectl kustomize deploy/` renders,
# and `kubectl apply -k deploy/ --dry-run=server` passes against the cluster of $KUBECONFIG.
#
# A server-side dry run of namespaced objects fails when their namespace does not exist yet
# (the dry-run Namespace is not persisted). If ruleop-system is missing, this script creates
# it for the duration of the check and deletes it afterwards; nothing else is changed.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=ruleop-system

echo "== generated files"
hack/deploy-sync.sh --check

echo "== kubectl kustomize deploy/"
rendered="$(kubectl kustomize deploy/)"
echo "$rendered" | grep -E '^kind: ' | sort | uniq -c

echo "== kubectl apply -k deploy/ --dry-run=server (KUBECONFIG=${KUBECONFIG:-~/.kube/config})"
kubectl get --raw /readyz >/dev/null 2>&1 || {
    echo "deploy-check: cannot reach the cluster of KUBECONFIG=${KUBECONFIG:-~/.kube/config}" >&2
    echo "  start one, e.g.: make cluster   (kubeconfig: target/controlplane/kubeconfig)" >&2
    exit 1
}
created=0
cleanup() {
    if ((created)); then
        kubectl delete namespace "$NS" --wait=false >/dev/null
        echo "(deleted the temporary namespace $NS)"
    fi
}
trap cleanup EXIT
if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
    kubectl create namespace "$NS" --save-config >/dev/null
    created=1
    echo "(created namespace $NS temporarily: a dry run cannot create it for the namespaced objects)"
fi
kubectl apply -k deploy/ --dry-run=server
echo "deploy-check: OK"
