#!/usr/bin/python3
"""Draw emote's face boxes (and the manifest's labelled faces) onto copies of photos, for labelling by eye.

  ./emote --faces --min-face-score 0.05 --max-faces 1000 -q -f jsonl build/photos > det.jsonl
  /usr/bin/python3 tools/photos/draw_boxes.py det.jsonl OUTDIR [--manifest tools/photos/manifest.json]
      [--min-score 0.1] [--long-side 1400] [--only NAME ...]

Detections are drawn with their index (the record's "face", 0 = largest) and score: green >= 0.5,
yellow 0.2-0.5, red below 0.2. Labelled faces from the manifest are drawn in blue with their
label index ("L0", ...), ignored ones dashed-looking in cyan. Photos are upright as emote sees them
(EXIF orientation applied), scaled so the longer side is at most --long-side.
"""
import argparse, json, os, sys
from PIL import Image, ImageDraw, ImageFont, ImageOps

def font(size):
    try:
        return ImageFont.truetype('/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf', size)
    except OSError:
        return ImageFont.load_default()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('detections')
    ap.add_argument('outdir')
    ap.add_argument('--manifest')
    ap.add_argument('--min-score', type=float, default=0.1)
    ap.add_argument('--long-side', type=int, default=1400)
    ap.add_argument('--only', nargs='*')
    a = ap.parse_args()
    dets = {}
    for line in open(a.detections):
        r = json.loads(line)
        dets.setdefault(r['path'], [])
        if 'box' in r and r['face_score'] >= a.min_score:
            dets[r['path']].append(r)
    labels = {}
    if a.manifest:
        for p in json.load(open(a.manifest))['photos']:
            labels[p['name']] = p['faces']
    os.makedirs(a.outdir, exist_ok=True)
    for path, rs in sorted(dets.items()):
        name = os.path.basename(path)
        if a.only and name not in a.only:
            continue
        im = ImageOps.exif_transpose(Image.open(path)).convert('RGB')
        s = min(1.0, a.long_side / max(im.size))
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        d = ImageDraw.Draw(im)
        f = font(max(12, round(min(im.size) / 45)))
        for i, face in enumerate(labels.get(name, [])):
            x, y, w, h = [v * s for v in face['box']]
            col = (0, 220, 255) if face.get('ignore') else (40, 80, 255)
            d.rectangle([x, y, x + w, y + h], outline=col, width=2)
            d.text((x + 2, y + h - f.size - 2), f'L{i}', fill=col, font=f)
        for r in rs:
            x, y, w, h = [v * s for v in r['box']]
            sc = r['face_score']
            col = (0, 230, 0) if sc >= 0.5 else (255, 220, 0) if sc >= 0.2 else (255, 40, 40)
            d.rectangle([x, y, x + w, y + h], outline=col, width=2)
            d.text((x + 2, y + 1), f"{r['face']}:{sc:.2f}", fill=col, font=f, stroke_width=2, stroke_fill=(0, 0, 0))
        out = os.path.join(a.outdir, os.path.splitext(name)[0] + '.png')
        im.save(out)
        print(out, len(rs), 'boxes')

if __name__ == '__main__':
    sys.exit(main())
