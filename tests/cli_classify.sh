#!/usr/bin/env bash
# emote classify / eval from the command line: formats, input walking, stdin, sharding,
# bad inputs and exit statuses. Uses a small random-weight fixture model (labels c0..c6).
source tests/testlib.sh
M="-m $TEST_MODEL"

mkdir -p "$TMP/faces/sub" "$TMP/bad"
for i in 1 2 3; do make_png "$TMP/faces/f$i.png" 24 24 "$i"; done
make_png "$TMP/faces/sub/big.png" 64 48 7          # resized + centre-cropped
echo "notes" > "$TMP/faces/readme.txt"             # skipped: no image extension

# ---- formats -------------------------------------------------------------------
run $EMOTE $M -f tsv "$TMP/faces/f1.png"
expect_status "tsv exit 0" 0
expect "tsv has a header and one record" test "$(wc -l <"$TMP/out")" = 2
expect "tsv header names the labels" grep -q "^path	label	confidence	c0	c1	c2	c3	c4	c5	c6	error$" "$TMP/out"
expect "tsv probabilities sum to 1" /usr/bin/python3 -c "
import sys; f = open('$TMP/out').read().splitlines()[1].split('\t')
p = [float(x) for x in f[3:10]]; assert abs(sum(p) - 1) < 1e-5 and max(p) == float(f[2]), f"

run $EMOTE $M -f csv --top 2 "$TMP/faces/f1.png"
expect "csv --top 2 header" grep -q "^path,label,confidence,top1_label,top1_prob,top2_label,top2_prob,error$" "$TMP/out"

run $EMOTE $M -f jsonl --top 3 "$TMP/faces"
expect_status "jsonl on a directory exit 0" 0
expect "jsonl records parse, in sorted order, txt skipped" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert [x['path'].split('faces/')[1] for x in r] == ['f1.png', 'f2.png', 'f3.png', 'sub/big.png'], r
assert all(len(x['top']) == 3 and abs(sum(x['probs'].values()) - 1) < 1e-5 for x in r)"

run $EMOTE $M -f table "$TMP/faces/f1.png"
expect "table shows a percentage" grep -qE "f1.png +c[0-6] +[0-9.]+%" "$TMP/out"

run $EMOTE $M "$TMP/faces/f1.png"
expect "default format off a terminal is tsv" grep -q "^path	label" "$TMP/out"

# ---- same answers whatever the batch size, threads and position ------------------
$EMOTE $M -f jsonl -b 1 -j 1 "$TMP/faces" >"$TMP/b1" 2>/dev/null
$EMOTE $M -f jsonl -b 3 -j 2 "$TMP/faces" >"$TMP/b3" 2>/dev/null
$EMOTE $M -f jsonl -b 64 -j 2 "$TMP/faces" >"$TMP/b64" 2>/dev/null
expect "batch 1/3/64 and 1/2 threads give identical records" \
    bash -c "cmp -s '$TMP/b1' '$TMP/b3' && cmp -s '$TMP/b1' '$TMP/b64'"
$EMOTE $M -f jsonl --tta "$TMP/faces/f1.png" >"$TMP/tta" 2>/dev/null
expect "--tta changes the probabilities" bash -c "! cmp -s <(head -1 '$TMP/b1') '$TMP/tta'"

# ---- stdin ------------------------------------------------------------------------
printf '%s\n' "$TMP/faces/f2.png" "$TMP/faces/f1.png" | $EMOTE $M -f tsv --no-header - >"$TMP/out" 2>"$TMP/err"
expect "paths from stdin, in the order given" bash -c "cut -f1 '$TMP/out' | grep -c png | grep -qx 2 && head -1 '$TMP/out' | grep -q f2.png"
printf '%s\0' "$TMP/faces/f3.png" "$TMP/faces/f1.png" | $EMOTE $M -0 -f tsv --no-header - >"$TMP/out" 2>"$TMP/err"
expect "NUL-separated paths from stdin" bash -c "head -1 '$TMP/out' | grep -q f3.png && test \$(wc -l <'$TMP/out') = 2"
# Streaming: each path written to stdin gets its record before the next path is written
# (the pipeline used to wait for its queue to fill: three more paths with -b 1).
# streams NAME OPTIONS...: feeds 3 paths one at a time through a coprocess.
streams() {
    local name=$1 got=0 line i
    shift
    coproc STREAM { exec timeout 60 $EMOTE $M -f tsv --no-header "$@" - 2>"$TMP/stream.err"; }
    for i in 1 2 3; do
        echo "$TMP/faces/f$i.png" >&"${STREAM[1]}"
        IFS= read -r -t 10 line <&"${STREAM[0]}" || break
        case "$line" in "$TMP/faces/f$i.png"*) got=$((got + 1)) ;; esac
    done
    exec {STREAM[1]}>&-
    wait "$STREAM_PID" 2>/dev/null
    expect "$name: each record arrives before the next path is written" test "$got" = 3
}
streams "stdin, default readers"
streams "stdin, -b 1" -b 1
streams "stdin, --readers 0" --readers 0
streams "stdin, -b 4 --readers 2" -b 4 --readers 2
streams "stdin, --faces" --faces
# ---- a small address space (ulimit -v): a clear "out of memory" or a result, never a hang ----
# (OpenBLAS retries a failed buffer mapping forever; emote used to wait for it.)
if [ "${EMOTE_SUITE:-}" = asan ]; then
    skip "ulimit -v 200000" "ASan needs the address space"
else
    for args in "$TMP/faces/f1.png" "-j 1 $TMP/faces" "eval $TMP/faces" "--faces $ROOT/models/samples/astronaut-collins.png"; do
        bash -c "ulimit -v 200000; timeout 60 $EMOTE $args" >"$TMP/out" 2>"$TMP/err"
        STATUS=$?
        expect "ulimit -v 200000, $args: exit 0 or 3 (not a hang)" test "$STATUS" = 0 -o "$STATUS" = 3
        [ "$STATUS" = 3 ] && expect_stderr "ulimit -v 200000, $args: says out of memory" "out of memory"
    done
    # --faces batches grow with the faces found: --max-faces 400 used to plan a session for
    # -b + 400 x 3 crops per thread (thousands of images, gigabytes).
    bash -c "ulimit -v 1000000; timeout 60 $EMOTE --faces --max-faces 400 -j 2 $FIXTURES/faces/scene-crowd.png" \
        >"$TMP/out" 2>"$TMP/err"
    STATUS=$?
    expect_status "--faces --max-faces 400 under ulimit -v 1000000: exit 0" 0
    # The readers hold at most 256 MiB of images being read (an image larger than that is read
    # alone): eight 40-megapixel PNGs used to need about 1.85 GB at once and failed "out of memory".
    mkdir "$TMP/big"
    /usr/bin/python3 -c "
import numpy as np, sys
from PIL import Image
a = np.zeros((5000, 8000, 3), np.uint8); a[::7, :, 0] = 200; a[:, ::5, 1] = 90
Image.fromarray(a).save(sys.argv[1], compress_level=1)" "$TMP/big/big0.png"
    for i in 1 2 3 4 5 6 7; do cp "$TMP/big/big0.png" "$TMP/big/big$i.png"; done
    bash -c "ulimit -v 2000000; timeout 120 $EMOTE -q -f tsv --no-header -j 1 $TMP/big" >"$TMP/out" 2>"$TMP/err"
    STATUS=$?
    expect_status "eight 40-megapixel PNGs under ulimit -v 2000000 (8 readers): exit 0" 0
    expect "... a record with a label for each" test "$(cut -f2 "$TMP/out" | grep -c .)" = 8
    # The address space filled by decoding after the session is made (6 images of 5000x5000
    # between 12 small ones, -b 1, the built-in model, whose convs are large enough for
    # OpenBLAS to want its buffer): the forward passes find OpenBLAS's buffers mapped when the
    # session was made. They used to map them at their first sgemm and, finding no room,
    # retry forever: most of these runs hung (3 or 4 of the 4 limits, run after run).
    mkdir -p "$TMP/squeeze"
    /usr/bin/python3 -c "from PIL import Image; Image.new('RGB', (5000, 5000)).save('$TMP/squeeze/big.png')"
    squeeze=()
    for i in $(seq 0 11); do
        make_png "$TMP/squeeze/small$i.png" 24 24 "$i"
        squeeze+=("$TMP/squeeze/small$i.png")
        [ $((i % 2)) = 1 ] && cp "$TMP/squeeze/big.png" "$TMP/squeeze/big$i.png" && squeeze+=("$TMP/squeeze/big$i.png")
    done
    for limit in 450000 500000 550000 600000; do
        bash -c "ulimit -v $limit; timeout 30 \"\$@\"" _ $EMOTE -j 2 -b 1 -f tsv --no-header "${squeeze[@]}" \
            >"$TMP/out" 2>"$TMP/err"
        STATUS=$?
        expect "ulimit -v $limit, large images decoding while the model runs: exit 1 or 3 (not a hang: $STATUS)" \
            test "$STATUS" = 1 -o "$STATUS" = 3
        [ "$STATUS" = 1 ] && expect "ulimit -v $limit: every small image classified" \
            test "$(awk -F'\t' '$1 ~ /\/small[0-9]+\.png$/ && $2 != "" && $NF == ""' "$TMP/out" | wc -l)" = 12
    done
fi
# $EMOTE_READ_MEMORY_MIB: a budget of 1 MiB reads each image alone; the records are the same.
run $EMOTE --faces -f tsv --no-header -b 3 --readers 4 "$FIXTURES/faces"
cp "$TMP/out" "$TMP/faces-default-budget"
EMOTE_READ_MEMORY_MIB=1 run $EMOTE --faces -f tsv --no-header -b 3 --readers 4 "$FIXTURES/faces"
expect "EMOTE_READ_MEMORY_MIB=1 (images read one at a time): the records of the default budget" \
    bash -c "test \$(wc -l <'$TMP/out') -ge 6 && cmp -s '$TMP/out' '$TMP/faces-default-budget'"
EMOTE_READ_MEMORY_MIB=0 run $EMOTE -f tsv "$FIXTURES/faces"
expect_status "EMOTE_READ_MEMORY_MIB=0: exit 3" 3
expect_stderr "... says what it needs" "EMOTE_READ_MEMORY_MIB needs a number of MiB from 1"
# The faces of one image may make more crops than -b: they are classified in passes of -b.
run $EMOTE --faces -f tsv --no-header -b 32 "$FIXTURES/faces/scene-crowd.png"
cp "$TMP/out" "$TMP/faces-b32"
run $EMOTE --faces -f tsv --no-header -b 2 "$FIXTURES/faces/scene-crowd.png"
expect "--faces -b 2 (12 crops in passes of 2): the records of -b 32, byte for byte" \
    bash -c "test \$(wc -l <'$TMP/out') -ge 3 && cmp -s '$TMP/out' '$TMP/faces-b32'"

run $EMOTE $M -f jsonl --stdin-image <"$TMP/faces/f1.png"
expect "raw image bytes on stdin" bash -c "grep -q '\"path\":\"-\",\"label\"' '$TMP/out'"
expect "stdin image gives the same answer as the file" bash -c "
    [ \"\$(sed 's/\"path\":\"[^\"]*\"//' '$TMP/out')\" = \"\$(head -1 '$TMP/b1' | sed 's/\"path\":\"[^\"]*\"//')\" ]"

# ---- sharding -----------------------------------------------------------------------
for i in $(seq 10 39); do make_png "$TMP/faces/sub/s$i.png" 24 24 "$i"; done
$EMOTE $M -f tsv --no-header "$TMP/faces" | cut -f1 | sort >"$TMP/all"
for k in 1 2 3; do $EMOTE $M -f tsv --no-header --shard $k/3 "$TMP/faces" | cut -f1 >"$TMP/shard$k"; done
expect "shards are disjoint and cover every input" bash -c "
    [ \$(cat '$TMP'/shard? | sort | uniq -d | wc -l) = 0 ] && cat '$TMP'/shard? | sort | cmp -s - '$TMP/all'"
expect "every shard gets some inputs" bash -c "[ -s '$TMP/shard1' ] && [ -s '$TMP/shard2' ] && [ -s '$TMP/shard3' ]"

# ---- a closed stdout ends the run quietly --------------------------------------------
$EMOTE $M -f tsv -b 1 "$TMP/faces" 2>"$TMP/err" | head -1 >/dev/null
status=${PIPESTATUS[0]}
expect "| head -1: ended by SIGPIPE or exit 0" bash -c "[ $status = 141 ] || [ $status = 0 ]"
expect "| head -1: nothing on stderr" test ! -s "$TMP/err"

# ---- bad inputs: reported by name, the rest still classified, exit 1 -----------------
: >"$TMP/bad/empty.png"
echo "hello" >"$TMP/bad/text.png"
head -c 200 "$TMP/faces/sub/big.png" >"$TMP/bad/truncated.png"
/usr/bin/python3 -c "
from PIL import Image; import numpy as np
Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save('$TMP/jpeg.jpg', quality=90)
d = open('$TMP/jpeg.jpg', 'rb').read(); open('$TMP/bad/truncated.jpg', 'wb').write(d[:len(d) // 2])
import struct, zlib
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
open('$TMP/bad/huge.png', 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 30000, 30000, 8, 0, 0, 0, 0)) + chunk(b'IEND', b''))"
ln -s "$TMP/nowhere.png" "$TMP/bad/dangling.png"
cp "$TMP/faces/f1.png" "$TMP/bad/good.png"
run $EMOTE $M -f jsonl "$TMP/bad" "$TMP/missing.png"
expect_status "bad inputs: exit 1" 1
expect "bad inputs: good.png still classified" grep -q 'good.png","label"' "$TMP/out"
expect "bad inputs: one record per input" test "$(wc -l <"$TMP/out")" = 8
for case in "empty.png:empty file" "text.png:unsupported image format" "truncated.png:corrupt or truncated" \
    "truncated.jpg:corrupt or truncated" "huge.png:30000x30000 pixels is larger than the limit" "dangling.png:cannot open" \
    "missing.png:cannot open"; do
    expect_stderr "bad input ${case%%:*} reported" "${case%%:*}: ${case#*:}"
    expect "bad input ${case%%:*} has an error record" grep -q "${case%%:*}\",\"error\":" "$TMP/out"
done
expect_stderr "bad inputs: a summary line" "7 of 8 inputs failed"

# An unreadable file and directory (as an unprivileged user: root reads everything).
mkdir -p "$TMP/locked/inner"
cp "$TMP/faces/f1.png" "$TMP/locked/ok.png"
cp "$TMP/faces/f2.png" "$TMP/locked/secret.png"
cp "$TMP/faces/f3.png" "$TMP/locked/inner/x.png"
chmod 000 "$TMP/locked/secret.png" "$TMP/locked/inner"
chmod 755 "$TMP"
AS_USER=()
[ "$(id -u)" = 0 ] && AS_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
run "${AS_USER[@]}" $EMOTE $M -f tsv "$TMP/locked"
expect_status "unreadable file and directory: exit 1" 1
expect_stderr "unreadable file named" "secret.png: cannot open: Permission denied"
expect_stderr "unreadable directory named" "inner: cannot read directory: Permission denied"
expect_stdout "readable file still classified" "ok.png	c"
chmod 700 "$TMP/locked/secret.png" "$TMP/locked/inner"

# ---- usage errors: exit 2 (option spellings: cli_options.sh) -------------------------
run $EMOTE $M -b 0 "$TMP/faces/f1.png"; expect_status "batch 0: exit 2" 2
run $EMOTE $M -f xml "$TMP/faces/f1.png"; expect_status "bad format: exit 2" 2
run $EMOTE $M --shard 4/3 "$TMP/faces/f1.png"; expect_status "bad shard: exit 2" 2
run $EMOTE $M; expect_status "no inputs: exit 2" 2
run $EMOTE $M --help; expect_status "--help: exit 0" 0
expect_stdout "--help lists exit statuses" "Exit status"

# ---- model problems: exit 3, the file named ---------------------------------------
run $EMOTE -m "$TMP/none.safetensors" "$TMP/faces/f1.png"
expect_status "missing model: exit 3" 3
expect_stderr "missing model named" "none.safetensors: cannot open"
head -c 1000 "$TEST_MODEL" >"$TMP/cut.safetensors"
run $EMOTE -m "$TMP/cut.safetensors" "$TMP/faces/f1.png"
expect_status "truncated model: exit 3" 3
expect_stderr "truncated model named" "cut.safetensors: "
EMOTE_MODEL=$TEST_MODEL run $EMOTE -f tsv "$TMP/faces/f1.png"
expect_status "EMOTE_MODEL chooses the model" 0
expect_stdout "EMOTE_MODEL model's labels" "	c0	c1"

# ---- eval ---------------------------------------------------------------------------
for k in 0 1 2 3 4 5 6; do
    mkdir -p "$TMP/labelled/c$k"
    for i in 1 2; do make_png "$TMP/labelled/c$k/$i.png" 24 24 "$k$i"; done
done
mkdir -p "$TMP/labelled/other"; make_png "$TMP/labelled/other/x.png"
run $EMOTE eval $M "$TMP/labelled"
expect_status "eval exit 0" 0
expect_stdout "eval reports accuracy" "accuracy"
expect_stdout "eval counts 14 images" "14 evaluated, 0 failed"
expect_stderr "eval warns about a folder that is no label" "skipping $TMP/labelled/other"
run $EMOTE eval $M -f json "$TMP/labelled"
expect "eval json: confusion matrix sums to 14, per-class support 2" /usr/bin/python3 -c "
import json; r = json.load(open('$TMP/out'))
assert sum(map(sum, r['confusion'])) == 14 and all(v['support'] == 2 for v in r['per_class'].values())
acc = sum(r['confusion'][i][i] for i in range(7)) / 14; assert abs(acc - r['accuracy']) < 1e-12"
run $EMOTE eval $M --min-accuracy 1 "$TMP/labelled"
expect_status "eval --min-accuracy 1 fails the gate: exit 4" 4
expect_stderr "eval gate says why" "below --min-accuracy"
run $EMOTE eval $M --min-accuracy 0 --min-macro-f1 0 "$TMP/labelled"
expect_status "eval gates at 0 pass" 0
run $EMOTE eval $M --min-macro-f1 1 "$TMP/labelled"
expect_status "eval --min-macro-f1 1 fails: exit 4" 4
echo "junk" >"$TMP/labelled/c0/broken.png"
run $EMOTE eval $M "$TMP/labelled"
expect_status "eval with a broken image: exit 1" 1
expect_stderr "eval names the broken image" "broken.png: unsupported image format"
run $EMOTE eval $M "$TMP/faces"
expect_status "eval on a folder without label folders: exit 3" 3
run $EMOTE eval $M --min-accuracy 2 "$TMP/labelled"
expect_status "eval --min-accuracy 2: exit 2" 2

# ---- eval --predictions: each image once, stdin, only regular files -------------------
run $EMOTE eval $M -f json "$TMP/labelled"
cp "$TMP/out" "$TMP/eval-dir.json"
$EMOTE $M -f jsonl "$TMP/labelled" >"$TMP/all.jsonl" 2>/dev/null
$EMOTE $M -f jsonl "$TMP/labelled/c0" >"$TMP/part-c0.jsonl" 2>/dev/null
run $EMOTE eval $M -f json --predictions "$TMP/all.jsonl"
expect_status "eval --predictions with an error record: exit 1" 1
expect "eval --predictions: the report of eval DIR" cmp -s "$TMP/out" "$TMP/eval-dir.json"
expect_stderr "eval --predictions: the error record's image named" "broken.png: unsupported image format"
run $EMOTE eval $M -f json --predictions "$TMP/all.jsonl" "$TMP/part-c0.jsonl" "$TMP/all.jsonl"
expect "a merged file beside its part: each image counted once" cmp -s "$TMP/out" "$TMP/eval-dir.json"
run $EMOTE eval $M -f json --predictions - <"$TMP/all.jsonl"
expect_status "eval --predictions - reads stdin: exit 1 (the error record)" 1
expect "eval --predictions -: the report of eval DIR" cmp -s "$TMP/out" "$TMP/eval-dir.json"
/usr/bin/python3 - "$TMP/part-c0.jsonl" "$TMP/conflict.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
r = next(x for x in lines if "label" in x)
r["label"] = "c6" if r["label"] != "c6" else "c5"
open(sys.argv[2], "w").write("\n" + json.dumps(r) + "\n")
PY
run $EMOTE eval $M --predictions "$TMP/all.jsonl" "$TMP/conflict.jsonl"
expect_status "eval --predictions: a record that contradicts an earlier one for its image: exit 3" 3
expect_stderr "... names both places" "conflict.jsonl:2: a second record for $TMP/labelled/c0/"
expect_stderr "... and the first" "which differs from the one at $TMP/all.jsonl:"
expect "... and prints no report" test ! -s "$TMP/out"
mkfifo "$TMP/fifo.jsonl"
run timeout 20 $EMOTE eval $M --predictions "$TMP/fifo.jsonl"
expect_status "eval --predictions FIFO: exit 3 at once, never waits for a writer" 3
expect_stderr "... 'not a regular file'" "fifo.jsonl: not a regular file"
run timeout 20 $EMOTE eval $M --predictions /dev/zero
expect_status "eval --predictions /dev/zero: exit 3 at once" 3
expect_stderr "... 'not a regular file'" "/dev/zero: not a regular file"
run bash -c "{ head -1 '$TMP/all.jsonl'; head -c 20M /dev/zero | tr '\\0' a; } | timeout 60 $EMOTE eval $M --predictions -"
expect_status "eval --predictions: a line over the bound is an error, not the end: exit 3" 3
expect_stderr "... naming the line" "<stdin>:2: line longer than"

# ---- output that does not reach stdout: exit 3 and a message, every command -----------
# expect_write_error NAME ARGS...: emote ARGS to a full device and to a closed stdout.
expect_write_error() {
    local name=$1; shift
    run bash -c '"$@" >/dev/full' _ "$EMOTE" "$@"
    expect_status "$name >/dev/full: exit 3" 3
    expect_stderr "$name >/dev/full: said" "emote: cannot write to standard output"
    run bash -c '"$@" >&-' _ "$EMOTE" "$@"
    expect_status "$name >&- (stdout closed): exit 3" 3
    expect_stderr "$name >&-: said" "emote: cannot write to standard output"
}
expect_write_error "--help" --help
expect_write_error "--version" --version
expect_write_error "eval --help" eval --help
expect_write_error "classify -f jsonl DIR" $M -f jsonl "$TMP/faces"
expect_write_error "eval DIR" eval $M "$TMP/labelled"
expect_write_error "eval --predictions" eval $M --predictions "$TMP/all.jsonl"
expect_write_error "sort --dry-run" sort $M --dry-run --into "$TMP/sorted" "$TMP/faces"
expect_write_error "diff" diff "$TMP/all.jsonl" "$TMP/all.jsonl"
expect_write_error "info" info $M
many=(); for i in $(seq 100); do many+=("$TMP/labelled"); done
env --ignore-signal=PIPE $EMOTE $M -f jsonl -b 1 "${many[@]}" 2>"$TMP/err" | head -c 1 >/dev/null
STATUS=${PIPESTATUS[0]}
expect_status "SIGPIPE ignored, the reader gone (| head -c1): exit 3" 3
expect_stderr "... said" "emote: cannot write to standard output"
run bash -c '"$@" >&-' _ $EMOTE $M -f jsonl -o "$TMP/closed.jsonl" "$TMP/faces"
expect_status "-o FILE with stdout closed: exit 0 (nothing goes to stdout)" 0
$EMOTE $M -f jsonl "$TMP/faces" >"$TMP/open.jsonl" 2>/dev/null
expect "... FILE has every record (it did not take stdout's place)" cmp -s "$TMP/closed.jsonl" "$TMP/open.jsonl"

finish
