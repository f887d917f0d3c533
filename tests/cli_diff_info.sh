#!/usr/bin/env bash
# emote diff (prediction-file comparison as a CI gate), emote info (the model card) and
# eval --plot (confusion-matrix pictures).
source tests/testlib.sh
PY=/usr/bin/python3

# A labelled tree, two images per label of the test model, and its predictions.
for k in 0 1 2 3 4 5 6; do
    mkdir -p "$TMP/tree/c$k"
    make_png "$TMP/tree/c$k/a.png" 24 24 "$k"
    make_png "$TMP/tree/c$k/b.png" 30 20 "$((k + 10))"
done
run $EMOTE -m "$TEST_MODEL" -f jsonl "$TMP/tree"
expect_status "classify -f jsonl writes the OLD predictions" 0
cp "$TMP/out" "$TMP/old.jsonl"
N=$(wc -l <"$TMP/old.jsonl")

# edit OUT PYTHON: writes old.jsonl's records, changed by PYTHON (acting on list `recs`), to OUT.
edit() {
    $PY - "$TMP/old.jsonl" "$1" "$2" <<'PY'
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
exec(sys.argv[3])
with open(sys.argv[2], "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
PY
}
# Flips record 2 to its second most likely label (a changed top label).
FLIP='r = recs[2]; second = sorted(r["probs"], key=r["probs"].get)[-2]
r["probs"][second] = r["confidence"] + 0.01; r["label"] = second; r["confidence"] = r["probs"][second]'
FLIPPED=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[2])["path"])' "$TMP/old.jsonl")

# ---- diff ---------------------------------------------------------------------------
run $EMOTE diff "$TMP/old.jsonl" "$TMP/old.jsonl"
expect_status "diff: identical files -> exit 0" 0
expect_stdout "diff: summary counts the compared records" "0 of $N labels changed; max probability change 0; 0 only in OLD, 0 only in NEW"

edit "$TMP/flip.jsonl" "$FLIP"
run $EMOTE diff "$TMP/old.jsonl" "$TMP/flip.jsonl"
expect_status "diff: a changed top label -> exit 4" 4
expect_stdout "diff: the changed input is named" "changed             $FLIPPED"
expect_stdout "diff: the summary counts it" "1 of $N labels changed"
expect_stderr "diff: says which limit failed" "more than --max-changed 0"
run $EMOTE diff --max-changed 1 "$TMP/old.jsonl" "$TMP/flip.jsonl"
expect_status "diff: --max-changed 1 allows one change" 0

edit "$TMP/nudge.jsonl" 'r = recs[4]; low = min(r["probs"], key=r["probs"].get); r["probs"][low] += 0.002'
run $EMOTE diff "$TMP/old.jsonl" "$TMP/nudge.jsonl"
expect_status "diff: a small probability move without a tolerance -> exit 0" 0
run $EMOTE diff --tolerance 0.001 "$TMP/old.jsonl" "$TMP/nudge.jsonl"
expect_status "diff: --tolerance 0.001 catches a 0.002 move with no label change" 4
expect_stderr "diff: says the tolerance was passed" "more than --tolerance 0.001"
run $EMOTE diff --tolerance 0.01 "$TMP/old.jsonl" "$TMP/nudge.jsonl"
expect_status "diff: --tolerance 0.01 lets a 0.002 move pass" 0

edit "$TMP/short.jsonl" 'recs.pop()'
LAST=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["path"])' "$TMP/old.jsonl")
run $EMOTE diff --max-changed 100 --tolerance 1 "$TMP/old.jsonl" "$TMP/short.jsonl"
expect_status "diff: a path missing from NEW -> exit 4 whatever the limits" 4
expect_stdout "diff: names the path only in OLD" "only in OLD         $LAST"

edit "$TMP/failed.jsonl" 'recs[1] = {"path": recs[1]["path"], "error": "cannot decode"}'
run $EMOTE diff --max-changed 100 "$TMP/old.jsonl" "$TMP/failed.jsonl"
expect_status "diff: an input failing only in NEW -> exit 4" 4
expect_stdout "diff: reports the new failure" "failed in NEW only"

edit "$TMP/dup.jsonl" 'recs.append(dict(recs[0]))'
run $EMOTE diff "$TMP/old.jsonl" "$TMP/dup.jsonl"
expect_status "diff: a repeated path is only a warning" 0
expect_stderr "diff: warns about the repeated path with its line" "dup.jsonl:$((N + 1)): path"

{ head -2 "$TMP/old.jsonl"; echo '{"path": "x.png", "label": '; } >"$TMP/bad.jsonl"
run $EMOTE diff "$TMP/old.jsonl" "$TMP/bad.jsonl"
expect_status "diff: a malformed line -> exit 3" 3
expect_stderr "diff: names file and line" "bad.jsonl:3:"
run $EMOTE diff "$TMP/old.jsonl" "$TMP/absent.jsonl"
expect_status "diff: a missing file -> exit 3" 3
expect_stderr "diff: names the missing file" "absent.jsonl"
run $EMOTE diff "$TMP/old.jsonl"
expect_status "diff: one file -> usage error" 2
run $EMOTE diff --bogus "$TMP/old.jsonl" "$TMP/old.jsonl"
expect_status "diff: unknown flag -> usage error" 2
run $EMOTE diff --tolerance 2 "$TMP/old.jsonl" "$TMP/old.jsonl"
expect_status "diff: --tolerance 2 -> usage error" 2
run $EMOTE info --bogus
expect_status "info: unknown flag -> usage error" 2

run $EMOTE diff -f json "$TMP/old.jsonl" "$TMP/flip.jsonl"
expect "diff -f json: parses, with the same facts as the text report" $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["compared"] == int(sys.argv[2]) and d["changed_count"] == 1 and not d["within_limits"], d
assert d["changed"][0]["path"] == sys.argv[3] and d["changed"][0]["old"]["label"] != d["changed"][0]["new"]["label"]
assert d["max_prob_change"]["path"] == sys.argv[3] and d["max_prob_change"]["value"] > 0
assert d["only_in_old"] == [] and d["only_in_new"] == []' "$TMP/out" "$N" "$FLIPPED"

# Thousands of records (the path table grows many times): exact counts.
$PY - "$TMP/big_old.jsonl" "$TMP/big_new.jsonl" <<'PY'
import json, sys
labels = ["a", "b", "c"]
def rec(i, top):
    probs = {l: (0.6 if l == top else 0.2) for l in labels}
    return json.dumps({"path": f"img/{i:05d}.png", "label": top, "confidence": 0.6, "probs": probs}) + "\n"
with open(sys.argv[1], "w") as old, open(sys.argv[2], "w") as new:
    for i in range(5000):
        old.write(rec(i, "a"))
        if i % 1000 != 999:                       # 5 only in OLD
            new.write(rec(i, "b" if i % 700 == 0 else "a"))   # 8 changed (0, 700, ..., 4900)
    for i in range(5000, 5002):                   # 2 only in NEW
        new.write(rec(i, "a"))
PY
run $EMOTE diff -f json "$TMP/big_old.jsonl" "$TMP/big_new.jsonl"
expect "diff: 5000 records: exact changed / only-in counts" $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["compared"], d["changed_count"], len(d["only_in_old"]), len(d["only_in_new"])) == (4995, 8, 5, 2), d["compared"]
assert d["only_in_new"] == ["img/05000.png", "img/05001.png"] and abs(d["max_prob_change"]["value"] - 0.4) < 1e-12' "$TMP/out"

# ---- info ---------------------------------------------------------------------------
run $EMOTE info "$TEST_MODEL"
expect_status "info MODEL -> exit 0" 0
expect_stdout "info: labels in output order" "c0, c1, c2, c3, c4, c5, c6"
expect_stdout "info: input spec" "1 x 24 x 24 (channels x height x width), preprocessing emote/1"
expect_stdout "info: provenance keys" "random weights (test fixture)"
run $EMOTE info -f json -m "$TEST_MODEL"
cp "$TMP/out" "$TMP/info.json"
expect "info -f json: parses, params > 0, flops = 2 x macs, provenance embedded" $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["labels"] == ["c%d" % i for i in range(7)] and d["params"] > 0 and d["flops"] == 2 * d["macs"] > 0
assert d["input"]["height"] == 24 and isinstance(d["provenance"], dict) and d["provenance"]["seed"] == 20261122
assert len(d["ops"]) > 3' "$TMP/info.json"
if $PY -c 'import torch' 2>/dev/null; then
    # Both count the multiply-adds of convs and linear layers (SE's FCs included).
    expect "info: params and FLOPs match tools/emote_model.py count_flops" $PY - "$TEST_MODEL" "$TMP/info.json" <<'PY'
import json, struct, sys
sys.path.insert(0, "tools")
from emote_model import EmoteNet, count_flops
raw = open(sys.argv[1], "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
net = EmoteNet(json.loads(header["__metadata__"]["config"]))
macs = sum(row[2] for row in count_flops(net))
info = json.load(open(sys.argv[2]))
assert info["params"] == sum(p.numel() for p in net.parameters()), (info["params"],)
assert info["flops"] == 2 * macs, (info["flops"], 2 * macs)
PY
else
    skip "info: FLOPs against tools/emote_model.py" "PyTorch (python3-torch) is not installed"
fi
EMOTE_MODEL=$TEST_MODEL run $EMOTE info
expect_stdout "info: no MODEL -> \$EMOTE_MODEL" "model        $TEST_MODEL"
run $EMOTE info "$TMP/absent.safetensors"
expect_status "info: a missing model -> exit 3" 3
expect_stderr "info: names the missing file" "absent.safetensors"

# ---- eval --plot ---------------------------------------------------------------------
run $EMOTE eval -m "$TEST_MODEL" --plot "$TMP/plots/cm.svg" "$TMP/tree"
expect_status "eval --plot into a missing folder -> exit 3" 3
expect_stderr "eval --plot: names the file it cannot write" "$TMP/plots/cm.svg"
mkdir "$TMP/plots"
run $EMOTE eval -m "$TEST_MODEL" --plot "$TMP/plots/cm.svg" "$TMP/tree"
expect_status "eval --plot out.svg -> exit 0" 0
expect "eval --plot: the SVG parses, with labels, counts and title" $PY -c '
import re, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
assert root.tag.endswith("svg") and all("c%d" % i in texts for i in range(7)), texts
assert any(t.startswith("Confusion matrix: accuracy") and "(14 images)" in t for t in texts)
assert sum(bool(re.fullmatch(r"\d+\.\d%", t)) for t in texts) == 49, texts' "$TMP/plots/cm.svg"
run $EMOTE eval -m "$TEST_MODEL" -f json --plot "$TMP/plots/cm.png" "$TMP/tree"
expect_status "eval --plot out.png -> exit 0" 0
expect "eval --plot: the PNG opens, RGB, with drawn (non-white) pixels" $PY -c '
import sys
from PIL import Image
im = Image.open(sys.argv[1]); im.load()
assert im.mode == "RGB" and im.size[0] > 200 and im.size[1] > 200, (im.mode, im.size)
assert min(im.convert("L").getdata()) < 64' "$TMP/plots/cm.png"
expect "eval --plot: no temporary files left beside the plots" \
    bash -c "[ \$(ls -A '$TMP/plots' | wc -l) = 2 ]"
run $EMOTE eval -m "$TEST_MODEL" --plot "$TMP/plots/cm.jpg" "$TMP/tree"
expect_status "eval --plot out.jpg -> usage error" 2

finish
