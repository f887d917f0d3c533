#!/usr/bin/env bash
# emote sort: copy/link/symlink/move into DIR/<label>/, name clashes that never overwrite,
# idempotent re-runs, atomic writes (a killed run leaves no partial file), --dry-run,
# --manifest, bad inputs and exit statuses. Uses the small random-weight fixture model.
source tests/testlib.sh
M="-m $TEST_MODEL"

# make_pngs DIR N [FIRST_SEED [SIZE]]: N random PNGs DIR/m000.png... in one Python process.
make_pngs() {
    /usr/bin/python3 - "$1" "$2" "${3:-100}" "${4:-24}" <<'PY'
import os, sys, numpy as np
from PIL import Image
out, n, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
for i in range(n):
    pixels = np.random.default_rng(seed + i).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(out, "m%03d.png" % i))
PY
}
# content_sums DIR...: sorted checksums of the non-hidden regular files (symlinks followed).
content_sums() { find -L "$@" -type f ! -name '.*' -exec md5sum {} + | cut -d' ' -f1 | sort; }
# visible_files DIR: the non-hidden files and symlinks under DIR.
visible_files() { find "$1" \( -type f -o -type l \) ! -name '.*' | sort; }
count_files() { visible_files "$1" | wc -l; }
# path_sums DIR: each file's checksum with its path under DIR.
path_sums() { (cd "$1" && find . -type f -exec md5sum {} + | sort -k2); }
export -f content_sums visible_files count_files path_sums

IN=$TMP/in
mkdir -p "$IN/a" "$IN/b"
make_pngs "$IN" 6
make_png "$IN/a/x.png" 24 24 1
make_png "$IN/b/x.png" 24 24 2
content_sums "$IN" >"$TMP/in.sums"
path_sums "$IN" >"$TMP/in.paths"
N_IN=$(wc -l <"$TMP/in.sums")

# ---- copy ----------------------------------------------------------------------------
run $EMOTE sort $M "$IN" --into "$TMP/sorted"
expect_status "copy exit 0" 0
expect "every input is filed exactly once, byte-identical" \
    bash -c "diff <(content_sums '$TMP/sorted') '$TMP/in.sums' >/dev/null"
expect "files sit in label folders" bash -c "! visible_files '$TMP/sorted' | grep -vqE '/sorted/c[0-6]/[^/]+\.png$'"
path_sums "$IN" >"$TMP/in.after"
expect "originals untouched (same paths, same checksums)" cmp -s "$TMP/in.paths" "$TMP/in.after"
expect_stderr "summary names the destination" "sorted $N_IN images into $TMP/sorted: "
expect "no temporary files left" test -z "$(find "$TMP/sorted" -name '.*emote-tmp*')"

run $EMOTE sort $M "$IN" --into "$TMP/sorted"
expect_status "re-run exit 0" 0
expect "re-run adds nothing" test "$(count_files "$TMP/sorted")" = "$N_IN"
expect_stderr "re-run reports already sorted" "sorted 0 images into $TMP/sorted; $N_IN already sorted"

# ---- --min-confidence and name clashes -------------------------------------------------
run $EMOTE sort $M --min-confidence 1.0 "$IN" --into "$TMP/unc"
expect_status "--min-confidence 1.0 exit 0" 0
expect "--min-confidence 1.0 sends everything to _uncertain" \
    test "$(find "$TMP/unc/_uncertain" -type f | wc -l)" = "$N_IN" -a "$(ls "$TMP/unc")" = _uncertain
expect "same base name: both survive (x.png, x~2.png)" \
    bash -c "cmp -s '$TMP/unc/_uncertain/x.png' '$IN/a/x.png' && cmp -s '$TMP/unc/_uncertain/x~2.png' '$IN/b/x.png'"

mkdir -p "$TMP/clash/_uncertain"
make_png "$TMP/clash/_uncertain/x.png" 24 24 99
SUM_BEFORE=$(md5sum <"$TMP/clash/_uncertain/x.png")
run $EMOTE sort $M --min-confidence 1 "$IN/a/x.png" "$IN/b/x.png" --into "$TMP/clash"
expect "an existing different file is never overwritten" test "$(md5sum <"$TMP/clash/_uncertain/x.png")" = "$SUM_BEFORE"
expect "clashing inputs take ~2 and ~3" \
    bash -c "cmp -s '$TMP/clash/_uncertain/x~2.png' '$IN/a/x.png' && cmp -s '$TMP/clash/_uncertain/x~3.png' '$IN/b/x.png'"
run $EMOTE sort $M --min-confidence 1 "$IN/a/x.png" "$IN/b/x.png" --into "$TMP/clash"
expect "clashes are idempotent too" bash -c "[ \$(ls '$TMP/clash/_uncertain' | wc -l) = 3 ] && grep -q '2 already sorted' '$TMP/err'"

# ---- --link, --symlink ------------------------------------------------------------------
run $EMOTE sort $M --link --min-confidence 1 "$IN" --into "$TMP/lnk"
expect_status "--link exit 0" 0
expect "--link: same inode as the source" bash -c "[ \$(stat -c %i '$TMP/lnk/_uncertain/x~2.png') = \$(stat -c %i '$IN/b/x.png') ] &&
    [ \$(stat -c %i '$TMP/lnk/_uncertain/m000.png') = \$(stat -c %i '$IN/m000.png') ]"
run $EMOTE sort $M --link --min-confidence 1 "$IN" --into "$TMP/lnk"
expect "--link re-run: already sorted" grep -qF "$N_IN already sorted" "$TMP/err"

(cd "$TMP" && $EMOTE sort $M --symlink --min-confidence 1 in/a in/b --into sym >"$TMP/out" 2>"$TMP/err")
expect "--symlink: links to the absolute source paths" bash -c "
    [ \"\$(readlink '$TMP/sym/_uncertain/x.png')\" = '$(realpath "$IN")/a/x.png' ] &&
    [ \"\$(readlink '$TMP/sym/_uncertain/x~2.png')\" = '$(realpath "$IN")/b/x.png' ]"
(cd "$TMP" && $EMOTE sort $M --symlink --min-confidence 1 in/a in/b --into sym >"$TMP/out" 2>"$TMP/err")
expect "--symlink re-run: already sorted" bash -c "grep -q '2 already sorted' '$TMP/err' && [ \$(ls '$TMP/sym/_uncertain' | wc -l) = 2 ]"

# ---- --move -----------------------------------------------------------------------------
cp -r "$IN" "$TMP/mv-in"
run $EMOTE sort $M --move "$TMP/mv-in" --into "$TMP/mv-out"
expect_status "--move exit 0" 0
expect "--move: originals gone" test -z "$(find "$TMP/mv-in" -type f)"
expect "--move: every image present" bash -c "diff <(content_sums '$TMP/mv-out') '$TMP/in.sums' >/dev/null"

# Across filesystems (when /dev/shm is another one): copy, sync, then remove the original.
SHM=$(mktemp -d /dev/shm/emote-test.XXXXXX 2>/dev/null)
if [ -n "$SHM" ] && [ "$(stat -c %d "$SHM")" != "$(stat -c %d "$TMP")" ]; then
    cp -r "$IN" "$SHM/in"
    run $EMOTE sort $M --move "$SHM/in" --into "$TMP/mv-x"
    expect_status "--move across filesystems exit 0" 0
    expect "--move across filesystems: originals gone, contents complete" bash -c "[ -z \"\$(find '$SHM/in' -type f)\" ] &&
        diff <(content_sums '$TMP/mv-x') '$TMP/in.sums' >/dev/null"
else
    skip "--move across filesystems" "/dev/shm is not a separate filesystem here"
fi
[ -n "$SHM" ] && rm -rf "$SHM"

# ---- DIR inside an input directory, temp files ------------------------------------------
cp -r "$IN" "$TMP/nest"
run $EMOTE sort $M "$TMP/nest" --into "$TMP/nest/sorted"
run $EMOTE sort $M "$TMP/nest" --into "$TMP/nest/sorted"
expect_status "--into inside the input: re-run exit 0" 0
expect "--into inside the input: sorted files are not sorted again" \
    bash -c "[ \$(find '$TMP/nest/sorted' -type f | wc -l) = $N_IN ] && grep -q '$N_IN already sorted; $N_IN inside' '$TMP/err'"

LABEL_DIR=$(dirname "$(visible_files "$TMP/sorted" | head -1)")
touch "$IN/.m000.png.emote-tmp.AbC123"
touch -d '1 hour ago' "$LABEL_DIR/.m000.png.emote-tmp.OLD123"
touch "$LABEL_DIR/.m000.png.emote-tmp.NEW123"
run $EMOTE sort $M --dry-run "$IN" --into "$TMP/sorted"
expect "temp files are not inputs" bash -c "! grep -q emote-tmp '$TMP/out' && [ \$(wc -l <'$TMP/out') = $N_IN ]"
run $EMOTE sort $M "$IN" --into "$TMP/sorted"
expect "stale temp files are removed, fresh ones kept" \
    bash -c "[ ! -e '$LABEL_DIR/.m000.png.emote-tmp.OLD123' ] && [ -e '$LABEL_DIR/.m000.png.emote-tmp.NEW123' ]"
rm -f "$IN/.m000.png.emote-tmp.AbC123"

# ---- interrupted run ----------------------------------------------------------------------
make_pngs "$TMP/many" 300 1000 64
$EMOTE sort $M -b 1 -j 1 "$TMP/many" --into "$TMP/killed" >/dev/null 2>&1 &
PID=$!
sleep 0.3
kill -9 "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
echo "     (killed with $(count_files "$TMP/killed" 2>/dev/null || echo 0) of 300 filed)"
expect "after kill -9: every visible file is complete" bash -c "
    for f in \$(find '$TMP/killed' -type f ! -name '.*' 2>/dev/null); do cmp -s \"\$f\" '$TMP/many/'\$(basename \"\$f\") || exit 1; done"
run $EMOTE sort $M "$TMP/many" --into "$TMP/killed"
expect_status "re-run after kill exit 0" 0
expect "re-run after kill: every input present exactly once" bash -c "
    diff <(content_sums '$TMP/killed') <(content_sums '$TMP/many') >/dev/null"

# Two runs at once, same names, different images: a name taken meanwhile is never replaced.
make_pngs "$TMP/many2" 300 5000 64
$EMOTE sort $M -b 1 -j 1 --min-confidence 1 "$TMP/many" --into "$TMP/race" >/dev/null 2>"$TMP/race1.err" &
PID=$!
$EMOTE sort $M -b 1 -j 1 --min-confidence 1 "$TMP/many2" --into "$TMP/race" >/dev/null 2>"$TMP/race2.err"
wait "$PID"
expect "concurrent runs into one DIR lose nothing" bash -c "
    diff <(content_sums '$TMP/race') <(content_sums '$TMP/many' '$TMP/many2' | sort) >/dev/null"

# ---- --dry-run -------------------------------------------------------------------------------
run $EMOTE sort $M --dry-run --min-confidence 1 "$IN" --into "$TMP/dry"
expect_status "--dry-run exit 0" 0
expect "--dry-run writes nothing" test ! -e "$TMP/dry"
expect "--dry-run plans one line per input, clashes included" bash -c "[ \$(wc -l <'$TMP/out') = $N_IN ] &&
    grep -qxF '$IN/a/x.png	$TMP/dry/_uncertain/x.png' '$TMP/out' && grep -qxF '$IN/b/x.png	$TMP/dry/_uncertain/x~2.png' '$TMP/out'"
run $EMOTE sort $M --dry-run "$IN/m001.png" --into "$TMP/sorted"
expect "--dry-run shows already sorted images" grep -qxF "$IN/m001.png	(already sorted)" "$TMP/out"

# ---- --manifest -----------------------------------------------------------------------------
run $EMOTE sort $M --manifest "$TMP/m.csv" "$IN" --into "$TMP/man"
expect_status "--manifest csv exit 0" 0
expect "manifest csv: every source, its destination, label and action" /usr/bin/python3 -c "
import csv, filecmp, os
rows = list(csv.DictReader(open('$TMP/m.csv')))
assert list(rows[0]) == ['source', 'destination', 'label', 'confidence', 'action'], rows[0]
assert len(rows) == $N_IN and len({r['source'] for r in rows}) == $N_IN
for r in rows:
    assert r['action'] == 'copied' and filecmp.cmp(r['source'], r['destination'], shallow=False), r
    assert r['destination'].startswith('$TMP/man/' + r['label'] + '/') and 0 < float(r['confidence']) <= 1, r"
expect "manifest leaves no temp file" test -z "$(find "$TMP" -maxdepth 1 -name '.m.csv*')"
cp "$TMP/m.csv" "$TMP/m.saved"
run $EMOTE sort $M --manifest "$TMP/m.csv" "$IN" --into "$TMP/man"
expect_status "existing manifest: exit 2" 2
expect "existing manifest is left alone" cmp -s "$TMP/m.csv" "$TMP/m.saved"
run $EMOTE sort $M --force --manifest "$TMP/m.csv" "$IN" --into "$TMP/man"
expect "--force replaces the manifest (already-sorted rows)" bash -c "[ \$(grep -c ',already-sorted$' '$TMP/m.csv') = $N_IN ]"

echo "not an image" >"$TMP/junk.png"
run $EMOTE sort $M --manifest "$TMP/m.jsonl" "$TMP/junk.png" "$IN/m002.png" --into "$TMP/bad"
expect_status "a bad input: exit 1" 1
expect_stderr "the bad input is listed" "emote: $TMP/junk.png: "
expect_stderr "the summary counts it" "; 1 failed"
expect "the other inputs are sorted" test "$(count_files "$TMP/bad")" = 1
expect "manifest jsonl: a failed row and a copied row" /usr/bin/python3 -c "
import json
rows = [json.loads(l) for l in open('$TMP/m.jsonl')]
assert rows[0]['action'] == 'failed' and rows[0]['destination'] is None and 'error' in rows[0], rows[0]
assert rows[1]['action'] == 'copied' and rows[1]['source'] == '$IN/m002.png', rows[1]
assert rows[1]['destination'].endswith('/m002.png') and rows[1]['label'].startswith('c'), rows[1]"

# ---- the manifest: where it may go, rows as files move, --undo -------------------------------
cp -r "$IN" "$TMP/mi"
run $EMOTE sort $M --move --manifest "$TMP/mo" "$TMP/mi" --into "$TMP/mo"
expect_status "--manifest equal to --into: exit 2" 2
expect_stderr "... says why" "$TMP/mo: the manifest must lie outside --into $TMP/mo"
run $EMOTE sort $M --move --manifest "$TMP/mo2/m.csv" "$TMP/mi" --into "$TMP/mo2"
expect_status "--manifest inside --into: exit 2" 2
run $EMOTE sort $M --move --manifest "$TMP/no-such-folder/m.csv" "$TMP/mi" --into "$TMP/mo3"
expect_status "--manifest in a missing folder: exit 3" 3
expect_stderr "... names the file and the reason" "$TMP/no-such-folder/m.csv: cannot create: No such file or directory"
expect "a refused manifest moves nothing" bash -c "diff <(content_sums '$TMP/mi') '$TMP/in.sums' >/dev/null && [ ! -e '$TMP/mo' ]"

# kill -9 in the middle of a --move: every moved file already has its row; --undo puts all back.
mkdir -p "$TMP/many-mv"
cp -r "$TMP/many" "$TMP/many-mv/1"
cp -r "$TMP/many2" "$TMP/many-mv/2"
$EMOTE sort $M -b 1 -j 1 --move --manifest "$TMP/killed.csv" "$TMP/many-mv" --into "$TMP/killed-mv" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1000); do [ "$( { wc -l <"$TMP/killed.csv"; } 2>/dev/null || echo 0)" -ge 6 ] && break; sleep 0.01; done
kill -9 "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
MOVED=$(count_files "$TMP/killed-mv")
echo "     (killed with $MOVED of 600 moved)"
expect "after kill -9: some moved, some not" test "$MOVED" -gt 0 -a "$MOVED" -lt 600
expect "after kill -9: every moved file has its manifest row" /usr/bin/python3 -c "
import csv, os
rows = list(csv.DictReader(open('$TMP/killed.csv')))
moved = {r['destination'] for r in rows if r['action'] == 'moved'}
for d, _, files in os.walk('$TMP/killed-mv'):
    for f in files:
        assert os.path.join(d, f) in moved, f"
expect "after kill -9: no temporary manifest file" test -z "$(find "$TMP" -maxdepth 1 -name '.killed.csv*')"
run $EMOTE sort --undo "$TMP/killed.csv"
expect_status "--undo after kill -9: exit 0" 0
expect_stderr "--undo reports what it did" "undid $TMP/killed.csv: $MOVED moved back"
expect "--undo: every image back where it was, nothing left in DIR" bash -c "
    diff <(content_sums '$TMP/many-mv') <(content_sums '$TMP/many' '$TMP/many2' | sort) >/dev/null &&
    [ \$(count_files '$TMP/killed-mv') = 0 ]"
run $EMOTE sort --undo "$TMP/killed.csv"
expect_status "--undo again: nothing to do, exit 0" 0
expect_stderr "--undo again moves nothing" "undid $TMP/killed.csv: 0 moved back, 0 copies or links removed"

# --move of images already sorted removes the originals; --undo copies them back.
cp -r "$IN" "$TMP/as-in"
run $EMOTE sort $M --manifest "$TMP/as1.csv" "$TMP/as-in" --into "$TMP/as-out"
run $EMOTE sort $M --move --manifest "$TMP/as2.csv" "$TMP/as-in" --into "$TMP/as-out"
expect "--move of sorted images: originals removed" test "$(count_files "$TMP/as-in")" = 0
run $EMOTE sort --undo "$TMP/as2.csv"
expect_status "--undo of already-sorted --move rows: exit 0" 0
expect "... originals restored, sorted copies kept" bash -c "
    cmp -s '$TMP/in.paths' <(path_sums '$TMP/as-in' | sed 's#  ./#  ./#') && [ \$(count_files '$TMP/as-out') = $N_IN ]"

# --undo never overwrites: a new file where a moved one came from stays, and so does the moved one.
cp -r "$IN" "$TMP/un-in"
run $EMOTE sort $M --move --manifest "$TMP/un.jsonl" "$TMP/un-in" --into "$TMP/un-out"
make_png "$TMP/un-in/m000.png" 24 24 77
SUM_NEW=$(md5sum <"$TMP/un-in/m000.png")
run $EMOTE sort --undo "$TMP/un.jsonl"
expect_status "--undo with a conflict: exit 1" 1
expect_stderr "... names the conflict" "$TMP/un-in/m000.png: exists and differs from $TMP/un-out/"
expect "... the new file is kept, the sorted one too, the rest moved back" bash -c "
    [ \"\$(md5sum <'$TMP/un-in/m000.png')\" = '$SUM_NEW' ] && [ \$(count_files '$TMP/un-out') = 1 ] &&
    [ \$(count_files '$TMP/un-in') = $N_IN ]"

# --undo of copies removes only the copies that are still what sort made.
run $EMOTE sort $M --manifest "$TMP/cp.csv" "$IN" --into "$TMP/cp-out"
CHANGED=$(visible_files "$TMP/cp-out" | head -1)
echo changed >"$CHANGED"
run $EMOTE sort --undo "$TMP/cp.csv"
expect_status "--undo of copies, one changed since: exit 1" 1
expect "... the changed copy stays, the others go, the originals are untouched" bash -c "
    [ \"\$(visible_files '$TMP/cp-out')\" = '$CHANGED' ] && cmp -s '$TMP/in.paths' <(path_sums '$IN')"

# A file name that is not UTF-8 goes back byte for byte (JSON lines carry source_hex).
mkdir -p "$TMP/odd"
cp "$IN/m001.png" "$TMP/odd/$(printf 'bad\xffname.png')"
run $EMOTE sort $M --move --manifest "$TMP/odd.jsonl" "$TMP/odd" --into "$TMP/odd-out"
run $EMOTE sort --undo "$TMP/odd.jsonl"
expect_status "--undo of a non-UTF-8 name: exit 0" 0
expect "... the file is back under its exact name" test -f "$TMP/odd/$(printf 'bad\xffname.png')"

# A bad manifest is refused before anything moves.
cp -r "$IN" "$TMP/bm-in"
run $EMOTE sort $M --move --manifest "$TMP/bm.csv" "$TMP/bm-in" --into "$TMP/bm-out"
printf '"unclosed,x,y,0.5,moved\n' >>"$TMP/bm.csv"
echo 'a,b,c,0.5,teleported' >>"$TMP/bm.csv"
run $EMOTE sort --undo "$TMP/bm.csv"
expect_status "--undo of a bad manifest: exit 3" 3
expect_stderr "... names the file and the row" "$TMP/bm.csv: row "
expect "... and moves nothing back" test "$(count_files "$TMP/bm-out")" = "$N_IN"
printf '\nsource,destination,label,confidence,action\n' >"$TMP/blank.csv"
run $EMOTE sort --undo "$TMP/blank.csv"
expect_status "--undo of a manifest starting with an empty line: exit 3 (found by fuzz_sort_manifest)" 3
expect_stderr "... not a sort manifest" "$TMP/blank.csv: not a sort manifest"
run $EMOTE sort --undo "$TMP/in"
expect_status "--undo of a folder: exit 3" 3
expect_stderr "... says so" "$TMP/in: "
run $EMOTE sort --undo "$TMP/m.csv" "$IN"
expect_status "--undo with paths: exit 2" 2

# ---- stdin, quiet, progress -------------------------------------------------------------------
printf '%s\n' "$IN/m003.png" "$IN/m004.png" | $EMOTE sort $M -q - --into "$TMP/stdin" >"$TMP/out" 2>"$TMP/err"
expect "paths from stdin are sorted" test "$(count_files "$TMP/stdin")" = 2
expect "-q: no summary" test ! -s "$TMP/err"
run $EMOTE sort $M --progress -b 1 "$IN" --into "$TMP/prog"
expect "--progress off a terminal: a final count line (the bar itself: tests/cli_progress.sh)" \
    grep -qE "^emote: $N_IN/$N_IN images  [0-9.]+ img/s  in [0-9]+:[0-9]{2}\$" "$TMP/err"
run $EMOTE sort $M -b 1 "$IN" --into "$TMP/prog2"
expect "no progress bar off a terminal" bash -c "! grep -q 'img/s' '$TMP/err'"

# ---- usage errors --------------------------------------------------------------------------
run $EMOTE sort $M --bogus "$IN" --into "$TMP/u"
expect_status "unknown flag: exit 2" 2
run $EMOTE sort $M "$IN"
expect_status "missing --into: exit 2" 2
expect_stderr "missing --into is explained" "--into"
run $EMOTE sort $M --min-confidence 1.5 "$IN" --into "$TMP/u"
expect_status "bad --min-confidence: exit 2" 2
run $EMOTE sort $M --link --move "$IN" --into "$TMP/u"
expect_status "two modes: exit 2" 2
expect "usage errors write nothing" test ! -e "$TMP/u"
echo file >"$TMP/notadir"
run $EMOTE sort $M "$IN" --into "$TMP/notadir/sub"
expect_status "DIR cannot be created: exit 3" 3
run $EMOTE sort --help
expect "--help shows options and exit statuses" bash -c "grep -q -- '--min-confidence' '$TMP/out' && grep -q 'Exit status' '$TMP/out'"

finish
