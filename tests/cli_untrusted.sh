#!/usr/bin/env bash
# Untrusted inputs (issue 15, ../shared/fuzz-findings): special files, endless streams,
# hostile model and prediction files, odd file names. Every case runs under a timeout
# and (outside ASan, which needs the address space) a 2 GiB memory cap, and must fail
# cleanly: the documented exit status, a message that names the file and the reason,
# and valid output.
source tests/testlib.sh
CORPUS=$ROOT/tests/fuzz/corpus
FINDINGS=$ROOT/../shared/fuzz-findings
SAMPLE=$ROOT/models/samples/astronaut-collins.png

# guarded CMD...: run, with a 20 s timeout and the memory cap; bash -c for pipelines.
guarded() {
    local cap="ulimit -v 2097152;"
    [ "${EMOTE_SUITE:-}" = asan ] && cap=""
    bash -c "$cap timeout 20 \"\$@\"" guarded "$@" >"$TMP/out" 2>"$TMP/err"
    STATUS=$?
}
# valid_jsonl NAME FILE: every line is a JSON object in UTF-8.
valid_jsonl() {
    expect "$1" /usr/bin/python3 -c '
import json, math, sys
for line in open(sys.argv[1], "rb"):
    json.loads(line.decode("utf-8"), parse_constant=lambda c: sys.exit("not JSON: " + c))' "$2"
}

# ---- special files are refused, never opened for reading ----
mkfifo "$TMP/fifo.png" "$TMP/model.safetensors" "$TMP/predictions.jsonl"
mkdir "$TMP/walk" && make_png "$TMP/walk/a.png" && mkfifo "$TMP/walk/x.png"
make_png "$TMP/face.png"
guarded $EMOTE -m "$TEST_MODEL" "$TMP/fifo.png"
expect_status "a FIFO as an image: exit 1 at once" 1
expect_stderr "a FIFO as an image: 'not a regular file'" "$TMP/fifo.png: not a regular file"
guarded $EMOTE -m "$TEST_MODEL" -f tsv "$TMP/walk"
expect_status "a FIFO in a walked folder: exit 1, never blocks" 1
expect "a FIFO in a walked folder: a.png classified, x.png an error record" \
    bash -c "grep -q 'a.png	c' '$TMP/out' && grep -q 'x.png: not a regular file' '$TMP/out'"
guarded $EMOTE -m "$TMP/model.safetensors" "$TMP/face.png"
expect_status "-m FIFO: exit 3" 3
expect_stderr "-m FIFO: 'not a regular file'" "model.safetensors: not a regular file"
guarded $EMOTE info "$TMP/model.safetensors"
expect_status "info FIFO: exit 3" 3
guarded $EMOTE diff "$TMP/predictions.jsonl" "$TMP/predictions.jsonl"
expect_status "diff FIFO FIFO: exit 3" 3
expect_stderr "diff FIFO FIFO: 'not a regular file'" "predictions.jsonl: not a regular file"
guarded $EMOTE -m /dev/zero "$TMP/face.png"
expect_status "-m /dev/zero: exit 3" 3
expect_stderr "-m /dev/zero: 'not a regular file'" "/dev/zero: not a regular file"
guarded $EMOTE diff /dev/zero /dev/zero
expect_status "diff /dev/zero /dev/zero: exit 3, never 'labels changed'" 3

# ---- endless or hostile stdin ----
guarded $EMOTE -m "$TEST_MODEL" -0 - </dev/zero
expect_status "-0 - < /dev/zero: exit 1 at once" 1
expect_stderr "-0 - < /dev/zero: the empty record is named" "<stdin>: record 1: empty path"
guarded bash -c "head -c 100M /dev/zero | tr '\\0' a | $EMOTE -m '$TEST_MODEL' -"
expect_status "an endless line on stdin: exit 1" 1
expect_stderr "an endless line on stdin: 'path longer than 4096 bytes'" "<stdin>: line 1: path longer than 4096 bytes"
expect "an endless line on stdin: the path is not echoed" test "$(wc -c <"$TMP/out")" -lt 10000
guarded bash -c "head -c 100M /dev/zero | tr '\\0' a | $EMOTE diff - '$CORPUS/predictions/good.jsonl'"
expect_status "diff: an endless line on stdin: exit 3" 3
expect_stderr "diff: an endless line on stdin: line bound named" "<stdin>:1: line longer than"

# ---- hostile model files ----
for f in model-ub-json_int-float-cast-conv-padding model-ub-json_int-float-cast-inf \
         model-ub-json_int-float-cast-input-height model-input-mean-1e300-is-inf-float \
         model-input-std-1e-50-is-zero-float model-label-control-chars-unescaped; do
    guarded $EMOTE -m "$CORPUS/model/$f.safetensors" -f jsonl "$SAMPLE"
    expect_status "$f: exit 3" 3
    expect_stderr "$f: the message names the file" "$f.safetensors: "
done
guarded $EMOTE -m "$CORPUS/model/model-input-std-1e-50-is-zero-float.safetensors" "$SAMPLE"
expect_stderr "std 1e-50 refused at load" 'input "std"[0] must be a number in'
guarded $EMOTE -m "$CORPUS/model/model-label-control-chars-unescaped.safetensors" "$SAMPLE"
expect_stderr "labels with control characters refused" "label 1 contains a control character"
guarded $EMOTE -m "$CORPUS/model/model-logits-overflow-nan-in-jsonl.safetensors" -f jsonl "$SAMPLE"
expect_status "logits overflow: exit 1" 1
expect_stdout "logits overflow: error record" '"error":"'"$SAMPLE"': model output is not finite"}'
valid_jsonl "logits overflow: jsonl still valid JSON (no nan)" "$TMP/out"
mkdir -p "$TMP/eval/angry" && cp "$SAMPLE" "$TMP/eval/angry/"
guarded $EMOTE eval -m "$CORPUS/model/model-logits-overflow-nan-in-jsonl.safetensors" "$TMP/eval"
expect "logits overflow: eval does not count the image" bash -c "! grep -q 'evaluated' '$TMP/out' || grep -q '0 evaluated' '$TMP/out'"

# Bad multi-output graphs (the detector's kind of file), made from a good fixture: each is
# refused at load with the file and the reason (tests/test_model.c checks every message).
/usr/bin/python3 - "$FIXTURES/upsample_add_two_outputs.safetensors" "$TMP" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
edits = {  # file -> (metadata key, edit of its JSON value)
    "output-nowhere": ("outputs", lambda v: v.__setitem__(1, "nowhere")),
    "output-twice": ("outputs", lambda v: v.__setitem__(1, "fine")),
    "add-shapes-differ": ("graph", lambda v: v[4].__setitem__("with", "coarse")),
    "upsample-by-4": ("graph", lambda v: v[3].__setitem__("scale", 4)),
    "odd-sides": ("input", lambda v: v.__setitem__("size_multiple", 1)),
}
for name, (key, edit) in edits.items():
    header = json.loads(data[8:8 + n])
    value = json.loads(header["__metadata__"][key])
    edit(value)
    header["__metadata__"][key] = json.dumps(value)
    text = json.dumps(header).encode()
    with open(f"{sys.argv[2]}/{name}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
for case in "output-nowhere:output 'nowhere' is not the name of any graph op" \
            "output-twice:\"outputs\" lists 'fine' twice" \
            "add-shapes-differ:graph op 4 (add): adds op 3 (upsample), 8x12x16, and op 2 (conv2d), 8x6x8" \
            "upsample-by-4:graph op 4 (add): adds op 3 (upsample), 8x24x32, and op 0 (conv2d), 8x12x16" \
            "odd-sides:at a 3x3 input (a multiple of \"size_multiple\" 1), graph op 4 adds"; do
    f=${case%%:*}
    guarded $EMOTE -m "$TMP/$f.safetensors" "$SAMPLE"
    expect_status "multi-output $f: exit 3" 3
    expect_stderr "multi-output $f: file and reason" "emote: $TMP/$f.safetensors: ${case#*:}"
    guarded $EMOTE info "$TMP/$f.safetensors"
    expect_status "info, multi-output $f: exit 3" 3
done

if [ -f "$FINDINGS/make-special-cases.sh" ] && [ "${EMOTE_SUITE:-}" != asan ]; then
    bash "$FINDINGS/make-special-cases.sh" "$TMP/cases" >/dev/null 2>&1
    guarded $EMOTE -m "$TMP/cases/model-100k-tensors.safetensors" -f tsv "$TMP/cases/face.png"
    expect_status "100,000 tensors: loads (hash lookup), label 'only'" 0
    guarded $EMOTE -m "$TMP/cases/model-shared-big-tensor.safetensors" -f tsv "$TMP/cases/face.png"
    expect_status "a 4 MiB tensor named 6,400 times: loaded once, exit 0 under 2 GiB" 0
else
    skip "multi-MB model cases" "needs $FINDINGS/make-special-cases.sh (and a release build)"
fi

# ---- prediction files ----
# no_raw_control NAME: the last run's stderr holds no control byte but newlines (escaped as \xHH).
no_raw_control() { expect "$1" bash -c "! LC_ALL=C grep -q '[[:cntrl:]]' <(tr -d '\n' <'$TMP/err')"; }
printf '{"path":"c0/\\u001b]0;owned\\u0007.png","label":"c0","confidence":1,"probs":{"c0":1}}\n' >"$TMP/esc.jsonl"
cat "$TMP/esc.jsonl" "$TMP/esc.jsonl" >"$TMP/esc2.jsonl"
guarded $EMOTE diff "$TMP/esc2.jsonl" "$TMP/esc2.jsonl"
expect_stderr "diff: a repeated path from the file is named, escaped" 'c0/\x1b]0;owned\x07.png'\'' repeats line 1'
no_raw_control "diff: ... no raw control byte reaches the terminal"
printf '{"path":"c0/a.png","label":"\\u001b[2J","confidence":1,"probs":{"\\u001b[2J":1}}\n' >"$TMP/esc-label.jsonl"
guarded $EMOTE eval -m "$ROOT/tests/fixtures/emotenet_small.safetensors" --predictions "$TMP/esc-label.jsonl"
expect_status "eval --predictions: a label not of the model: exit 3" 3
expect_stderr "... named, escaped" "its label '\x1b[2J' is not one of the model's labels"
no_raw_control "... no raw control byte reaches the terminal"
awk '/@@NEW@@/{exit} {print}' "$CORPUS/predictions/diff-prob-overflows-to-inf.jsonl" >"$TMP/old.jsonl"
awk 'f{print} /@@NEW@@/{f=1}' "$CORPUS/predictions/diff-prob-overflows-to-inf.jsonl" >"$TMP/new.jsonl"
guarded $EMOTE diff -f json "$TMP/old.jsonl" "$TMP/new.jsonl"
expect_status "diff: probability 0.0135e3081 (inf): exit 3" 3
expect_stderr "diff: the bad line is named" "old.jsonl:1: not a prediction record:"
head -c 0 /dev/null >"$TMP/x"
printf '{"path":"a","label":"x","confidence":1.2977,"probs":{"x":1}}\n' >"$TMP/big.jsonl"
guarded $EMOTE diff "$TMP/big.jsonl" "$TMP/big.jsonl"
expect_status "diff: confidence 1.2977 refused" 3
printf '{"path":"a","label":"x","confidence":0.5,"probs":{"x":5}}\n' >"$TMP/five.jsonl"
guarded $EMOTE diff "$TMP/five.jsonl" "$TMP/five.jsonl"
expect_status "diff: probability 5 refused" 3

# ---- odd file names ----
mkdir "$TMP/names"
for n in plain.png $'new\nline.png' $'tab\there.png' 'quo"te.png' comma,x.png $'esc-\e[2J.png' $'latin1-\xe9.png'; do
    cp "$TMP/face.png" "$TMP/names/$n"
done
guarded $EMOTE -m "$TEST_MODEL" -f table "$TMP/names"
expect_status "names: table exit 0" 0
expect "names: table has 7 lines, one per file" test "$(wc -l <"$TMP/out")" = 7
expect "names: no raw ESC or tab in the table" bash -c "! grep -q \$'[\\e\\t]' '$TMP/out'"
expect_stdout "names: the newline shown escaped" 'new\nline.png'
guarded $EMOTE -m "$TEST_MODEL" -f jsonl "$TMP/names"
expect "names: jsonl has 7 lines" test "$(wc -l <"$TMP/out")" = 7
valid_jsonl "names: every jsonl line is UTF-8 JSON" "$TMP/out"
expect "names: path_hex gives back the Latin-1 name exactly" /usr/bin/python3 -c '
import json, sys, os
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
hexes = [bytes.fromhex(r["path_hex"]) for r in recs if "path_hex" in r]
sys.exit(not (len(hexes) == 1 and os.path.exists(hexes[0]) and hexes[0].endswith(b"latin1-\xe9.png")))' "$TMP/out"
cp "$TMP/out" "$TMP/names.jsonl"
guarded $EMOTE diff "$TMP/names.jsonl" "$TMP/names.jsonl"
expect_status "names: diff reads its own jsonl back (path_hex)" 0
guarded $EMOTE -m "$TEST_MODEL" -f tsv "$TMP/names"
expect "names: tsv header + 7 records of equal width" bash -c \
    "[ \$(wc -l <'$TMP/out') = 8 ] && [ \$(awk -F'\\t' '{print NF}' '$TMP/out' | sort -u | wc -l) = 1 ]"
guarded $EMOTE -m "$TEST_MODEL" -f csv "$TMP/names"
expect "names: csv paths round-trip" /usr/bin/python3 -c '
import csv, io, os, sys
rows = list(csv.reader(io.TextIOWrapper(open(sys.argv[1], "rb"), encoding="utf-8", errors="surrogateescape", newline="")))
sys.exit(not (len(rows) == 8 and all(os.path.exists(os.fsencode(r[0])) for r in rows[1:])))' "$TMP/out"

# ---- a long path keeps its reason ----
long="$TMP/long/$(printf 'a%.0s' {1..200})/$(printf 'b%.0s' {1..200})"
mkdir -p "$long" && echo "not an image" >"$long/$(printf 'c%.0s' {1..150}).png"
guarded $EMOTE -m "$TEST_MODEL" "$long"/c*.png
expect_status "long path: exit 1" 1
expect_stderr "long path: the reason is kept" ": unsupported image format"

# ---- --version ----
guarded $EMOTE --version
expect_status "--version: exit 0" 0
expect_stdout "--version names the commit and OpenBLAS" "OpenBLAS"
finish
