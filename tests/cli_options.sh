#!/usr/bin/env bash
# How every command reads its options (getopt_long, src/cli/options.c): value spellings,
# options among the operands, '--' and '-', abbreviations, and the usage errors (exit 2).
source tests/testlib.sh
M="-m $TEST_MODEL"

mkdir -p "$TMP/tree/c0" "$TMP/tree/c1"
for i in 1 2; do make_png "$TMP/tree/c0/f$i.png" 24 24 "$i"; make_png "$TMP/tree/c1/g$i.png" 24 24 "$((i + 5))"; done
FACES=$TMP/tree

# ---- value spellings and positions: the same records ---------------------------------------
$EMOTE $M -f tsv -b 2 -j 2 --top 2 "$FACES" >"$TMP/reference" 2>&1
for args in "-ftsv -b2 -j2 -k2" "--format=tsv --batch=2 --threads=2 --top=2" "--format tsv --batch 2 --threads 2 --top 2" \
            "-qj2 -f tsv -b 2 --top 2" "--form tsv --bat 2 --thr 2 --to 2"; do
    run $EMOTE $M $args "$FACES"
    expect "classify $args: the same records as -f tsv -b 2 -j 2 --top 2" cmp -s "$TMP/reference" "$TMP/out"
done
run $EMOTE "$FACES" -f tsv $M -b 2 --top 2 -j2
expect "options after the operand: the same records" cmp -s "$TMP/reference" "$TMP/out"
POSIXLY_CORRECT=1 run $EMOTE "$FACES" -f tsv $M -b 2 --top 2 -j2
expect "... also with POSIXLY_CORRECT set" cmp -s "$TMP/reference" "$TMP/out"

# ---- '--' and '-' ----------------------------------------------------------------------------
cp "$FACES/c0/f1.png" "$TMP/-j1.png"
cd "$TMP" && run $EMOTE $M -f tsv -- -j1.png; cd "$ROOT"
expect_status "after --, -j1.png is a path: exit 0" 0
expect_stdout "... and its record" "-j1.png	c"
run $EMOTE $M -f tsv -- -j1
expect_stderr "after --, -j1 is a path, not -j 1" "-j1: cannot open"
echo "$FACES/c0/f1.png" | run $EMOTE $M -f tsv - --no-header
expect "'-' reads paths from stdin, options after it still apply" test "$(cut -f1 "$TMP/out")" = "$FACES/c0/f1.png"

# ---- usage errors: exit 2 and a message that names the option --------------------------------
# usage_error NAME MESSAGE ARGS...: emote ARGS exits 2 and says MESSAGE.
usage_error() {
    local name=$1 message=$2; shift 2
    run $EMOTE "$@"
    expect_status "$name: exit 2" 2
    expect_stderr "$name: says so" "$message"
}
for cmd in classify eval sort diff info; do
    usage_error "$cmd --bogus" "emote: unknown option '--bogus' (see emote $cmd --help)" $cmd --bogus=1 x
    usage_error "$cmd -Z" "emote: unknown option '-Z' (see emote $cmd --help)" $cmd -Z x
done
usage_error "missing value (short)" "emote: -j needs a value" $M "$FACES" -j
usage_error "missing value (long)" "emote: --threads needs a value" $M "$FACES" --threads
usage_error "missing value (abbreviated)" "emote: --model needs a value" info --mod
usage_error "missing value of sort" "emote: --into needs a value" sort $M "$FACES" --into
usage_error "missing value of diff" "emote: --tolerance needs a value" diff a b --tolerance
usage_error "bad value named as typed (-j)" "emote: -j needs an integer from 0 to 256, not 'x'" $M -jx "$FACES"
usage_error "bad value named as typed (--threads)" "emote: --threads needs an integer from 0 to 256, not 'x'" \
    $M --threads=x "$FACES"
usage_error "bad value of an abbreviation: the full name" "emote: --threads needs an integer" $M --thr x "$FACES"
usage_error "a value given to a flag" "emote: --tta takes no value" $M --tta=1 "$FACES"
usage_error "an ambiguous abbreviation lists the options" \
    "emote: option '--m' is ambiguous; it could be --model, --min-face-score or --max-faces" $M --m 2 "$FACES"
usage_error "--no is ambiguous in classify" "it could be --no-header, --no-exif or --no-progress" --no "$FACES"
empty="emote: -m needs a built-in model's name or a model file, not an empty string"
usage_error "-m '' is not the built-in model" "$empty" -m '' "$FACES"
usage_error "eval -m ''" "$empty" eval -m '' "$FACES"
usage_error "info -m ''" "$empty" info -m ''
usage_error "info ''" "emote: info MODEL needs a built-in model's name or a model file, not an empty string" info ''
usage_error "--faces --tta" "emote: --faces does not yet work with --tta" --faces --tta "$FACES"
usage_error "--tta --faces (either order)" "emote: --faces does not yet work with --tta" --tta --faces "$FACES"
usage_error "--faces --stdin-image" "emote: --faces does not yet work with --stdin-image" --faces --stdin-image
for shard in 1/99999999999 4294967297/4294967298 -1/3 ' 1/3' 1/3x 1/ /3; do
    usage_error "--shard '$shard': overflow and stray characters refused" \
        "emote: --shard needs K/N with 1 <= K <= N, not '$shard'" $M --shard "$shard" "$FACES"
done

# ---- every command: help, abbreviations, options after the operands ----------------------------
for cmd in classify eval sort diff info; do
    run $EMOTE $cmd --he
    expect_status "$cmd --he (--help): exit 0" 0
    expect_stdout "$cmd --he: its usage" "usage: emote"
done
run $EMOTE eval $M "$FACES" --min-acc 1 -q
expect_status "eval DIR --min-acc 1 (--min-accuracy): exit 4" 4
$EMOTE $M -f jsonl -o "$TMP/c0.jsonl" "$FACES/c0" && $EMOTE $M -f jsonl -o "$TMP/c1.jsonl" "$FACES/c1"
$EMOTE eval $M --predictions "$TMP/c0.jsonl" "$TMP/c1.jsonl" >"$TMP/eval-two" 2>&1
run $EMOTE eval $M --predictions "$TMP/c0.jsonl" --predictions "$TMP/c1.jsonl"
expect "eval --predictions A --predictions B: the report of --predictions A B" cmp -s "$TMP/eval-two" "$TMP/out"
run $EMOTE eval "$TMP/c1.jsonl" $M --pred "$TMP/c0.jsonl"
expect "eval B --pred A: the same report" cmp -s "$TMP/eval-two" "$TMP/out"
run $EMOTE sort $M "$FACES" --into "$TMP/sorted" --dry-run -j2
expect_status "sort DIR --into OUT --dry-run -j2: exit 0" 0
expect "... plans every image, writes nothing" bash -c "[ \$(wc -l <'$TMP/out') = 4 ] && [ ! -e '$TMP/sorted' ]"
run $EMOTE diff "$TMP/c0.jsonl" "$TMP/c0.jsonl" --format=json --max-ch 0
expect_status "diff OLD NEW --format=json --max-ch 0: exit 0" 0
expect_stdout "... a JSON report" '"within_limits":true'
$EMOTE info -f json "$TEST_MODEL" >"$TMP/info" 2>&1
for args in "$TEST_MODEL --format=json" "-fjson --model=$TEST_MODEL" "--mod $TEST_MODEL --form json"; do
    run $EMOTE info $args
    expect "info $args: the card of info -f json MODEL" cmp -s "$TMP/info" "$TMP/out"
done
usage_error "info -m A B" "emote: info takes one model" info -m "$TEST_MODEL" "$TEST_MODEL"
finish
