#!/usr/bin/env bash
# Images from anywhere, through the CLI: every image case of ../shared/fuzz-findings
# (crafted and truncated files), truncation in each supported format, formats we refuse,
# EXIF orientation on the README's sample face, and JPEG scaled decoding.
source tests/testlib.sh
S=$ROOT/models/samples/astronaut-collins.png
FINDINGS=$ROOT/../shared/fuzz-findings

# bad_image NAME FILE REASON: FILE fails cleanly (exit 1, REASON on stderr naming it, an
# error record in jsonl), in bounded time, and the good image after it is still classified.
bad_image() {
    local name=$1 file=$2 reason=$3
    run timeout 10 $EMOTE -f jsonl "$file" "$S"
    expect_status "$name: exit 1" 1
    expect_stderr "$name: message names the file and the reason" "$file: $reason"
    expect "$name: error record, then the good image's record" /usr/bin/python3 -c "
import json; r = [json.loads(l) for l in open('$TMP/out')]
assert len(r) == 2 and 'error' in r[0] and 'label' not in r[0] and r[1]['label'] == 'happy', r"
}

# ---- the fuzz findings (crash first) ------------------------------------------------
if [ -d "$FINDINGS" ]; then
    bad_image "huff_decode symbol out of bounds (was SIGSEGV)" \
        "$FINDINGS/image-stb-jpeg-huff_decode-symbol-oob-segv.jpg" "corrupt or truncated image: Bogus Huffman table"
    bad_image "DHT with more than 256 codes" "$FINDINGS/image-stb-jpeg-DHT-build_huffman-index257.jpg" \
        "corrupt or truncated image"
    bad_image "PGM cut in half" "$FINDINGS/image-truncated-pgm-p5-half-accepted.pgm" \
        "corrupt or truncated image: PNM file truncated"
    bad_image "PPM header only" "$FINDINGS/image-truncated-ppm-p6-header-only-accepted.ppm" \
        "corrupt or truncated image: PNM file truncated"
    bad_image "GIF cut inside its LZW data" "$FINDINGS/image-truncated-gif-half-accepted.gif" \
        "corrupt or truncated image: GIF ends before its first frame's image data is complete"
    bad_image "JPEG without a scan" "$FINDINGS/image-truncated-jpeg-no-scan-eoi-accepted.jpg" \
        "corrupt or truncated image: Invalid JPEG file structure: missing SOS marker"
    bad_image "JPEG cut inside its scan" "$FINDINGS/image-truncated-jpeg-half-scan-eoi-accepted.jpg" \
        "corrupt or truncated image: Corrupt JPEG data: premature end of data segment"
    bad_image "PNG 100000x100000" "$FINDINGS/image-png-100000x100000-says-invalid-header.png" \
        "100000x100000 pixels is larger than the limit of 40000000 pixels"
    bad_image "PNG cut after IHDR" "$FINDINGS/image-png-truncated-after-IHDR-empty-reason.png" \
        "corrupt or truncated image: PNG ends after 33 bytes, before its IEND chunk"
    bad_image "BMP 13x2818057 truncated" "$FINDINGS/image-truncated-bmp-13x2818057-accepted.bmp" \
        "corrupt or truncated image: BMP pixel data truncated"
    bad_image "BMP 265 bytes truncated" "$FINDINGS/image-truncated-bmp-265B-accepted.bmp" \
        "corrupt or truncated image: BMP pixel data truncated"
    for f in image-truncated-psd-half-accepted.psd image-ub-stb-psd-unpremultiply-float-cast.psd; do
        bad_image "$f refused" "$FINDINGS/$f" "unsupported image format PSD (supported: PNG, JPEG, BMP, GIF, PNM)"
    done
    for f in image-truncated-hdr-flat-half-accepted.hdr image-truncated-hdr-header-only-accepted.hdr; do
        bad_image "$f refused" "$FINDINGS/$f" "unsupported image format HDR (supported: PNG, JPEG, BMP, GIF, PNM)"
    done
    bad_image "TGA refused" "$FINDINGS/image-truncated-tga-1404B-accepted.tga" \
        "unsupported image format (supported: PNG, JPEG, BMP, GIF, PNM)"
    run $EMOTE -f tsv --no-header "$FINDINGS/image-ub-stb-png-empty-first-IDAT-memcpy-null.png"
    expect_status "PNG with an empty first IDAT decodes (exit 0)" 0
    # the built-in model's answer (angry 0.345 with the model before 2026-12-03's stage 3)
    expect "PNG with an empty first IDAT: same answer as before (sad 0.2499)" grep -qP "\tsad\t0\.2499" "$TMP/out"
else
    skip "fuzz findings" "$FINDINGS is absent"
fi

# ---- a JPEG that lacks the scan of one component (tests/fixtures/jpeg, tools/jpeg_scans.c) ----
bad_image "JPEG without its luma scan (was neutral 0.66, exit 0)" "$FIXTURES/jpeg/no-luma-scan.jpg" \
    "corrupt or truncated image: JPEG has no scan for component 1 of 3 (luma)"
bad_image "JPEG without a chroma scan" "$FIXTURES/jpeg/no-chroma-scan.jpg" \
    "corrupt or truncated image: JPEG has no scan for component 3 of 3 (chroma)"
run $EMOTE -f tsv --no-header "$FIXTURES/jpeg/scan-per-component.jpg"
expect_status "JPEG with one scan per component, all there: exit 0" 0
cut -f2- "$TMP/out" >"$TMP/scans.tsv"
run $EMOTE -f tsv --no-header "$ROOT/models/samples/astronaut-collins.jpg"
expect "JPEG with one scan per component: the sample's answer" sh -c 'cut -f2- "$1" | cmp -s - "$2"' sh "$TMP/out" "$TMP/scans.tsv"

# ---- truncation in every supported format, cut anywhere after the signature ----------
/usr/bin/python3 - "$TMP/cut" <<'PY'
import io, os, sys, numpy as np
from PIL import Image
out = sys.argv[1]; os.makedirs(out)
img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8))
for fmt, ext, im, opts in [("PNG", "png", img, {}), ("JPEG", "jpg", img, {"quality": 90}),
                           ("JPEG", "progressive.jpg", img, {"progressive": True}),
                           ("GIF", "gif", img.convert("P"), {}), ("BMP", "bmp", img, {}),
                           ("PPM", "pgm", img.convert("L"), {}), ("PPM", "ppm", img, {})]:
    b = io.BytesIO(); im.save(b, fmt, **opts); data = b.getvalue()
    open(f"{out}/whole.{ext}", "wb").write(data)
    for frac in (0.3, 0.6, 0.9):
        open(f"{out}/cut{int(frac * 10)}.{ext}", "wb").write(data[:int(len(data) * frac)])
    # the last pixel bytes (PNM, BMP), JPEG's EOI, GIF's block terminator, PNG's IEND
    open(f"{out}/cutlast.{ext}", "wb").write(data[:-2] if fmt == "GIF" else data[:-1])
PY
for whole in "$TMP"/cut/whole.*; do
    ext=${whole##*/whole.}
    run $EMOTE -f tsv "$whole"
    expect_status "whole .$ext decodes" 0
    for cut in "$TMP"/cut/cut*."$ext"; do
        case $cut in *.progressive.jpg) [ "$ext" = progressive.jpg ] || continue ;; esac
        run timeout 10 $EMOTE -f tsv "$cut"
        expect_status "$(basename "$cut") refused (exit 1)" 1
        expect_stderr "$(basename "$cut") says corrupt or truncated" "$cut: corrupt or truncated image"
    done
done

# ---- walks take only supported extensions ------------------------------------------
mkdir -p "$TMP/walk"
cp "$S" "$TMP/walk/a.png"
cp "$S" "$TMP/walk/b.tga"; cp "$S" "$TMP/walk/c.psd"; cp "$S" "$TMP/walk/d.hdr"; cp "$S" "$TMP/walk/e.pbm"
run $EMOTE -f tsv --no-header "$TMP/walk"
expect_status "walk with .tga/.psd/.hdr/.pbm names: exit 0" 0
expect "walk takes only a.png" test "$(cut -f1 "$TMP/out")" = "$TMP/walk/a.png"
run $EMOTE -f tsv --no-header "$TMP/walk/b.tga"
expect_status "a named file is read whatever its name (PNG bytes in b.tga)" 0

# ---- EXIF orientation: the sample face stored as a camera would, 8 ways ---------------
/usr/bin/python3 - "$ROOT/models/samples/astronaut-collins.jpg" "$TMP/exif" <<'PY'
import os, sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]; os.makedirs(out)
T = Image.Transpose
# how to store an upright image so that EXIF orientation o shows it upright again
store = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
         6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}
upright = Image.open(src).convert("RGB")
for o, method in store.items():
    im = upright if method is None else upright.transpose(method)
    exif = Image.Exif(); exif[0x0112] = o
    im.save(f"{out}/o{o}.jpg", quality=95, exif=exif.tobytes())
PY
run $EMOTE -f tsv --no-header "$TMP/exif"
expect_status "8 EXIF orientations: exit 0" 0
expect "all 8 orientations read happy, within 0.03 of each other" /usr/bin/python3 -c "
rows = [l.split('\t') for l in open('$TMP/out').read().splitlines()]
assert len(rows) == 8 and all(r[1] == 'happy' for r in rows), rows
c = [float(r[2]) for r in rows]; assert max(c) - min(c) < 0.03 and min(c) > 0.8, c"
run $EMOTE -f tsv --no-header --no-exif "$TMP/exif/o6.jpg" "$TMP/exif/o8.jpg"
expect "--no-exif keeps sideways photos sideways (they no longer read happy 0.8+)" /usr/bin/python3 -c "
rows = [l.split('\t') for l in open('$TMP/out').read().splitlines()]
assert len(rows) == 2 and all(r[1] != 'happy' or float(r[2]) < 0.8 for r in rows), rows"
run $EMOTE -f tsv --no-header --stdin-image < "$TMP/exif/o6.jpg"
expect "--stdin-image applies EXIF too" grep -qP "^-\thappy\t0\.[89]" "$TMP/out"

# ---- the stb copy is the pin, byte for byte; libjpeg and no libstb ----------------------
PIN=$ROOT/../shared/third_party/stb
if [ -d "$PIN" ]; then
    for f in stb_image.h stb_image_resize2.h stb_image_write.h LICENSE; do
        expect "src/third_party/stb/$f is byte-identical to the pin" cmp -s "$PIN/$f" "$ROOT/src/third_party/stb/$f"
    done
else
    skip "stb pin comparison" "$PIN is absent"
fi
expect "emote links libjpeg and no libstb" bash -c "ldd '$EMOTE' | grep -q libjpeg && ! ldd '$EMOTE' | grep -q libstb"

finish
