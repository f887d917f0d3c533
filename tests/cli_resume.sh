#!/usr/bin/env bash
# -o FILE and --resume as an unlucky user meets them: --faces records (header and records
# with the same columns; a kill between two face records of one image), the identity file
# (no input is classified again; a moved input does not block resuming), --stdin-image, a
# rewrite killed before its rename, two runs on one FILE (the lock), a FIFO, a symlink.
source tests/testlib.sh
M="-m $TEST_MODEL"
IN=$TMP/in
mkdir -p "$IN"
for i in 1 2 3 4; do make_png "$IN/img$i.png" 24 24 $i; done
echo "not an image" >"$IN/broken.png"
FACES=$ROOT/tests/fixtures/faces

# ---- --faces -o FILE -f tsv|csv: one set of columns, resumable ---------------------------
for f in tsv csv; do
    run $EMOTE --faces -f $f "$FACES"
    cp "$TMP/out" "$TMP/faces-stdout.$f"
    run $EMOTE --faces -f $f -o "$TMP/faces.$f" "$FACES"
    expect_status "--faces -f $f -o FILE: exit 0" 0
    expect "--faces -f $f -o FILE holds what stdout gets (header with the face columns)" \
        cmp -s "$TMP/faces.$f" "$TMP/faces-stdout.$f"
    run $EMOTE --faces -f $f -o "$TMP/faces.$f" --resume "$FACES"
    expect_status "--faces -f $f --resume accepts its own finished file" 0
    expect_stderr "... and redoes only the last image's records" "records of inputs to classify again dropped"
    expect "... which gives the same records (the no-face error record retried, at the end)" \
        cmp -s <(sort "$TMP/faces.$f") <(sort "$TMP/faces-stdout.$f")
done
# A kill between two face records of one image: the file ends after a complete record of
# an image whose other faces are missing (scene-crowd.png has 4 faces, records 2..5).
head -n 3 "$TMP/faces-stdout.tsv" >"$TMP/torn.tsv"
run $EMOTE --faces -f tsv -o "$TMP/torn.tsv" --resume "$FACES"
expect_status "--faces --resume after a kill between two face records of one image: exit 0" 0
expect "... gives the uninterrupted run's file" cmp -s "$TMP/torn.tsv" "$TMP/faces-stdout.tsv"
$EMOTE --faces -f jsonl "$FACES" >"$TMP/faces-stdout.jsonl"
head -n 2 "$TMP/faces-stdout.jsonl" >"$TMP/torn.jsonl"
run $EMOTE --faces -f jsonl -o "$TMP/torn.jsonl" --resume "$FACES"
expect "... and in jsonl" cmp -s "$TMP/torn.jsonl" "$TMP/faces-stdout.jsonl"

# ---- the identity file ---------------------------------------------------------------------
run $EMOTE $M -f jsonl -o "$TMP/id.jsonl" "$IN/img1.png" "$IN/img2.png"
expect "-o FILE writes the identity file .FILE.emote-run" grep -q '^model: ' "$TMP/.id.jsonl.emote-run"
mv "$IN/img2.png" "$TMP/moved.png"
run $EMOTE $M -f jsonl -o "$TMP/id.jsonl" --resume "$IN/img1.png" "$IN/img3.png"
expect_status "--resume after the last record's input was moved away: exit 0" 0
expect "... and the new input's record is appended" test "$(grep -c img3 "$TMP/id.jsonl")" = 1
mv "$TMP/moved.png" "$IN/img2.png"
cp "$TMP/id.jsonl" "$TMP/id.before"
run $EMOTE $M -f jsonl --tta -o "$TMP/id.jsonl" --resume "$IN"
expect_status "--resume with other options (--tta) than the identity file's: exit 3" 3
expect_stderr "... says so, naming the identity file" "written by another model or other options"
expect "... and leaves FILE as it was" cmp -s "$TMP/id.jsonl" "$TMP/id.before"
run $EMOTE -f jsonl -o "$TMP/id.jsonl" --resume "$IN"
expect_status "--resume with another model: exit 3" 3
# A file of an older emote (no identity file) whose last input is gone: resumed, warned.
head -n 1 "$TMP/id.before" >"$TMP/old.jsonl"
mv "$IN/img1.png" "$TMP/moved.png"
run $EMOTE $M -f jsonl -o "$TMP/old.jsonl" --resume "$IN/img1.png" "$IN/img3.png"
expect_status "--resume of a file without identity file whose last input is gone: exit 0" 0
expect_stderr "... with a warning that the model is not checked" "are not checked"
mv "$TMP/moved.png" "$IN/img1.png"
: >"$TMP/.id.jsonl.emote-run"   # as a kill between its truncation and its write leaves it
run $EMOTE $M -f jsonl -o "$TMP/id.jsonl" --resume "$IN/img1.png" "$IN/img3.png"
expect_status "--resume with an empty identity file: checked the old way, exit 0" 0
expect "... and the identity file written again" grep -q '^model: ' "$TMP/.id.jsonl.emote-run"
echo "my notes" >"$TMP/.mine.tsv.emote-run"
run $EMOTE $M -f tsv -o "$TMP/mine.tsv" "$IN/img1.png"
expect_status "-o FILE when .FILE.emote-run is someone else's file: exit 3" 3
expect "... which is left as it is" test "$(cat "$TMP/.mine.tsv.emote-run")" = "my notes"

LONG=$TMP/$(printf 'n%.0s' $(seq 1 246)).tsv   # a name too long to have an identity file beside it
run $EMOTE $M -f tsv -o "$LONG" "$IN/img1.png"
expect_status "-o FILE with a 250-byte name (no room for .FILE.emote-run): exit 0" 0
run $EMOTE $M -f tsv -o "$LONG" --resume "$IN/img1.png" "$IN/img2.png"
expect_status "... and --resume continues it, checking the model the old way" 0
expect "... with one record per input" test "$(wc -l <"$LONG")" = 3

# ---- --stdin-image ----------------------------------------------------------------------------
run $EMOTE $M -f tsv -o "$TMP/stdin.tsv" --stdin-image <"$IN/img1.png"
run $EMOTE $M -f tsv -o "$TMP/stdin.tsv" --resume --stdin-image <"$IN/img1.png"
expect_status "--stdin-image with --resume: usage error" 2
expect_stderr "... that says why" "--resume does not work with --stdin-image"

# ---- a rewrite killed before its rename leaves .FILE.emote-tmp.XXXXXX (atomic_file's name) ------
run $EMOTE $M -f csv -o "$TMP/e.csv" "$IN"
expect_status "a run with a broken input: exit 1" 1
chmod 640 "$TMP/e.csv"
inode=$(stat -c %i "$TMP/e.csv")
cp "$TMP/e.csv" "$TMP/.e.csv.emote-tmp.Ab12Cd"   # as a rewrite killed before its rename leaves it
echo keep >"$TMP/.e.csv.emote-tmp.mine"
echo keep >"$TMP/.xe.csv.emote-tmp.Ab12Cd"
ln -s e.csv "$TMP/.e.csv.emote-tmp.Ln12Cd"
run $EMOTE $M -f csv -o "$TMP/e.csv" --resume "$IN"
expect_status "--resume with an error record to retry: exit 1 (still broken)" 1
expect "... removes the temporary file of the killed rewrite" test ! -e "$TMP/.e.csv.emote-tmp.Ab12Cd"
expect_stderr "... and says so" "removed 1 temporary file of a rewrite that was interrupted"
expect "... but not files that only look alike (another name, another length, a symlink)" \
    test -e "$TMP/.e.csv.emote-tmp.mine" -a -e "$TMP/.xe.csv.emote-tmp.Ab12Cd" -a -L "$TMP/.e.csv.emote-tmp.Ln12Cd"
rm "$TMP/.e.csv.emote-tmp.Ln12Cd"
expect "... and leaves no temporary file of its own" test -z "$(ls -A "$TMP" | grep '^\.e\.csv\.emote-tmp\.[A-Za-z0-9]\{6\}$')"
expect "... FILE was rewritten (records followed the error record): a new file, with FILE's permissions" \
    test "$(stat -c %i "$TMP/e.csv")" != "$inode" -a "$(stat -c %a "$TMP/e.csv")" = 640

# ---- two runs, one -o FILE --------------------------------------------------------------------
if command -v flock >/dev/null; then
    : >"$TMP/locked.jsonl"
    flock -n "$TMP/locked.jsonl" sleep 30 &
    holder=$!
    sleep 0.3
    for resume in "" --resume; do
        run timeout 20 $EMOTE $M -f jsonl -o "$TMP/locked.jsonl" $resume "$IN"
        expect_status "-o FILE $resume while another run holds FILE's lock: exit 3" 3
        expect_stderr "... says it is in use" "in use: another emote run is writing it"
    done
    expect "... and FILE stays empty" test ! -s "$TMP/locked.jsonl"
    kill $holder; wait $holder 2>/dev/null
    # Two emote runs at once: one writes, the other is refused.
    ls "$IN"/img*.png >"$TMP/list"
    ( sleep 2; cat "$TMP/list" ) | $EMOTE $M -b 1 -f jsonl -o "$TMP/two.jsonl" - 2>"$TMP/first.err" &
    first=$!
    sleep 1
    run $EMOTE $M -f jsonl -o "$TMP/two.jsonl" --resume "$IN"
    expect_status "a second emote with the same -o while the first runs: exit 3" 3
    wait $first
    expect "... and the first one's file is whole (4 records)" test "$(wc -l <"$TMP/two.jsonl")" = 4
else
    skip "-o FILE lock tests" "flock(1) (util-linux) is not installed"
fi

# ---- special files and symlinks -------------------------------------------------------------
mkfifo "$TMP/fifo"
run timeout 20 $EMOTE $M -f tsv -o "$TMP/fifo" --resume "$IN"
expect_status "-o FIFO --resume: exit 3 at once (no hang)" 3
expect_stderr "... not a regular file" "fifo: not a regular file"
run $EMOTE $M -f csv -o "$TMP/target.csv" "$IN"
ln -s target.csv "$TMP/link.csv"
run $EMOTE $M -f csv -o "$TMP/link.csv" --resume "$IN"
expect_status "--resume through a symlink, with an error record to drop: exit 1" 1
expect "... the symlink stays a symlink" test -L "$TMP/link.csv"
expect "... and its target holds one error record, at the end" test "$(tail -n 1 "$TMP/target.csv" | grep -c broken)" = 1
finish
