#!/usr/bin/env bash
# --faces through the CLI: the README's sample face, composed scenes with several faces,
# an image without one (--require-face), records per face, eval and sort on the largest
# face, --save-crops.
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

run $EMOTE --faces --max-faces 2 -f tsv --no-header "$F/scene-crowd.png"
expect "--max-faces 2 keeps the two largest" test "$(wc -l < "$TMP/out")" = 2

mkdir -p "$TMP/crops"
run $EMOTE --faces --save-crops "$TMP/crops" -f tsv "$F/scene-two-scales.png"
expect "--save-crops writes one PNG per face" test -s "$TMP/crops/scene-two-scales.face0.png" -a -s "$TMP/crops/scene-two-scales.face1.png"

mkdir -p "$TMP/set/happy"
cp "$F/scene-crowd.png" "$F/scene-one.png" "$TMP/set/happy/"
run $EMOTE eval --faces "$TMP/set"
expect_status "eval --faces: exit 0" 0
expect "eval --faces counts images, not faces" grep -q 'images *2 evaluated' "$TMP/out"

run $EMOTE --faces --min-face-score 2 "$S"
expect_status "--min-face-score out of range is a usage error" 2

run $EMOTE -f jsonl "$S"
expect "without --faces nothing changes" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]; assert 'face' not in r[0] and r[0]['label'] == 'happy'"
finish
