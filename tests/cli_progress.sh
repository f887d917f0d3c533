#!/usr/bin/env bash
# The progress line (src/cli/progress.c) of classify, eval and sort: on stderr only, on a
# terminal (a pseudo-terminal made by script(1)), with done/total, rate and ETA; done and
# rate only for paths streamed from stdin; off under -q, --no-progress and off a terminal;
# --progress forces it, off a terminal as plain lines.
source tests/testlib.sh
M="-m $TEST_MODEL"
IN=$TMP/in
mkdir -p "$IN" "$TMP/tree/c0" "$TMP/tree/c1"
for i in 1 2 3 4 5; do make_png "$IN/p$i.png" 24 24 "$i"; done
echo "not an image" >"$IN/p6.png"
make_png "$TMP/tree/c0/a.png" 24 24 7
make_png "$TMP/tree/c1/b.png" 24 24 8
make_png "$TMP/tree/c1/c.png" 24 24 9

if ! command -v script >/dev/null || ! script -q -e -c true /dev/null >/dev/null 2>&1; then
    skip "progress on a terminal" "script(1) from util-linux cannot make a pseudo-terminal here"
    finish; exit
fi
# on_tty FILE COMMAND: runs COMMAND (a shell line) on a pseudo-terminal; what reached the
# terminal goes to FILE with carriage returns turned into newlines; status in $STATUS.
on_tty() {
    script -q -e -c "$2" /dev/null </dev/null | tr '\r' '\n' >"$1"
    STATUS=${PIPESTATUS[0]}
}
# The line as drawn with a total: bar, done/total, rate, ETA.
BAR='\[[=> ]+\] [0-9]+/%s images  [0-9.]+ img/s  ETA ([0-9]+:)?[0-9]+:[0-9]{2}'
has_bar() { grep -qE "$(printf "$BAR" "$2")" "$1"; }
# slow_paths: two paths from stdin, 2.2 s apart, so that a run passes the 2 s delay.
SLOW="(echo $IN/p1.png; sleep 2.2; echo $IN/p2.png)"

# ---- classify ----------------------------------------------------------------------------
on_tty "$TMP/tty" "$EMOTE classify $M --progress -b 1 -f tsv $IN >$TMP/out.tsv"
expect_status "classify --progress on a terminal: exit 1 (one bad input)" 1
expect "classify --progress: bar with done/total, rate and ETA on the terminal" has_bar "$TMP/tty" 6
expect "classify: stdout holds the records only, no progress" bash -c "
    [ \$(wc -l <'$TMP/out.tsv') = 7 ] && ! grep -q \$'\r' '$TMP/out.tsv' && ! grep -q 'img/s' '$TMP/out.tsv'"
expect "classify: the error message starts its own line (the bar was erased first)" \
    grep -qE "^emote: $IN/p6.png: " "$TMP/tty"

on_tty "$TMP/tty" "$EMOTE classify $M --progress -b 1 -f tsv --no-header $IN"
expect "records on the same terminal start their own lines" bash -c "
    [ \$(grep -cE '^$IN/p[1-6].png' '$TMP/tty') = 6 ]"

on_tty "$TMP/tty" "$SLOW | $EMOTE classify $M -b 1 - >$TMP/out.tsv"
expect_status "classify from slow stdin: exit 0" 0
expect "default on a terminal: shown once the run passes 2 s; stdin shows done and rate, no total" \
    grep -qE '^[0-9]+ images  [0-9.]+ img/s  [0-9]+:[0-9]{2} so far' "$TMP/tty"
expect "... and no bar or ETA without a total" bash -c "! grep -qE 'ETA|/[0-9]+ images' '$TMP/tty'"

on_tty "$TMP/tty" "($SLOW | $EMOTE classify $M -q -b 1 - >/dev/null) &
                   ($SLOW | $EMOTE classify $M --no-progress -b 1 - >/dev/null) & wait"
expect "-q and --no-progress: nothing drawn on a terminal" bash -c "! grep -q 'img/s' '$TMP/tty'"

on_tty "$TMP/tty" "$EMOTE classify $M -b 1 $IN/p1.png >/dev/null"
expect "default: a run shorter than 2 s draws nothing" bash -c "! grep -q 'img/s' '$TMP/tty'"

run $EMOTE classify $M -b 1 "$IN"
expect "default off a terminal: no progress" bash -c "! grep -q 'img/s' '$TMP/err'"
run $EMOTE classify $M --progress -b 1 "$IN"
expect "--progress off a terminal: a final line, no carriage returns" bash -c "
    grep -qE '^emote: 6/6 images  [0-9.]+ img/s  in [0-9]+:[0-9]{2}\$' '$TMP/err' && ! grep -q \$'\r' '$TMP/err'"
run $EMOTE classify $M -q --progress -b 1 "$IN"
expect "--progress beats -q (asked for by name)" grep -q '^emote: 6/6 images' "$TMP/err"
expect "progress never reaches stdout" bash -c "! grep -q 'img/s' '$TMP/out'"
run $EMOTE classify $M --progress --no-progress "$IN"
expect "the last of --progress/--no-progress wins" bash -c "! grep -q 'img/s' '$TMP/err'"

# ---- eval and sort ------------------------------------------------------------------------
on_tty "$TMP/tty" "$EMOTE eval $M --progress -b 1 $TMP/tree >$TMP/eval.txt"
expect_status "eval --progress on a terminal: exit 0" 0
expect "eval --progress: bar with done/total, rate and ETA" has_bar "$TMP/tty" 3
expect "eval: the report on stdout is untouched" bash -c "
    head -1 '$TMP/eval.txt' | grep -q '^images      3 evaluated' && ! grep -q 'img/s' '$TMP/eval.txt'"
run $EMOTE eval $M -f json "$TMP/tree"
expect "eval off a terminal: no progress" bash -c "! grep -q 'img/s' '$TMP/err'"

on_tty "$TMP/tty" "$EMOTE sort $M --progress -b 1 $TMP/tree --into $TMP/sorted"
expect "sort --progress: bar with done/total, rate and ETA" has_bar "$TMP/tty" 3
expect "sort: the summary starts its own line" grep -q '^sorted 3 images into' "$TMP/tty"
finish
