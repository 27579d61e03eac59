#!/usr/bin/env bash
# Writes crates/ruleop-schema/src/schema/builtin.json (`make openapi-snapshot`): the OpenAPI v3 schemas of the
# built-in kinds, as served by the local control plane's kube-apiserver (version-matched
# upstream), trimmed to what `ruleop check --resource` reads (crates/ruleop-schema/src/schema/validate.rs): no
# descriptions, defaults or list-merge hints; one component map shared by every group.
#   CP_BIN   the control plane binary (default target/controlplane/controlplane)
#   RULEOP_TEST_KUBECONFIG   use this running cluster instead
#   OUT      where to write (default crates/ruleop-schema/src/schema/builtin.json)
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/controlplane.sh
OUT="${OUT:-crates/ruleop-schema/src/schema/builtin.json}"
work="$(mktemp -d)"
trap 'stop_controlplane; rm -rf "$work"' EXIT

start_controlplane
# The control plane is built without version stamping (/version says v0.0.0-master): its
# Kubernetes version is the k8s.io/kubernetes module it is built from.
version="$(kubectl get --raw /version | jq -r .gitVersion)"
if [[ "$version" == v0.0.0* ]]; then
    version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' tests/controlplane/go.mod)"
fi
# Stable group-versions only (no alpha/beta): what rules should write.
kubectl get --raw /openapi/v3 | jq -r '.paths | keys[]' |
    grep -E '^(api/v1|apis/[^/]+/v[0-9]+)$' |
    grep -v -E '^apis/(apiextensions|apiregistration)\.k8s\.io/' >"$work/paths"
n=0
while read -r path; do
    n=$((n + 1))
    kubectl get --raw "/openapi/v3/$path" >"$work/doc-$n.json"
done <"$work/paths"

# Keep the keys the validator reads; recurse only into sub-schemas (property names are data).
jq -s --arg version "$version" '
  def trim:
    if type != "object" then . else
      with_entries(select(.key | IN("type", "properties", "additionalProperties", "items",
        "required", "enum", "format", "nullable", "allOf", "anyOf", "oneOf", "$ref",
        "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource", "x-kubernetes-group-version-kind")))
      | if .properties then .properties |= map_values(trim) else . end
      | if (.additionalProperties | type) == "object" then .additionalProperties |= trim else . end
      | if .items then .items |= trim else . end
      | reduce ("allOf", "anyOf", "oneOf") as $k (.; if .[$k] then .[$k] |= map(trim) else . end)
      | if ."x-kubernetes-group-version-kind" then
          ."x-kubernetes-group-version-kind" |= map({group, version, kind})
        else . end
      # A lone allOf only wraps a $ref (v3 does it to attach a default): unwrap it.
      | if (.allOf | length) == 1 and (keys - ["allOf"] | length) == 0 then .allOf[0] else . end
    end;
  {kubernetesVersion: $version,
   schemas: (map(.components.schemas // {}) | add | map_values(trim))}
' "$work"/doc-*.json >"$work/snapshot.json"
# One component per line: small, and a diff shows which kinds changed.
jq -r '"{\"kubernetesVersion\": \(.kubernetesVersion | tojson), \"schemas\": {",
    (.schemas | to_entries | sort_by(.key) | map("\(.key | tojson): \(.value | tojson)") | join(",\n")),
    "}}"' "$work/snapshot.json" >"$OUT"
echo "wrote $OUT: Kubernetes $version, $(jq '.schemas | length' "$OUT") schemas, $(wc -c <"$OUT") bytes"
