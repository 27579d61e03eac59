# Sourced by hack/*-test.sh and hack/install-check.sh: starts the local control plane (our
# envtest, `make controlplane`) for the calling script, exports KUBECONFIG, and stops it when
# the script exits (it also exits by itself with its parent).
#   CP_BIN   the control plane binary (default target/controlplane/controlplane)
#   RULEOP_TEST_KUBECONFIG   use this running cluster instead
start_controlplane() {
    if [[ -n "${RULEOP_TEST_KUBECONFIG:-}" ]]; then
        export KUBECONFIG="$RULEOP_TEST_KUBECONFIG"
        return
    fi
    local bin="${CP_BIN:-target/controlplane/controlplane}"
    [[ -x "$bin" ]] || { echo "control plane binary $bin is missing: run 'make controlplane'" >&2; exit 1; }
    CP_DIR="$(mktemp -d)"
    "$bin" --kubeconfig "$CP_DIR/kubeconfig" --data-dir "$CP_DIR" >"$CP_DIR/out" 2>"$CP_DIR/log" &
    CP_PID=$!
    local waited=0
    until grep -q '^ready ' "$CP_DIR/out" 2>/dev/null; do
        if ! kill -0 "$CP_PID" 2>/dev/null || ((waited >= 240)); then
            echo "control plane did not start (log: $CP_DIR/log):" >&2
            tail -20 "$CP_DIR/log" >&2
            exit 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    export KUBECONFIG="$CP_DIR/kubeconfig"
    echo "(local control plane ready, KUBECONFIG=$KUBECONFIG)"
}

stop_controlplane() {
    if [[ -n "${CP_PID:-}" ]]; then
        kill "$CP_PID" 2>/dev/null || true
        wait "$CP_PID" 2>/dev/null || true
        rm -rf "$CP_DIR"
        CP_PID=
    fi
}
