#!/usr/bin/env bash
# The built-in default model: runs from any directory, answers the shipped samples, and
# (when ../shared/data is there) meets its accuracy bar on FER2013 val.
source tests/testlib.sh
VAL=$ROOT/../shared/data/fer2013/val

run $EMOTE -f tsv "$ROOT/models/samples/astronaut-collins.png"
if grep -q "no built-in model" "$TMP/err"; then
    skip "built-in model" "this binary was built without models/emote-fer2013.safetensors"
    finish; exit
fi
expect_status "built-in model classifies a sample" 0
(cd / && $EMOTE -f tsv --no-header "$ROOT/models/samples") >"$TMP/out" 2>"$TMP/err"
expect "runs from another directory, every sample smiling is 'happy'" \
    bash -c "[ \$(cut -f2 '$TMP/out' | grep -c '^happy$') = 3 ]"
run $EMOTE info -f json
expect "info reports the built-in model's labels" grep -q '"angry"' "$TMP/out"
EMOTE_MODEL=$TEST_MODEL run $EMOTE -f tsv "$ROOT/models/samples/astronaut-collins.png"
expect_stdout "EMOTE_MODEL overrides the built-in model" "	c0	c1"

if [ ! -d "$VAL" ]; then
    skip "FER2013 val accuracy" "$VAL is absent"
elif [ "${EMOTE_SUITE:-}" = asan ]; then
    skip "FER2013 val accuracy" "slow under ASan; the release run checks it"
else
    run $EMOTE eval -f json --min-accuracy 0.69 "$VAL"
    expect_status "FER2013 val: top-1 accuracy >= 0.69 (C engine, no TTA)" 0
    expect "FER2013 val: all 3,589 images evaluated" grep -q '"images":3589,"failed":0' "$TMP/out"
fi
finish
