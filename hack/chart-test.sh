#!/usr/bin/env bash
# Tests charts/ruleop on a local control plane of its own (`make chart-test`):
#   helm lint; bad values refused with a clear message; `helm template` piped to
#   `kubectl apply --dry-run=server`; the ClusterRole equals `ruleop rbac` for the chart's
#   rules; helm install (own rules and CRDs, --wait), upgrade (a rule added: the rules
#   ConfigMap and ClusterRole follow, pods are not restarted), uninstall (nothing left).
# No container runs in the local control plane (simulated kubelets), so this checks what the
# chart creates; hack/image-test.sh runs the image itself.
#   HELM, RULEOP (a built ruleop binary), CP_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/check.sh
source hack/lib/controlplane.sh
trap 'rc=$?; stop_controlplane; rm -rf "${work:-}"; (exit $rc); check_summary' EXIT

HELM="${HELM:-helm}"
RULEOP="${RULEOP:-${CARGO_TARGET_DIR:-$HOME/.cache/ruleop/target}/debug/ruleop}"
CHART=charts/ruleop
NS=ruleop-chart
RELEASE=ops
FULL="$RELEASE-ruleop"
work="$(mktemp -d)"

# Own rules: the Tenant test rule first, the Roster test rule added by the upgrade.
mkdir -p "$work/rules-v1" "$work/rules-v2"
cp tests/rules/ship/tenant.yaml "$work/rules-v1/"
cp tests/rules/ship/tenant.yaml tests/rules/lifecycle/roster.yaml "$work/rules-v2/"
"$RULEOP" rbac --rules "$work/rules-v1" >"$work/clusterrole-v1.yaml"
"$RULEOP" rbac --rules "$work/rules-v2" >"$work/clusterrole-v2.yaml"
own_v1=(--set-file 'rules.files.tenant\.yaml=tests/rules/ship/tenant.yaml'
    --set-file "rbac.generated=$work/clusterrole-v1.yaml"
    --set crds.install=true
    --set-file 'crds.files.tenant\.yaml=tests/rules/ship/crds/tenant.yaml'
    --set image.repository=localhost/ruleop)
own_v2=(--set-file 'rules.files.tenant\.yaml=tests/rules/ship/tenant.yaml'
    --set-file 'rules.files.roster\.yaml=tests/rules/lifecycle/roster.yaml'
    --set-file "rbac.generated=$work/clusterrole-v2.yaml"
    --set crds.install=true
    --set-file 'crds.files.tenant\.yaml=tests/rules/ship/crds/tenant.yaml'
    --set-file 'crds.files.roster\.yaml=tests/rules/lifecycle/crds/roster.yaml'
    --set image.repository=localhost/ruleop)

check "helm lint (defaults)" "$HELM" lint --strict "$CHART"
check "helm lint (own rules and CRDs, ServiceMonitor)" \
    "$HELM" lint --strict "$CHART" "${own_v1[@]}" --set metrics.serviceMonitor.enabled=true

refused() { # refused "message" helm-template-args...: fails, saying message
    local want="$1" out
    shift
    if out="$("$HELM" template x "$CHART" "$@" 2>&1)"; then
        echo "accepted: $*" >&2
        return 1
    fi
    grep -qF -- "$want" <<<"$out" || { echo "$out" >&2; return 1; }
}
check "own rules without rbac.generated are refused" \
    refused "rbac.generated is required with your own rules" \
    --set-file 'rules.files.tenant\.yaml=tests/rules/ship/tenant.yaml'
check "rbac.generated that is not a ClusterRole is refused" \
    refused "rbac.generated must be the ClusterRole" \
    --set-file 'rules.files.tenant\.yaml=tests/rules/ship/tenant.yaml' \
    --set-file rbac.generated=tests/rules/ship/tenant.yaml
check "a rules.files key that is not a .yaml file name is refused" \
    refused 'rules.files key "tenant" must be a file name' \
    --set-file 'rules.files.tenant=tests/rules/ship/tenant.yaml' \
    --set-file "rbac.generated=$work/clusterrole-v1.yaml"
check "two active replicas without leader election are refused" \
    refused "replicaCount > 1 needs leaderElection.enabled" --set leaderElection.enabled=false

kinds() { "$HELM" template "$RELEASE" "$CHART" -n "$NS" "$@" | grep -E '^kind: ' | sort | tr '\n' ' '; }
expect_kinds() { # expect_kinds "kinds" args...
    local want="$1" got
    shift
    got="$(kinds "$@")"
    [[ "$got" == "$want" ]] || { echo "kinds: got [$got], want [$want]" >&2; return 1; }
}
check "defaults render the operator's objects" expect_kinds \
    "kind: ClusterRole kind: ClusterRoleBinding kind: ConfigMap kind: Deployment kind: Service kind: ServiceAccount "
check "an existing ConfigMap replaces the chart's, ServiceMonitor and CRDs on request" expect_kinds \
    "kind: ClusterRole kind: ClusterRoleBinding kind: CustomResourceDefinition kind: CustomResourceDefinition kind: CustomResourceDefinition kind: CustomResourceDefinition kind: CustomResourceDefinition kind: CustomResourceDefinition kind: Deployment kind: Service kind: ServiceAccount kind: ServiceMonitor " \
    --set rules.existingConfigMap=my-rules --set-file "rbac.generated=$work/clusterrole-v1.yaml" \
    --set crds.install=true --set metrics.serviceMonitor.enabled=true
mounts_existing() {
    "$HELM" template "$RELEASE" "$CHART" --set rules.existingConfigMap=my-rules \
        --set-file "rbac.generated=$work/clusterrole-v1.yaml" --show-only templates/deployment.yaml |
        grep -qE '^ +name: my-rules$'
}
check "the Deployment mounts rules.existingConfigMap" mounts_existing

start_controlplane

dry_run() { # helm template | kubectl apply --dry-run=server, in a namespace that exists
    "$HELM" template "$RELEASE" "$CHART" -n "$NS" "$@" >"$work/rendered.yaml"
    kubectl apply --dry-run=server -f "$work/rendered.yaml" >"$work/dry-run.out"
    grep -q "deployment.apps/$FULL created (server dry run)" "$work/dry-run.out" || {
        cat "$work/dry-run.out" >&2
        return 1
    }
}
kubectl create namespace "$NS" >/dev/null
check "helm template (defaults, reference CRDs) | kubectl apply --dry-run=server" \
    dry_run --set crds.install=true
check "helm template (own rules) | kubectl apply --dry-run=server" dry_run "${own_v1[@]}"
kubectl delete namespace "$NS" --wait=true >/dev/null

# The chart's ClusterRole grants exactly what `ruleop rbac` computed for its rules.
same_rules() { # same_rules clusterrole-name file
    local live want
    live="$(kubectl get clusterrole "$1" -o jsonpath='{.rules}')"
    want="$(sed "s/^  name: ruleop$/  name: $1/" "$2" |
        kubectl create --dry-run=client -o jsonpath='{.rules}' -f -)"
    [[ "$live" == "$want" ]] || { printf 'live: %s\nwant: %s\n' "$live" "$want" >&2; return 1; }
}
install() {
    "$HELM" install "$RELEASE" "$CHART" -n "$NS" --create-namespace "${own_v1[@]}" \
        --wait --timeout 3m >"$work/install.out"
}
check "helm install (own rules and CRDs) --wait: 2 replicas available" install
deployment() { kubectl -n "$NS" get deployment "$FULL" -o jsonpath="$1"; }
check "2 replicas, leader election on" bash -c '[[ "$0" == 2 && "$1" == *--leader-elect* ]]' \
    "$(deployment '{.status.availableReplicas}')" "$(deployment '{.spec.template.spec.containers[0].args}')"
check "ClusterRole = ruleop rbac of the chart's rules (v1)" same_rules "$FULL" "$work/clusterrole-v1.yaml"
rule_keys() { kubectl -n "$NS" get configmap "$FULL-rules" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}'; }
check "rules ConfigMap holds the own rule file" bash -c '[[ "$0" == "tenant.yaml " ]]' "$(rule_keys)"
check "the Tenant CRD is installed" kubectl get crd tenants.ship.test.ruleop.dev -o name
check "ruleop's RuleRevision CRD is installed (the chart's crds/)" \
    kubectl get crd rulerevisions.ruleop.dev -o name

generation="$(deployment '{.metadata.generation}')"
upgrade() {
    "$HELM" upgrade "$RELEASE" "$CHART" -n "$NS" "${own_v2[@]}" --wait --timeout 3m >"$work/upgrade.out"
}
check "helm upgrade (a rule and its CRD added)" upgrade
check "rules ConfigMap updated in place" bash -c '[[ "$0" == "roster.yaml tenant.yaml " ]]' "$(rule_keys)"
check "ClusterRole = ruleop rbac of the chart's rules (v2)" same_rules "$FULL" "$work/clusterrole-v2.yaml"
check "pods not restarted: hot reload takes the new rules" \
    bash -c '[[ "$0" == "$1" ]]' "$generation" "$(deployment '{.metadata.generation}')"
check "the Roster CRD is installed" kubectl get crd rosters.lifecycle.test.ruleop.dev -o name

uninstall() { "$HELM" uninstall "$RELEASE" -n "$NS" --wait --timeout 2m >/dev/null; }
check "helm uninstall" uninstall
nothing_left() {
    local left
    left="$(kubectl get deployment,service,configmap,serviceaccount -n "$NS" \
        -l app.kubernetes.io/instance="$RELEASE" -o name)$(kubectl get clusterrole,clusterrolebinding,crd \
        -l app.kubernetes.io/instance="$RELEASE" -o name)"
    left+="$(kubectl get crd tenants.ship.test.ruleop.dev rosters.lifecycle.test.ruleop.dev \
        -o name --ignore-not-found)"
    [[ -z "$left" ]] || { echo "left after uninstall: $left" >&2; return 1; }
}
check "nothing of the release is left (CRDs included)" nothing_left
