# Sourced by hack/crds.sh and hack/deploy-sync.sh: finds the ruleop binary, building it if
# missing. RULEOP: the binary (default: $CARGO_TARGET_DIR/debug/ruleop).
use_ruleop() { # use_ruleop NAME: sets and exports RULEOP; NAME prefixes the build message
    local target="${CARGO_TARGET_DIR:-$HOME/.cache/ruleop/target}"
    RULEOP="${RULEOP:-$target/debug/ruleop}"
    if [[ ! -x "$RULEOP" ]]; then
        echo "$1: building ruleop ($RULEOP)" >&2
        CARGO_TARGET_DIR="$target" cargo build --bin ruleop >&2
    fi
    export RULEOP
}
