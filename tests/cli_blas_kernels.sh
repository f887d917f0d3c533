#!/usr/bin/env bash
# Determinism under each OpenBLAS kernel this CPU can run (OPENBLAS_CORETYPE=...): conv.c's
# GEMM layout for the kernel measured again (tests/test_conv.c), the parity test's "same image,
# same probabilities whatever the batch, position and threads", and the CLI's records for
# one folder at -b 1 -j 1 and at -b 5 -j 2, byte for byte. The suite's own environment,
# OPENBLAS_CORETYPE included, is what the other scripts run under; this one sets it per run.
source tests/testlib.sh
UNIT=$(dirname "$EMOTE")/test_unit
quick=""
[ "${EMOTE_SUITE:-}" = asan ] && quick=1
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
cores=(Prescott Core2 Nehalem)
has avx && cores+=(Sandybridge)
has avx2 fma && cores+=(Haswell Zen)
has avx512f avx512bw avx512vl avx512dq && cores+=(SkylakeX)
has avx512f avx512bw avx512vl avx512dq avx512_bf16 && cores+=(Cooperlake)
IN=$TMP/in
mkdir -p "$IN"
for i in 1 2 3 4 5 6 7 8 9 10 11; do make_png "$IN/img$i.png" 24 24 $i; done
for core in "${cores[@]}"; do
    if [ -x "$UNIT" ]; then
        run env OPENBLAS_CORETYPE=$core ${quick:+EMOTE_TEST_QUICK=1} "$UNIT" conv_gemm_layout
        expect "$core: conv.c's GEMM layout holds ($(grep -o 'OpenBLAS kernel [^:]*' "$TMP/err" | head -1))" \
            grep -q '^1 passed, 0 failed' "$TMP/out" "$TMP/err"
        [ "$STATUS" = 0 ] || cat "$TMP/err" | head -20
        run env OPENBLAS_CORETYPE=$core ${quick:+EMOTE_TEST_QUICK=1} "$UNIT" parity_same_image
        expect "$core: same image, same probabilities at any batch, position and thread count" \
            grep -q '^1 passed, 0 failed' "$TMP/out" "$TMP/err"
        [ "$STATUS" = 0 ] || cat "$TMP/err" | head -20
    else
        skip "$core: unit tests" "$UNIT not built"
    fi
    OPENBLAS_CORETYPE=$core $EMOTE -m "$TEST_MODEL" -f jsonl -b 1 -j 1 "$IN" >"$TMP/one.jsonl" 2>"$TMP/err"
    OPENBLAS_CORETYPE=$core $EMOTE -m "$TEST_MODEL" -f jsonl -b 5 -j 2 "$IN" >"$TMP/many.jsonl" 2>>"$TMP/err"
    expect "$core: emote -b 1 -j 1 and -b 5 -j 2 print the same records" \
        test -s "$TMP/one.jsonl" -a "$(cat "$TMP/one.jsonl")" = "$(cat "$TMP/many.jsonl")"
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
