#!/usr/bin/env bash
# At scale: the reading pipeline gives the records of the old loop (--readers 0); -o FILE
# and --resume after kill -9 at random points and after a record torn at random bytes;
# foreign files refused and left untouched; error records retried; 4 shards run by GNU
# parallel give the single run's records and, through eval --predictions, its exact report;
# the README's Kubernetes Indexed Job manifest checked and its pod command run per index.
source tests/testlib.sh
M="-m $TEST_MODEL"

# A labelled tree $TREE/c0..c6/*.png (the fixture model's labels) plus a stray folder.
TREE=$TMP/tree
/usr/bin/python3 - "$TREE" <<'PY'
import os, sys, numpy as np
from PIL import Image
root = sys.argv[1]
for i in range(240):
    folder = os.path.join(root, "c%d" % (i % 7) if i % 40 else "other")
    os.makedirs(folder, exist_ok=True)
    pixels = np.random.default_rng(i).integers(0, 256, (24, 24), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, "img%03d.png" % i))
PY
echo "not an image" >"$TREE/c3/broken.png"

# ---- the pipeline -----------------------------------------------------------------------
run $EMOTE $M -f jsonl --readers 0 -b 5 "$TREE"
expect_status "old loop (--readers 0): exit 1 for the broken file" 1
cp "$TMP/out" "$TMP/loop.jsonl"
for args in "--readers 1 -b 5" "--readers 4 -b 5" "--readers 3 -b 1" "--readers 8 -b 64 -j 2"; do
    run $EMOTE $M -f jsonl $args "$TREE"
    expect "pipeline ($args): same records, same order as the old loop" cmp -s "$TMP/out" "$TMP/loop.jsonl"
done
run $EMOTE $M -f csv --tta --readers 0 "$TREE"
cp "$TMP/out" "$TMP/loop-tta.csv"
run $EMOTE $M -f csv --tta --readers 5 -b 3 "$TREE"
expect "pipeline with --tta: same records as the old loop" cmp -s "$TMP/out" "$TMP/loop-tta.csv"
run $EMOTE $M --readers 300 "$TREE"
expect_status "--readers above 256 is a usage error" 2

# ---- -o FILE ------------------------------------------------------------------------------
for f in tsv csv jsonl; do
    run $EMOTE $M -f $f "$TREE"
    cp "$TMP/out" "$TMP/full.$f"
    run $EMOTE $M -f $f -o "$TMP/o.$f" "$TREE"
    expect "-o FILE ($f) holds what stdout gets" cmp -s "$TMP/o.$f" "$TMP/full.$f"
done
expect "-o FILE: nothing on stdout" test ! -s "$TMP/out"
cp "$TMP/o.jsonl" "$TMP/before"
run $EMOTE $M -f jsonl -o "$TMP/o.jsonl" "$TREE"
expect_status "-o on an existing non-empty FILE without --resume: exit 3" 3
expect_stderr "... says to use --resume" "give --resume to continue it"
expect "... and leaves it untouched" cmp -s "$TMP/o.jsonl" "$TMP/before"
run $EMOTE $M -o "$TMP/x.jsonl" --resume -f table "$TREE"
expect_status "--resume with the table format: usage error" 2

# ---- --resume after a record torn at random bytes (as a kill mid-write leaves it) ----------
for f in tsv csv jsonl; do
    size=$(stat -c %s "$TMP/full.$f")
    ok=1
    for cut in 1 7 $((size / 3)) $((size / 2 + 13)) $((size - 2)) $((size - 1)) $((RANDOM * 32768 % size)) $((RANDOM % size)); do
        head -c "$cut" "$TMP/full.$f" >"$TMP/r.$f"
        $EMOTE $M -f $f -o "$TMP/r.$f" --resume -q "$TREE" 2>/dev/null
        # Error records are dropped and retried, so the broken file's record moves to the end.
        if ! diff <(grep -v broken "$TMP/r.$f") <(grep -v broken "$TMP/full.$f") >/dev/null ||
            [ "$(grep -c broken "$TMP/r.$f")" != 1 ]; then
            ok=0; echo "  cut at byte $cut of $size differs"
        fi
    done
    expect "--resume after a record torn at 8 points ($f): the uninterrupted run's records" test $ok = 1
done
run $EMOTE $M -f jsonl -o "$TMP/r.jsonl" --resume "$TREE"
expect_status "--resume of a finished file with an error record: retries it (exit 1)" 1
expect "... and still holds one record per input" test "$(wc -l <"$TMP/r.jsonl")" = 241
grep -v broken "$TMP/full.jsonl" >"$TMP/no-errors.jsonl"
run $EMOTE $M -f jsonl -o "$TMP/no-errors.jsonl" --resume "$TREE/c0" "$TREE/c1" "$TREE/c2" "$TREE/c4"
expect_status "--resume of a file that is done: exit 0" 0
expect_stderr "... says every input has a record" "inputs already have a record"

# Without error records (only real images), the resumed FILE is byte-identical.
GOOD=$TMP/good
mkdir -p "$GOOD" && cp -r "$TREE"/c0 "$TREE"/c1 "$TREE"/c2 "$GOOD"/
run $EMOTE $M -f csv -o "$TMP/good.csv" "$GOOD"
for cut in 100 555 1234; do head -c $cut "$TMP/good.csv" >"$TMP/g.csv"; $EMOTE $M -f csv -q -o "$TMP/g.csv" --resume "$GOOD"; done
expect "--resume without error records: byte-identical FILE" cmp -s "$TMP/g.csv" "$TMP/good.csv"

# ---- kill -9 at random moments ------------------------------------------------------------
MANY=$TMP/many
mkdir -p "$MANY"
for i in $(seq 0 11); do
    mkdir "$MANY/$i" && for f in "$TREE"/c[0-6]/img*.png; do ln -s "$f" "$MANY/$i/$(basename "$f")"; done
done
run $EMOTE $M -f jsonl -o "$TMP/kill-full.jsonl" -b 1 -j 1 --readers 2 "$MANY"
kills=0 mid=0
for attempt in 1 2 3 4 5 6 7 8; do
    rm -f "$TMP/kill.jsonl"
    for round in 1 2 3; do
        $EMOTE $M -f jsonl -o "$TMP/kill.jsonl" --resume -q -b 1 -j 1 --readers 2 "$MANY" 2>/dev/null &
        pid=$!
        sleep "0.$(printf %02d $((RANDOM % 25 + 2)))"
        kill -9 $pid 2>/dev/null && kills=$((kills + 1))
        wait $pid 2>/dev/null
        [ -s "$TMP/kill.jsonl" ] && [ "$(tail -c 1 "$TMP/kill.jsonl" | od -An -c | tr -d ' ')" != '\n' ] && mid=$((mid + 1))
    done
    $EMOTE $M -f jsonl -o "$TMP/kill.jsonl" --resume -q -b 1 -j 1 "$MANY" 2>/dev/null
    cmp -s "$TMP/kill.jsonl" "$TMP/kill-full.jsonl" || { fail "kill -9 x3 then --resume (attempt $attempt) gives the uninterrupted FILE"; continue; }
done
pass "kill -9 at random moments ($kills kills, $mid of them mid-record) then --resume: the uninterrupted FILE each time"

# ---- foreign files are refused and left as they are -----------------------------------------
refuse() { # NAME CONTENT-FILE ARGS...: --resume into a copy of CONTENT-FILE is refused, file untouched
    local name=$1 content=$2; shift 2
    cp "$content" "$TMP/foreign"
    run $EMOTE "$@" -o "$TMP/foreign" --resume "$TREE"
    if [ "$STATUS" = 3 ] && cmp -s "$TMP/foreign" "$content"; then pass "$name"; else fail "$name" "exit $STATUS: $(head -c 300 "$TMP/err")"; fi
}
printf 'hello world\nsecond line\n' >"$TMP/text"
printf 'no newline at all' >"$TMP/partial-text"
head -c 5000 "$TMP/full.jsonl" >"$TMP/part.jsonl"
head -c 5000 "$TMP/full.csv" >"$TMP/part.csv"
refuse "--resume refuses a text file" "$TMP/text" $M -f jsonl
refuse "--resume refuses a one-line file without newline unlike a record" "$TMP/partial-text" $M -f jsonl
refuse "--resume refuses a csv FILE when asked for jsonl" "$TMP/part.csv" $M -f jsonl
refuse "--resume refuses a jsonl FILE when asked for csv" "$TMP/part.jsonl" $M -f csv
refuse "--resume refuses a FILE of other options (--tta)" "$TMP/part.jsonl" $M -f jsonl --tta
expect_stderr "... naming the reason" "differs from what this model and these options give"
refuse "--resume refuses a FILE of other options (--top)" "$TMP/part.csv" $M -f csv --top 2
refuse "--resume refuses a FILE of another model with other labels" "$TMP/part.jsonl" -f jsonl
refuse "--resume refuses a FILE of another model" "$TMP/part.jsonl" -m "$FIXTURES/emotenet_deep.safetensors" -f jsonl

# ---- duplicates: an input listed twice needs two records ------------------------------------
run $EMOTE $M -f tsv -o "$TMP/dup.tsv" "$TREE/c1" "$TREE/c1/img001.png" "$TREE/c1"
head -n 3 "$TMP/dup.tsv" >"$TMP/dup2.tsv"
run $EMOTE $M -f tsv -o "$TMP/dup2.tsv" --resume "$TREE/c1" "$TREE/c1/img001.png" "$TREE/c1"
expect "--resume with inputs listed more than once: one record per occurrence" cmp -s "$TMP/dup2.tsv" "$TMP/dup.tsv"

# ---- shards by GNU parallel and one report -------------------------------------------------
run $EMOTE eval $M -f json "$TREE"
cp "$TMP/out" "$TMP/eval-one.json"
run $EMOTE eval $M "$TREE"
cp "$TMP/out" "$TMP/eval-one.txt"
if command -v parallel >/dev/null; then
    (cd "$TMP" && parallel --will-cite -j 4 "$EMOTE" $M -q -f jsonl --shard {}/4 -o part-{}.jsonl --resume "$TREE" ::: 1 2 3 4 2>/dev/null)
    expect "4 shards by GNU parallel: together the single run's records" \
        bash -c "diff <(sort '$TMP'/part-*.jsonl) <(sort '$TMP/full.jsonl') >/dev/null"
    expect "4 shards: no record in two shards" test "$(cat "$TMP"/part-*.jsonl | wc -l)" = "$(wc -l <"$TMP/full.jsonl")"
    run $EMOTE eval $M -f json --predictions "$TMP/part-*.jsonl"
    expect "eval --predictions 'part-*.jsonl': exactly the JSON report of eval DIR" cmp -s "$TMP/out" "$TMP/eval-one.json"
    expect_status "... exit 1, as eval DIR with a broken file" 1
    run $EMOTE eval $M --predictions "$TMP"/part-*.jsonl
    expect "eval --predictions with the shell's expansion: the text report" cmp -s "$TMP/out" "$TMP/eval-one.txt"
    run $EMOTE eval $M --predictions "$TMP/part-*.jsonl" --plot "$TMP/conf.svg" --min-accuracy 0.99
    expect_status "eval --predictions: gates apply (exit 4)" 4
    expect "eval --predictions --plot draws the matrix" test -s "$TMP/conf.svg"
else
    skip "4 shards by GNU parallel" "parallel is not installed (Debian package parallel)"
fi
# ---- the README's Kubernetes Indexed Job, each pod's command run as the pod would ------------
# No cluster here: the manifest is read from the README, its fields checked, and its container
# command run unchanged by sh for every JOB_COMPLETION_INDEX, with the volume's mountPath
# pointing at a folder of ours (the one substitution) and emote first on PATH.
K8S=$TMP/k8s
mkdir -p "$K8S/bin" "$K8S/data/out"
ln -s "$(cd "$(dirname "$EMOTE")" && pwd)/$(basename "$EMOTE")" "$K8S/bin/emote"
find "$TREE" -type f -print0 >"$K8S/data/files.list0"
if /usr/bin/python3 - "$ROOT/README.md" "$K8S/data" >"$K8S/job" 2>"$K8S/why" <<'PY'
import re, sys, yaml
text = open(sys.argv[1]).read()
block = re.search(r"Kubernetes Indexed Job.*?```yaml\n(.*?)```", text, re.S).group(1)
job = yaml.safe_load(block)
spec = job["spec"]
pod = spec["template"]["spec"]
container, = pod["containers"]
mount, = container["volumeMounts"]
assert job["kind"] == "Job" and spec["completionMode"] == "Indexed", "not an Indexed Job"
assert spec["completions"] == spec["parallelism"], "completions and parallelism differ"
assert pod["restartPolicy"] == "OnFailure", "an evicted pod must restart (and resume)"
assert container["command"][:2] == ["sh", "-c"], container["command"]
assert f"/{spec['completions']}" in container["command"][2], "--shard K/N must use N = completions"
command = container["command"][2].replace(mount["mountPath"], sys.argv[2])
print(spec["completions"])
print(command)
PY
then
    pods=$(sed -n 1p "$K8S/job")
    command=$(sed -n 2p "$K8S/job")
    # pod 3 is evicted early (killed), then restarted: it resumes its part
    (export PATH="$K8S/bin:$PATH" JOB_COMPLETION_INDEX=3; timeout -s KILL 0.05 sh -c "$command"; sh -c "$command") 2>/dev/null
    for i in $(seq 0 $((pods - 1))); do
        [ "$i" = 3 ] || (export PATH="$K8S/bin:$PATH" JOB_COMPLETION_INDEX=$i; sh -c "$command") 2>/dev/null
    done
    (PATH="$K8S/bin:$PATH" emote -0 -q -f jsonl - <"$K8S/data/files.list0" >"$K8S/single.jsonl") 2>/dev/null
    expect "Kubernetes Indexed Job ($pods pods, one killed and restarted): the single run's records" \
        bash -c "diff <(sort '$K8S'/data/out/part-*.jsonl) <(sort '$K8S/single.jsonl') >/dev/null"
    expect "... each record once" test "$(cat "$K8S"/data/out/part-*.jsonl | wc -l)" = "$(wc -l <"$K8S/single.jsonl")"
    expect "... one part per pod, named by JOB_COMPLETION_INDEX 0..$((pods - 1))" \
        test -s "$K8S/data/out/part-0.jsonl" -a -s "$K8S/data/out/part-$((pods - 1)).jsonl" -a ! -e "$K8S/data/out/part-$pods.jsonl"
else
    if grep -q "No module named 'yaml'" "$K8S/why"; then
        skip "Kubernetes manifest" "python3-yaml is not installed"
    else
        expect "the README's Kubernetes manifest: $(tail -1 "$K8S/why")" false
    fi
fi

run $EMOTE eval $M --predictions "$TMP/nothing-*.jsonl"
expect_status "eval --predictions with no matching file: exit 3" 3
run $EMOTE eval $M --predictions "$TMP/text"
expect_status "eval --predictions on a text file: exit 3" 3
expect_stderr "... naming file and line" "$TMP/text:1: not a prediction record: not valid JSON"
run $EMOTE eval $M --predictions "$TMP/part.jsonl"
expect_status "eval --predictions on a torn file: exit 3" 3
expect_stderr "... says it is incomplete" "incomplete last record"

finish
