#!/usr/bin/env bash
# crds/ is generated: crds/<rule>.yaml is `ruleop crd --rule rules/<rule>.yaml` for every
# rule that carries spec.crd (a rule without one keeps a hand-written crds/<rule>.yaml).
#
#   hack/crds.sh           regenerate crds/
#   hack/crds.sh --check   exit 1 (with a diff) if a generated CRD is stale
#
# RULEOP: the ruleop binary (default: $CARGO_TARGET_DIR/debug/ruleop, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ "${1:-}" == "--check" ]] && check=1

source hack/lib/ruleop.sh
use_ruleop crds

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
stale=0
generated=0
shopt -s nullglob
for rule in rules/*.yaml rules/*.yml; do
    name="$(basename "${rule%.*}").yaml"
    if ! "$RULEOP" crd --rule "$rule" > "$tmp/$name" 2> "$tmp/err"; then
        # A rule without spec.crd keeps its hand-written CRD; any other error is fatal.
        grep -q 'has no spec.crd' "$tmp/err" && continue
        cat "$tmp/err" >&2
        exit 1
    fi
    generated=$((generated + 1))
    if ((check)); then
        diff -u "crds/$name" "$tmp/$name" || stale=1
    else
        cp "$tmp/$name" "crds/$name"
    fi
done
if ((check)); then
    if ((stale)); then
        echo "crds: crds/ is out of date with rules/ (spec.crd): run 'make crds' and commit" >&2
        exit 1
    fi
    echo "crds: the ${generated} generated CRDs in crds/ are up to date"
else
    echo "crds: wrote ${generated} CRDs to crds/"
fi
