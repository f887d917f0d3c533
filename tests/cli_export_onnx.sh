#!/usr/bin/env bash
# tools/export_onnx.py: every fixture model (each op kind, two whole networks) and the
# shipped model export to ONNX, and ONNX Runtime's probabilities stay within the tolerance
# of the C engine's; a deliberately broken export (--perturb-for-test) fails the check and
# writes nothing; a file that is not a model is refused. Needs Debian's python3-onnx, and
# node + npm for ONNX Runtime (npm onnxruntime-node); skips, visibly, where they are missing.
source tests/testlib.sh
EXPORT="/usr/bin/python3 $ROOT/tools/export_onnx.py"

if [ "${EMOTE_SUITE:-}" = asan ]; then
    skip "tools/export_onnx.py" "a Python tool: the release suite checks it"
    finish; exit
fi
if ! /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
    skip "tools/export_onnx.py" "python3-onnx is not installed (apt-get install python3-onnx)"
    finish; exit
fi

run $EXPORT "$FIXTURES/emotenet_small.safetensors" "$TMP/small.onnx"
if [ "$STATUS" = 3 ]; then
    skip "ONNX model vs the C engine" "$(tail -1 "$TMP/err")"
    expect "unchecked, the model is still exported (exit 3)" test -s "$TMP/small.onnx"
    finish; exit
fi
expect_status "export + check of a fixture model: exit 0" 0
expect_stdout "the check runs the fixture's own inputs" "fixture inputs (tests/fixtures/emotenet_small.expected.safetensors): 4 inputs"
expect_stdout "and prints the largest probability gap" "largest probability gap"
expect "the ONNX model is written, with the file's tensor names and metadata" /usr/bin/python3 -c "
import sys, onnx
sys.path.insert(0, '$ROOT/tools')
from safetensors_io import read_safetensors
tensors, meta = read_safetensors('$FIXTURES/emotenet_small.safetensors')
m = onnx.load('$TMP/small.onnx')
names = {i.name for i in m.graph.initializer} - {'se_axes'}
assert names and names <= set(tensors), names - set(tensors)
assert {p.key: p.value for p in m.metadata_props} == meta
assert [i.name for i in m.graph.input] == ['input'] and [o.name for o in m.graph.output] == ['probs']"

bad=""
for model in "$FIXTURES"/*.safetensors; do
    case $model in *.expected.safetensors) continue ;; esac
    # multi-output graphs (the detector's ops) have no ONNX export yet
    head -c 65536 "$model" | grep -q '"outputs":' && continue
    $EXPORT --random 8 "$model" "$TMP/case.onnx" >"$TMP/out" 2>"$TMP/err" &&
        grep -q ': ok$' "$TMP/out" || bad="$bad $(basename "$model")"
done
expect "every fixture model (each op kind) exports within tolerance${bad:+ (failed:$bad)}" test -z "$bad"

run $EXPORT "$ROOT/models/emote-fer2013.safetensors" "$TMP/fer.onnx"
expect_status "the shipped model: exit 0" 0
expect_stdout "checked on its sample images through the C preprocessing" "images (models/samples): 3 inputs"

run $EXPORT --perturb-for-test "$FIXTURES/emotenet_small.safetensors" "$TMP/broken.onnx"
expect_status "a deliberately broken export fails the check: exit 1" 1
expect_stdout "and says so" "FAILED"
expect "and writes no ONNX file" test ! -e "$TMP/broken.onnx"
expect "nor leaves a temporary file" bash -c "! ls -A '$TMP' | grep -q '^\.export_onnx'"

run $EXPORT --perturb-for-test --tolerance 1 "$FIXTURES/emotenet_small.safetensors" "$TMP/loose.onnx"
expect_status "--tolerance is honoured (1 lets any probability gap pass)" 0

printf 'not a model' >"$TMP/junk.safetensors"
run $EXPORT "$TMP/junk.safetensors" "$TMP/junk.onnx"
expect_status "not a model file: exit 2" 2
expect_stderr "with a message naming it" "junk.safetensors"
finish
