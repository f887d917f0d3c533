#!/usr/bin/env bash
# Runs every test suite three ways: a normal -O2 build, an ASan+UBSan build, and the
# unit tests plus a CLI run under valgrind. Sums the suites' "N passed, M failed" lines
# and ends with one such line; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
JOBS=-j$(nproc)
total_passed=0
total_failed=0
log=$(mktemp /tmp/emote-suite.XXXXXX)
trap 'rm -f "$log"' EXIT

# suite NAME CMD...: runs CMD, shows its output, adds its closing counts (a crash or a
# missing closing line counts as one failure).
suite() {
    local name=$1; shift
    echo "== $name"
    "$@" >"$log" 2>&1
    local status=$?
    cat "$log"
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [ -z "$line" ]; then
        echo "FAIL $name: exited $status without a closing line"
        total_failed=$((total_failed + 1))
        return
    fi
    local p f
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    if [ "$status" != 0 ] && [ "$f" = 0 ]; then f=1; echo "FAIL $name: exited $status"; fi
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
}

# check NAME CMD...: a single pass/fail step (builds, valgrind runs).
check() {
    local name=$1; shift
    if "$@" >"$log" 2>&1; then
        echo "ok   $name"; total_passed=$((total_passed + 1))
    else
        cat "$log"; echo "FAIL $name"; total_failed=$((total_failed + 1))
    fi
}

run_suites() { # BUILD_DIR LABEL
    local build=$1 label=$2
    suite "unit + parity tests ($label)" "$build/test_unit"
    for script in tests/cli_*.sh; do
        suite "$(basename "$script" .sh) ($label)" env EMOTE="$build/emote" EMOTE_SUITE="$label" bash "$script"
    done
}

# The sanitizer build uses clang where it is installed (its UBSan with float-cast-overflow,
# the same checks as the fuzz targets), else gcc with float-cast-overflow added. Each
# compiler has its own build folder: make does not notice a change of compiler.
SANITIZE="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"
SAN_CC=$(command -v clang >/dev/null && echo clang || echo gcc)
check "build (release, -O2 -Wall -Wextra -Werror)" $MAKE $JOBS all build/release/test_unit
check "build (ASan+UBSan, $SAN_CC)" $MAKE $JOBS CC=$SAN_CC BUILD=build/asan-$SAN_CC CFLAGS="-O1 -g $SANITIZE" \
    LDFLAGS="$SANITIZE" build/asan-$SAN_CC/emote build/asan-$SAN_CC/test_unit fuzz-replay

run_suites build/release release
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run_suites build/asan-$SAN_CC asan

# Every committed fuzz corpus through its target, built without libFuzzer in the sanitizer
# build (tests/fuzz/replay_main.c): a crash, a sanitizer report or a failed check fails it.
replay_corpus() { # READER
    local inputs=(tests/fuzz/corpus/"$1"/*)
    [ -f "${inputs[0]}" ] || { echo "tests/fuzz/corpus/$1: no inputs"; return 1; }
    build/asan-$SAN_CC/fuzz_replay/fuzz_"$1" "${inputs[@]}"
}
for target in tests/fuzz/fuzz_*.c; do
    reader=$(basename "$target" .c); reader=${reader#fuzz_}
    check "fuzz corpus $reader replayed (ASan+UBSan, $SAN_CC)" replay_corpus "$reader"
done

VALGRIND="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --quiet"
# Valgrind hides AVX-512 and does not follow the CLI's re-exec that picks OpenBLAS kernels
# (src/cli/blas_kernel.c), so the kernel is named up front: every run stays under valgrind.
export OPENBLAS_CORETYPE=Prescott
suite "unit + parity tests (valgrind)" env EMOTE_TEST_QUICK=1 $VALGRIND build/release/test_unit
check "classify a folder with a bad file (valgrind)" bash -c "
    d=\$(mktemp -d); trap 'rm -rf \$d' EXIT
    /usr/bin/python3 -c 'import numpy as np; from PIL import Image; [Image.fromarray(np.random.default_rng(i).integers(0,256,(24,24),dtype=np.uint8)).save(\"'\$d'/%d.png\" % i) for i in range(5)]'
    echo 'not an image' > \$d/bad.png
    $VALGRIND build/release/emote -m tests/fixtures/emotenet_small.safetensors -f jsonl -b 2 \$d >/dev/null 2>&1
    [ \$? = 1 ]"

echo "== all suites"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
