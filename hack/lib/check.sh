# Sourced by hack/*-test.sh: named checks and a closing "N passed, N failed" line.
# A failed command under `set -e` counts as one failure (the EXIT trap reports it).
CHECK_PASSED=0
CHECK_NAME=
check() { # check "what" command...: runs the command, fails the script if it fails
    CHECK_NAME="$1"
    shift
    if "$@"; then
        CHECK_PASSED=$((CHECK_PASSED + 1))
        echo "ok - $CHECK_NAME"
    else
        echo "FAILED - $CHECK_NAME" >&2
        exit 1
    fi
    CHECK_NAME=
}
check_summary() { # the EXIT trap: the closing line, from the script's exit status
    local rc=$?
    local script="${0##*/}"
    if ((rc == 0)); then
        echo "${script%.sh}: ${CHECK_PASSED} passed, 0 failed"
    else
        [[ -n "$CHECK_NAME" ]] && echo "FAILED - $CHECK_NAME" >&2
        echo "${script%.sh}: ${CHECK_PASSED} passed, 1 failed"
    fi
    return "$rc"
}
