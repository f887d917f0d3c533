# Shared helpers for the CLI test scripts (tests/cli_*.sh), sourced by each.
# $EMOTE is the binary under test (default ./emote); each script gets a fresh $TMP.
# Each check prints "ok"/"FAIL" and the script ends with "N passed, M failed".
set -u
EMOTE=${EMOTE:-./emote}
case "$EMOTE" in /*) ;; *) EMOTE="$PWD/$EMOTE" ;; esac
ROOT=$PWD
FIXTURES=$ROOT/tests/fixtures
TEST_MODEL=$FIXTURES/emotenet_small.safetensors   # 1x24x24 input, labels c0..c6
TMP=$(mktemp -d /tmp/emote-test.XXXXXX)
trap 'chmod -R u+rwx "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
SKIPPED=0

pass() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "skip $1: $2"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && echo "  $*"; return 0; }

# run CMD...: runs with stdout in $TMP/out, stderr in $TMP/err, status in $STATUS.
run() { "$@" >"$TMP/out" 2>"$TMP/err"; STATUS=$?; }

# expect_status NAME CODE: the last run's exit status was CODE.
expect_status() {
    if [ "$STATUS" = "$2" ]; then pass "$1"; else fail "$1" "exit $STATUS, expected $2; stderr: $(head -c 400 "$TMP/err")"; fi
}
# expect_stderr NAME TEXT: the last run's stderr contains TEXT (fixed string).
expect_stderr() {
    if grep -qF -- "$2" "$TMP/err"; then pass "$1"; else fail "$1" "stderr lacks '$2': $(head -c 400 "$TMP/err")"; fi
}
expect_stdout() {
    if grep -qF -- "$2" "$TMP/out"; then pass "$1"; else fail "$1" "stdout lacks '$2': $(head -c 400 "$TMP/out")"; fi
}
# expect NAME COND...: COND (a test(1) expression or command) succeeds.
expect() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "failed: $*"; fi; }

# make_png PATH [W H [SEED]]: a random grayscale PNG (via tests' helper in Python, no data copied).
make_png() {
    /usr/bin/python3 - "$1" "${2:-24}" "${3:-24}" "${4:-0}" <<'PY'
import sys, numpy as np
from PIL import Image
path, w, h, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)).save(path)
PY
}

finish() {
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" = 0 ]
}
