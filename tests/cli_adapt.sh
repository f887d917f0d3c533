#!/usr/bin/env bash
# emote adapt: a new head on the small fixture model's features of self-made images whose
# label is learnable (brighter or darker on average, with noise, so not every image is
# easy); the model's own cross-validated figure against a fresh test set; the written model
# through classify, eval, sort, info, diff and ONNX export; every bad input by message and
# exit status.
source tests/testlib.sh

# make_set DIR PER_LABEL SEED: DIR/bright and DIR/dark, 24x24 gray PNGs named P<person>_<n>.png
# (8 persons); each image's mean is drawn around 140 or 116 (sd 14), pixels add noise (sd 30).
make_set() {
    /usr/bin/python3 - "$@" <<'PY'
import os, sys, numpy as np
from PIL import Image
out, per_label, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
for label, centre in (("bright", 140), ("dark", 116)):
    os.makedirs(os.path.join(out, label), exist_ok=True)
    for i in range(per_label):
        mean = rng.normal(centre, 14)
        pixels = np.clip(rng.normal(mean, 30, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(out, label, f"P{i % 8}_{i:03d}.png"))
PY
}
make_set "$TMP/train" 100 1
make_set "$TMP/test" 200 2
M="$TMP/models/adapted.safetensors"
mkdir -p "$TMP/models"
ADAPT="$EMOTE adapt -m $TEST_MODEL -j 2"

run $ADAPT "$TMP/train" -o "$M"
expect_status "adapt on two label folders: exit 0" 0
expect_stdout "says what it did" "to 2 labels on 200 images; wrote $M"
expect_stdout "prints the cross-validated report" "confusion matrix (rows: true label, columns: predicted)"
expect_stdout "and says the estimate is optimistic without --group" "no --group (optimistic"
expect "writes the model" test -s "$M"
expect "leaves no temporary file" bash -c "! ls -A '$TMP/models' | grep -q emote-tmp"

run $ADAPT -f json "$TMP/train" -o "$M" --force
expect_status "-f json, --force over its own earlier model: exit 0" 0
cv=$(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["accuracy"])' "$TMP/out")
expect "the report is JSON with the eval fields, 200 images" /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["images"] == 200 and r["failed"] == 0 and r["folds"] == 5 and r["group"] is None, r
assert r["labels"] == ["bright", "dark"] and len(r["confusion"]) == 2 and r["mirrored_images_added"] is False
assert 0.6 < r["accuracy"] < 1.0, r["accuracy"]' "$TMP/out"

# The model on 400 fresh images of the same kind scores what its cross-validation said.
run $EMOTE eval -m "$M" -f json "$TMP/test"
expect_status "eval with the adapted model: exit 0" 0
held_out=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$TMP/out")
expect "cross-validated accuracy $cv is within 0.1 of the held-out $held_out" /usr/bin/python3 -c "
import sys; assert abs($cv - $held_out) <= 0.1"
expect "and the head learnt something (held-out $held_out > 0.6)" /usr/bin/python3 -c "assert $held_out > 0.6"

# Everywhere a model goes.
run $EMOTE -m "$M" -f jsonl "$TMP/test/bright/P0_000.png"
expect_status "classify with the adapted model: exit 0" 0
expect_stdout "its labels are the folders'" '"probs":{"bright":'
run $EMOTE sort -m "$M" "$TMP/test/dark" --into "$TMP/sorted"
expect_status "sort with the adapted model: exit 0" 0
expect "sort files images under the new labels" test -d "$TMP/sorted/dark"
run $EMOTE info "$M"
expect_status "info on the adapted model: exit 0" 0
expect_stdout "info lists the new labels" "bright, dark (2, in output order)"
expect_stdout "and the base model's SHA-256" "$(sha256sum "$TEST_MODEL" | cut -c1-64)"
expect_stdout "and the images per label" "images_per_label"
expect_stdout "and the command" "command                emote adapt"
run $EMOTE info -f json "$M"
expect "info -f json has the cross-validated accuracy in metrics" /usr/bin/python3 -c "
import json, sys; m = json.load(open('$TMP/out'))['metrics']; assert abs(m['cv_accuracy'] - $cv) < 1e-12, m"
$EMOTE -m "$M" -f jsonl "$TMP/test" >"$TMP/a.jsonl" 2>/dev/null
$EMOTE -m "$M" -b 7 -j 1 -f jsonl "$TMP/test" >"$TMP/b.jsonl" 2>/dev/null
run $EMOTE diff "$TMP/a.jsonl" "$TMP/b.jsonl" --max-changed 0 --tolerance 0
expect_status "diff of two runs of the adapted model (other -b, -j): exit 0" 0

# --tta, --group, --cv
run $ADAPT --tta -f json "$TMP/train" -o "$TMP/models/tta.safetensors"
expect_status "--tta: exit 0" 0
expect_stdout "--tta adds the mirror images to the training set" '"mirrored_images_added":true'
expect_stdout "and still reports one prediction per image" '"images":200'
run $ADAPT --group '^P[0-9]+' --cv 4 -f json "$TMP/train" -o "$TMP/models/group.safetensors"
expect_status "--group with 8 persons and --cv 4: exit 0" 0
expect_stdout "the report names the grouping" '"group":"^P[0-9]+","'
run $ADAPT --group '^P[0-9]+' --cv 10 "$TMP/train" -o "$TMP/models/g10.safetensors"
expect_status "8 groups for 10 folds: exit 3" 3
expect_stderr "says so" "8 groups (--group), fewer than the 10 folds of --cv"
expect "and writes nothing" test ! -e "$TMP/models/g10.safetensors"

# ONNX export of the adapted model, with ONNX Runtime's probabilities against the C engine's.
if [ "${EMOTE_SUITE:-}" = asan ]; then
    skip "ONNX export of an adapted model" "a Python tool: the release suite checks it"
elif ! /usr/bin/python3 -c 'import onnx' 2>/dev/null; then
    skip "ONNX export of an adapted model" "python3-onnx is not installed"
else
    run /usr/bin/python3 "$ROOT/tools/export_onnx.py" --random 8 --images "$TMP/test/bright" -- "$M" "$TMP/adapted.onnx"
    if [ "$STATUS" = 3 ]; then
        skip "ONNX Runtime parity of an adapted model" "$(tail -1 "$TMP/err")"
    else
        expect_status "tools/export_onnx.py on the adapted model: exit 0 (ORT within tolerance)" 0
        expect_stdout "it checked the images and prints the gap" "largest probability gap"
    fi
fi

# --faces: photos (a face pasted at several sizes and places on self-made backgrounds) whose
# label is learnable (the face brightened or darkened); adapt finds and crops each photo's face,
# and the written model is one `emote --faces -m MODEL` uses, with the new labels.
make_photos() {
    /usr/bin/python3 - "$ROOT/models/samples/astronaut-collins.png" "$@" <<'PY'
import os, sys, numpy as np
from PIL import Image, ImageEnhance
face_path, out, per_label, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
face = Image.open(face_path).convert("RGB")
rng = np.random.default_rng(seed)
for label, brightness in (("lit", 1.35), ("shaded", 0.6)):
    os.makedirs(os.path.join(out, label), exist_ok=True)
    for i in range(per_label):
        y, x = np.mgrid[0:240, 0:320].astype(np.float32)
        a, b = rng.uniform(0.2, 0.8, 2)
        canvas = Image.fromarray(np.clip(np.stack([90 + 60 * np.sin(x / (30 + 20 * a)), 110 + 50 * np.cos(y / (25 + 15 * b)),
                                                   120 + 0 * x], axis=-1), 0, 255).astype(np.uint8))
        scale = rng.uniform(0.8, 1.3)
        f = ImageEnhance.Brightness(face.resize((round(130 * scale), round(130 * scale)), Image.BICUBIC))
        f = f.enhance(brightness * rng.uniform(0.9, 1.1))
        canvas.paste(f, (int(rng.integers(0, 320 - f.width)), int(rng.integers(0, 240 - f.height))))
        canvas.save(os.path.join(out, label, f"photo{i:02d}.png"))
PY
}
make_photos "$TMP/photos" 10 1
make_photos "$TMP/fresh-photos" 6 2
cp "$FIXTURES/faces/scene-empty.png" "$TMP/photos/lit/noface.png"
FM="$TMP/models/faces.safetensors"
run $EMOTE adapt --faces -j 2 --cv 3 "$TMP/photos" -o "$FM"
expect_status "adapt --faces: exit 0 (a photo without a face is left out, as eval --faces does)" 0
expect_stdout "adapts the --faces default model on the 20 faces found" "adapted built-in ferplus to 2 labels on 20 images"
expect_stderr "names the photo without a face" "$TMP/photos/lit/noface.png: no face found"
run $EMOTE --faces -m "$FM" -f jsonl "$TMP/fresh-photos/shaded/photo00.png"
expect_status "emote --faces -m the adapted model: exit 0" 0
expect_stdout "finds the face and gives it the new labels" '"face":0,"box":['
expect_stdout "with the new labels" '"probs":{"lit":'
run $EMOTE eval --faces -m "$FM" -f json "$TMP/fresh-photos"
expect_status "eval --faces with the adapted model: exit 0" 0
expect "and it tells lit from shaded faces in 12 fresh photos (accuracy >= 0.75)" /usr/bin/python3 -c '
import json, sys; r = json.load(open(sys.argv[1])); assert r["images"] == 12 and r["accuracy"] >= 0.75, r' "$TMP/out"

# Labels the base has (the test model's c0..c6): the head is pulled toward the base's own rows.
mkdir -p "$TMP/shared"
ln -s "$TMP/train/bright" "$TMP/shared/c0"
ln -s "$TMP/train/dark" "$TMP/shared/c3"
run $ADAPT "$TMP/shared" -o "$TMP/models/shared.safetensors"
expect_status "labels the base has: exit 0" 0
expect_stdout "says the penalty pulls toward the base's head" "toward the base's head for 2 of 2 labels"
run $ADAPT -f json --class-weights none "$TMP/shared" -o "$TMP/models/shared.safetensors" --force
expect_status "--class-weights none: exit 0" 0
expect_stdout "the report lists the labels taken from the base" '"labels_from_base":["c0","c3"]'
expect_stdout "and the class weights" '"class_weights":"none"'
run $EMOTE info -f json "$TMP/models/shared.safetensors"
expect "and so does the model's provenance" /usr/bin/python3 -c "
import json; p = json.load(open('$TMP/out'))['provenance']
assert p['labels_from_base'] == ['c0', 'c3'] and p['class_weights'] == 'none', p"

# ---- bad input ----------------------------------------------------------------------------
mkdir -p "$TMP/one/bright" && cp "$TMP/train/bright/P0_000.png" "$TMP/one/bright/"
run $ADAPT "$TMP/one" -o "$TMP/models/x.safetensors"
expect_status "one label folder: exit 3" 3
expect_stderr "fewer than two labels, named" "$TMP/one: 1 label folder; adapt needs two or more"

mkdir -p "$TMP/few/bright" "$TMP/few/dark"
cp "$TMP/train/bright/P"[0-5]_00*.png "$TMP/few/bright/"
cp "$TMP/train/dark/P"[0-2]_000.png "$TMP/train/dark/P"[0-2]_001.png "$TMP/few/dark/" 2>/dev/null
ls "$TMP/train/dark" | head -3 | while read -r f; do cp "$TMP/train/dark/$f" "$TMP/few/dark/"; done
n_dark=$(ls "$TMP/few/dark" | wc -l)
run $ADAPT "$TMP/few" -o "$TMP/models/x.safetensors" --cv 5
expect_status "a label folder with fewer images ($n_dark) than folds: exit 3" 3
expect_stderr "names the folder and the reason" "$TMP/few/dark: $n_dark images, fewer than the 5 folds of --cv"

mkdir -p "$TMP/junk/a" "$TMP/junk/b"
for f in 1 2 3 4 5; do printf 'not an image' >"$TMP/junk/a/$f.png"; printf 'GIF89a' >"$TMP/junk/b/$f.png"; done
run $ADAPT "$TMP/junk" -o "$TMP/models/x.safetensors"
expect_status "no image decoded: exit 3" 3
expect_stderr "each bad file is named" "$TMP/junk/a/1.png"
expect_stderr "and then the reason nothing was written" "$TMP/junk: no image could be decoded"
expect "nothing written" test ! -e "$TMP/models/x.safetensors"

cp -r "$TMP/train" "$TMP/mixed"
printf 'truncated' >"$TMP/mixed/dark/broken.png"
run $ADAPT "$TMP/mixed" -o "$TMP/models/mixed.safetensors"
expect_status "one bad file among good ones: exit 1" 1
expect_stderr "names it" "$TMP/mixed/dark/broken.png"
expect "and still writes the model from the rest" test -s "$TMP/models/mixed.safetensors"
expect_stdout "counting it as failed" "200 evaluated, 1 failed"

/usr/bin/python3 - "$FIXTURES/relu.safetensors" "$TMP/nodense.safetensors" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
meta = header["__metadata__"]
graph = [op for op in json.loads(meta["graph"]) if op["op"] != "linear"]
meta["graph"] = json.dumps(graph)
meta["labels"] = json.dumps([f"c{k}" for k in range(header["layers.0.weight"]["shape"][0])])
text = json.dumps(header).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
run $EMOTE adapt -m "$TMP/nodense.safetensors" "$TMP/train" -o "$TMP/models/x.safetensors"
expect_status "a base model without a final dense layer: exit 3" 3
expect_stderr "says so, naming it" "nodense.safetensors has no final dense layer"

cp "$TEST_MODEL" "$TMP/base.safetensors"
run $EMOTE adapt -m "$TMP/base.safetensors" "$TMP/train" -o "$TMP/base.safetensors" --force
expect_status "-o naming the base model, even with --force: exit 2" 2
expect_stderr "says so" "is the base model"
expect "and the base is untouched" cmp -s "$TEST_MODEL" "$TMP/base.safetensors"
run $ADAPT "$TMP/train" -o "$TMP/train/bright/model.safetensors"
expect_status "-o inside DIR: exit 2" 2
expect_stderr "says so" "lies inside $TMP/train"

cp "$M" "$TMP/before"
run $ADAPT "$TMP/train" -o "$M"
expect_status "-o exists, no --force: exit 3" 3
expect_stderr "says so" "$M: exists; give --force to replace it"
expect "and leaves it as it was" cmp -s "$M" "$TMP/before"

run $ADAPT "$TMP/train"
expect_status "no -o: usage error, exit 2" 2
expect_stderr "says what is missing" "adapt needs -o MODEL.safetensors"
run $ADAPT -o "$TMP/models/x.safetensors"
expect_status "no DIR: exit 2" 2
run $ADAPT --cv 1 "$TMP/train" -o "$TMP/models/x.safetensors"
expect_status "--cv 1: exit 2" 2
expect_stderr "names the option and its range" "--cv needs an integer from 2 to 100"
run $ADAPT --class-weights even "$TMP/train" -o "$TMP/models/x.safetensors"
expect_status "--class-weights neither balanced nor none: exit 2" 2
expect_stderr "names the choices" "--class-weights needs balanced or none (got 'even')"
run env EMOTE_MODEL="$TMP/base.safetensors" $EMOTE adapt "$TMP/train" -o "$TMP/base.safetensors" --force
expect_status "-o naming the base model given by \$EMOTE_MODEL: exit 2" 2
expect "and the base is untouched" cmp -s "$TEST_MODEL" "$TMP/base.safetensors"
mkdir -p "$TMP/badname/a,b" "$TMP/badname/c"
run $ADAPT "$TMP/badname" -o "$TMP/models/x.safetensors"
expect_status "a label folder whose name cannot be a label: exit 3" 3
expect_stderr "names it and says why" "$TMP/badname/a,b: a label folder's name"
mkdir -p "$TMP/nolabels"
run $ADAPT "$TMP/nolabels" -o "$TMP/models/x.safetensors"
expect_status "no label folder at all: exit 3" 3
expect_stderr "says so" "$TMP/nolabels: 0 label folders; adapt needs two or more"
printf 'x' >"$TMP/afile"
run $ADAPT "$TMP/afile" -o "$TMP/models/x.safetensors"
expect_status "DIR a file: exit 3" 3
expect_stderr "names it" "$TMP/afile: cannot read directory"
run $ADAPT --group '([' "$TMP/train" -o "$TMP/models/x.safetensors"
expect_status "a --group that is not a regex: exit 2" 2
expect_stderr "names it" "--group '([':"
run $ADAPT "$TMP/missing" -o "$TMP/models/x.safetensors"
expect_status "DIR missing: exit 3" 3
expect_stderr "names it" "$TMP/missing: cannot read directory"
finish
