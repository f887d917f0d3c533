#!/usr/bin/env bash
# --faces through the CLI: the README's sample face, composed scenes with several faces,
# an image without one (--require-face), records per face, --max-faces and its note, eval
# and sort on the largest face (sort's _noface/), --save-crops; without --faces, the
# photo hint.
source tests/testlib.sh
S=$ROOT/models/samples/astronaut-collins.jpg
F=$ROOT/tests/fixtures/faces

run $EMOTE --faces -f jsonl "$S"
expect_status "sample photo: exit 0" 0
expect "sample photo: one face, its box and label" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert len(r) == 1 and r[0]['face'] == 0 and r[0]['label'] == 'happy', r
x, y, w, h = r[0]['box']; assert abs(x - 8) < 3 and abs(y - 12) < 3 and abs(w - 88) < 3 and abs(h - 115) < 3, r
assert len(r[0]['landmarks']) == 10 and 0.9 < r[0]['face_score'] <= 1, r"

run $EMOTE --faces -f jsonl "$F/scene-crowd.png" "$F/scene-empty.png" "$F/scene-one.png"
expect_status "no face is reported, exit stays 0" 0
expect "one record per face, largest first, in input order" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert [x['path'].rsplit('/', 1)[1] for x in r] == ['scene-crowd.png'] * 4 + ['scene-empty.png', 'scene-one.png'], r
assert [x.get('face') for x in r[:4]] == [0, 1, 2, 3]
areas = [x['box'][2] * x['box'][3] for x in r[:4]]; assert areas == sorted(areas, reverse=True), areas
assert r[4] == {'path': r[4]['path'], 'error': 'no face found'}, r[4]"

run $EMOTE --faces --require-face -f csv "$F/scene-empty.png"
expect_status "--require-face: no face fails" 1
expect "csv has the face columns" grep -q '^path,face,box_x,box_y,box_w,box_h,face_score,right_eye_x' "$TMP/out"

run $EMOTE --faces --max-faces 2 -f tsv --no-header "$F/scene-crowd.png" "$F/scene-one.png"
expect "--max-faces 2 keeps two faces" test "$(grep -c scene-crowd "$TMP/out")" = 2
expect_stderr "more faces than --max-faces: said on stderr" \
    "emote: $F/scene-crowd.png: 4 faces found, classifying the 2 most confident (--max-faces)"
expect "... once, for that image only" test "$(grep -c 'faces found' "$TMP/err")" = 1
run $EMOTE --faces --max-faces 2 -q -f tsv "$F/scene-crowd.png"
expect "... not with -q" test ! -s "$TMP/err"

# ---- phantoms: a large box the detector is unsure of never stands for the image --------
# At --min-face-score 0.02, scene-two-scales' largest box (0.03) is not a face; its faces score 0.92-0.94.
run $EMOTE --faces --min-face-score 0.02 --max-faces 2 -f jsonl "$F/scene-two-scales.png"
expect "--max-faces keeps the most confident, not the largest" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert len(r) == 2 and all(x['face_score'] > 0.9 for x in r), r
assert r[0]['box'][2] > r[1]['box'][2], r  # still largest first"
mkdir -p "$TMP/phantom/happy"
cp "$F/scene-two-scales.png" "$TMP/phantom/happy/"
run $EMOTE --faces --min-face-score 0.02 -f jsonl "$F/scene-two-scales.png"
expect "the phantom is the largest box there" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert r[0]['face_score'] < 0.1 and r[0]['label'] != 'happy', r[0]"
run $EMOTE sort --faces --min-face-score 0.02 --dry-run "$TMP/phantom" --into "$TMP/phantom-out"
expect "sort --faces files the image by its clear face, not the larger phantom" \
    grep -qF "$TMP/phantom-out/happy/scene-two-scales.png" "$TMP/out"
run $EMOTE eval --faces --min-face-score 0.02 -f json "$TMP/phantom"
expect "eval --faces: the clear face, right" grep -q '"accuracy": *1' "$TMP/out"
cp "$TMP/out" "$TMP/phantom-eval.json"
$EMOTE --faces --min-face-score 0.02 -f jsonl "$TMP/phantom" >"$TMP/phantom.jsonl" 2>/dev/null
run $EMOTE eval --faces --min-face-score 0.02 -f json --predictions "$TMP/phantom.jsonl"
expect "eval --predictions of those records takes the main face too: the report of eval --faces" \
    cmp -s "$TMP/out" "$TMP/phantom-eval.json"

# ---- boxes clipped to the image; the face score in the table ---------------------------
/usr/bin/python3 -c "
from PIL import Image; im = Image.open('$S'); im.crop((40, 30, im.width, im.height)).save('$TMP/edge.png')"
run $EMOTE --faces -f jsonl "$TMP/edge.png"
expect "a face cut by the edge: its box starts at 0 and stays inside" /usr/bin/python3 -c "
import json; from PIL import Image; r = json.loads(open('$TMP/out').readline()); w, h = Image.open('$TMP/edge.png').size
x, y, bw, bh = r['box']; assert x == 0 and y == 0 and x + bw <= w and y + bh <= h and r['label'] == 'happy', r"
run $EMOTE --faces -f table "$S"
expect_stdout "table: the face score" "face 0 (score 0.93) at 9,12 88x115"

# ---- --any-angle: faces lying sideways or upside down ----------------------------------
/usr/bin/python3 -c "
from PIL import Image; im = Image.open('$S').convert('RGB')
im.rotate(180).save('$TMP/upside-down.png'); im.rotate(90, expand=True).save('$TMP/sideways.png')"
run $EMOTE --faces -f jsonl "$TMP/upside-down.png"
expect "upside down, without --any-angle: not read as happy" bash -c "! grep -q '\"label\":\"happy\"' '$TMP/out'"
run $EMOTE --faces --any-angle -f jsonl "$TMP/upside-down.png" "$TMP/sideways.png" "$S"
expect_status "--any-angle: exit 0" 0
expect "--any-angle: each found once, upright, happy as the upright photo, same box turned" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert len(r) == 3 and all(x['label'] == 'happy' and x['face_score'] > 0.9 for x in r), r
up, down, side = r[2], r[0], r[1]
assert abs(down['confidence'] - up['confidence']) < 0.01 and abs(side['confidence'] - up['confidence']) < 0.01, r
x, y, w, h = up['box']; W, H = 130, 130
assert all(abs(a - b) < 1.5 for a, b in zip(down['box'], [W - x - w, H - y - h, w, h])), (down, up)
assert all(abs(a - b) < 1.5 for a, b in zip(side['box'], [y, W - x - w, h, w])), (side, up)"

mkdir -p "$TMP/crops"
run $EMOTE --faces --save-crops "$TMP/crops" -f tsv "$F/scene-two-scales.png"
expect "--save-crops writes one PNG per face" test -s "$TMP/crops/scene-two-scales.face0.png" -a -s "$TMP/crops/scene-two-scales.face1.png"
expect "... and no temporary file" test -z "$(find "$TMP/crops" -name '.*')"
run $EMOTE --faces --save-crops "$TMP/crops" -f tsv "$F/scene-two-scales.png"
expect "--save-crops again: the same crops are found in place, nothing added" \
    test "$(ls "$TMP/crops" | wc -l)" = 2 -a "$STATUS" = 0
mkdir -p "$TMP/a" "$TMP/b" "$TMP/crops2"
cp "$F/scene-one.png" "$TMP/a/x.png"
cp "$F/scene-two-scales.png" "$TMP/b/x.png"
make_png "$TMP/crops2/x.face1.png" 24 24 5
SUM_OLD=$(md5sum <"$TMP/crops2/x.face1.png")
run $EMOTE --faces --save-crops "$TMP/crops2" -f tsv "$TMP/a/x.png" "$TMP/b/x.png"
expect_status "--save-crops, two inputs named x.png: exit 0" 0
expect "... a/x.png keeps x.face0.png; b/x.png's two faces take x~2 (x.face1.png is someone else's)" bash -c "
    cd '$TMP/crops2' && [ \"\$(ls | tr '\n' ' ')\" = 'x.face0.png x.face1.png x~2.face0.png x~2.face1.png ' ]"
expect "... the existing file is not overwritten" test "$(md5sum <"$TMP/crops2/x.face1.png")" = "$SUM_OLD"
for bad in "$TMP/no-such-dir" "$F/scene-one.png" ""; do
    run $EMOTE --faces --save-crops "$bad" -f tsv "$F/scene-one.png"
    expect_status "--save-crops '$bad': exit 2" 2
    expect "... before any work: no records" test ! -s "$TMP/out"
    [ "$bad" = "$F/scene-one.png" ] && expect_stderr "... the reason is given" "$bad: cannot save face crops there (--save-crops): not a folder"
done
LONG=$(printf 'n%.0s' $(seq 250))
cp "$F/scene-one.png" "$TMP/a/$LONG.png"
run $EMOTE --faces --save-crops "$TMP/crops2" -f tsv "$TMP/a/$LONG.png" "$F/scene-one.png"
expect_status "a crop that cannot be written: exit 1" 1
expect_stderr "... names the crop and the reason" "cannot save its face crop $TMP/crops2/nnnn"
expect_stderr "... File name too long" "File name too long"
expect "... the other input's crop is saved" test -s "$TMP/crops2/scene-one.face0.png"

mkdir -p "$TMP/set/happy"
cp "$F/scene-crowd.png" "$F/scene-one.png" "$TMP/set/happy/"
run $EMOTE eval --faces --max-faces 2 "$TMP/set"
expect_status "eval --faces: exit 0" 0
expect "eval --faces counts images, not faces" grep -q 'images *2 evaluated' "$TMP/out"
expect "eval --faces: no --max-faces note (it uses the largest face)" bash -c "! grep -q 'faces found' '$TMP/err'"
cp "$F/scene-empty.png" "$TMP/set/happy/"
run $EMOTE eval --faces -f json "$TMP/set"
cp "$TMP/out" "$TMP/eval-faces.json"
$EMOTE --faces -f jsonl "$TMP/set" >"$TMP/faces.jsonl" 2>/dev/null
run $EMOTE eval --faces -f json --predictions "$TMP/faces.jsonl"
expect_status "eval --predictions of classify --faces records: exit 0" 0
expect "... counts each image once, by its largest face: the report of eval --faces" \
    cmp -s "$TMP/out" "$TMP/eval-faces.json"
expect_stderr "... its 'no face found' names the image" "scene-empty.png: no face found"
run $EMOTE eval --faces --require-face --predictions "$TMP/faces.jsonl"
expect_status "... with --require-face, an image without a face fails: exit 1" 1

# ---- sort --faces: by the largest face; no face -> _noface/ ---------------------------
run $EMOTE sort --faces --manifest "$TMP/sorted.csv" "$F" --into "$TMP/sorted"
expect_status "sort --faces: exit 0" 0
expect "the image with no face is in _noface/" cmp -s "$TMP/sorted/_noface/scene-empty.png" "$F/scene-empty.png"
expect "the others are under their label, none elsewhere" bash -c "
    cd '$TMP/sorted' && [ \"\$(find . -type f | grep -v '^./_noface/' | grep -c '^./[a-z]*/scene-')\" = 4 ] &&
    [ \"\$(find . -type f | wc -l)\" = 5 ]"
expect_stderr "the summary counts _noface" "_noface 1"
expect "manifest: _noface row has the destination, no label or confidence" \
    grep -qx "$F/scene-empty.png,$TMP/sorted/_noface/scene-empty.png,,,copied" "$TMP/sorted.csv"
run $EMOTE sort --faces "$F" --into "$TMP/sorted"
expect_stderr "sort --faces again: all already sorted" "sorted 0 images into $TMP/sorted; 5 already sorted"
run $EMOTE sort --faces --dry-run "$F" --into "$TMP/planned"
expect_stdout "--dry-run plans _noface/" "$F/scene-empty.png	$TMP/planned/_noface/scene-empty.png"
expect "--dry-run writes nothing" test ! -e "$TMP/planned"
run $EMOTE sort --faces --require-face "$F" --into "$TMP/strict"
expect_status "sort --faces --require-face: no face fails (exit 1)" 1
expect_stderr "... names the image" "scene-empty.png: no face found"
expect "... and leaves it where it is (no _noface/)" test ! -e "$TMP/strict/_noface" -a -f "$F/scene-empty.png"

run $EMOTE --faces -f jsonl "$F/scene-crowd.png"
cp "$TMP/out" "$TMP/default-classifier.jsonl"
run $EMOTE --faces -m ferplus -f jsonl "$F/scene-crowd.png"
expect "--faces classifies with the built-in ferplus" cmp -s "$TMP/out" "$TMP/default-classifier.jsonl"
run $EMOTE --faces -m fer2013 -f jsonl "$F/scene-crowd.png"
expect "... and -m still chooses (fer2013 gives other probabilities)" bash -c "! cmp -s '$TMP/out' '$TMP/default-classifier.jsonl'"

run $EMOTE --faces -j 1 -b 1 -f jsonl "$F"/scene-*.png "$S"
cp "$TMP/out" "$TMP/one-thread.jsonl"
for args in "-j 2 -b 2" "-j 3 -b 64"; do
    run $EMOTE --faces $args -f jsonl "$F"/scene-*.png "$S"
    expect "--faces $args: the records of -j 1 -b 1, in input order" cmp -s "$TMP/out" "$TMP/one-thread.jsonl"
done

run $EMOTE --faces --min-face-score 2 "$S"
expect_status "--min-face-score out of range is a usage error" 2

# ---- without --faces: a photo gets a hint, once per run --------------------------------
/usr/bin/python3 -c "
import numpy as np; from PIL import Image
Image.fromarray(np.random.default_rng(3).integers(0, 256, (800, 1000, 3), dtype=np.uint8)).save('$TMP/big.jpg')"
run $EMOTE -f tsv "$TMP/big.jpg" "$F/scene-crowd.png"
expect_stderr "a photo-sized input gets a hint, its size as the file states it (JPEG decoded at 1/4)" \
    "emote: $TMP/big.jpg is 1000x800, much larger than the model's 48x48 input: it looks like a photo; try --faces"
expect "... once per run" test "$(grep -c 'try --faces' "$TMP/err")" = 1
run $EMOTE -q -f tsv "$TMP/big.jpg" "$F/scene-crowd.png"
expect "... not with -q" test ! -s "$TMP/err"
run $EMOTE --faces -f tsv "$TMP/big.jpg" "$F/scene-crowd.png"
expect "... not with --faces" bash -c "! grep -q 'try --faces' '$TMP/err'"
make_png "$TMP/edge.png" 192 192
run $EMOTE -f tsv "$ROOT/models/samples" "$TMP/edge.png"
expect "... not for crops (130x130, 48x48), nor at 4x the input (192x192)" test ! -s "$TMP/err"

run $EMOTE -f jsonl "$S"
expect "without --faces nothing changes" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]; assert 'face' not in r[0] and r[0]['label'] == 'happy'"
finish
