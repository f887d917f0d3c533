#!/usr/bin/python3
"""`make eval-photos`: emote --faces on the real-photo set (tools/photos/manifest.json, photos in
build/photos, rebuilt by tools/photos/fetch_photos.py), scored against labels made by eye.

  /usr/bin/python3 tools/eval_photos.py [-m MODEL] [--min-face-score 0.4] [--curve] [-j N]
      [--emote ./emote] [--photos build/photos] [--from-jsonl FILE --name NAME]

Matching, per photo: detections are taken in order of face score; each one is matched to the
not-yet-matched labelled face it overlaps most, if IoU >= 0.4, or else if each box's centre lies
inside the other (a detector box framed differently from the label, e.g. forehead to chin vs.
hairline to chin). A detection left unmatched that overlaps a face labelled `ignore` (too small,
blurred, occluded or a depicted face: IoU >= 0.4 or its centre inside that label) counts neither
way; any other is a phantom (not a face). `ignore` faces are not needed for recall.

Printed: recall (labelled faces found), precision (boxes that are faces / all boxes), the phantom
boxes in photos with faces and in the no-face photos, expression accuracy end to end over faces
labelled with an unambiguous expression (a missed face counts as wrong; "of found" excludes the
missed ones), which box `eval --faces` / `sort --faces` take (the main face: the largest of the
boxes scoring within 0.2 of the best, emote_main_face) and whether it is a real face, and photos/s (wall clock of the one emote run, --max-faces 1000, all photos).
--curve runs once at --min-face-score 0.05 and prints the table over face scores 0.1..0.9.
--from-jsonl scores another tool's records (jsonl: path, box [x,y,w,h], face_score, label; one per
face) in the same way, e.g. tools/eval_photos_peers.mjs's.
Exit status 0 also when the photos are absent (it says so and skips); 2 on a usage error.
"""
import argparse, json, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
IOU_MATCH = 0.4


def iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def centre_inside(a, b):
    cx, cy = a[0] + a[2] / 2, a[1] + a[3] / 2
    return b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]


def match_photo(faces, dets):
    """faces: labelled faces; dets: detections (dicts with box, face_score, label), any order.
    Returns (kinds, matched) where kinds[i] is 'face' / 'ignore' / 'phantom' for dets[i] and
    matched[j] is the index into dets of the detection matched to labelled face j, or None."""
    real = [j for j, f in enumerate(faces) if not f.get('ignore')]
    ignored = [f for f in faces if f.get('ignore')]
    matched = {j: None for j in real}
    kinds = [None] * len(dets)
    for i in sorted(range(len(dets)), key=lambda i: -dets[i]['face_score']):
        d = dets[i]['box']
        best, best_iou = None, 0.0
        for j in real:
            if matched[j] is not None:
                continue
            v = iou(d, faces[j]['box'])
            ok = v >= IOU_MATCH or (centre_inside(d, faces[j]['box']) and centre_inside(faces[j]['box'], d))
            if ok and (best is None or v > best_iou):
                best, best_iou = j, v
        if best is not None:
            matched[best] = i
            kinds[i] = 'face'
        elif any(iou(d, f['box']) >= IOU_MATCH or centre_inside(d, f['box']) for f in ignored):
            kinds[i] = 'ignore'
        else:
            kinds[i] = 'phantom'
    return kinds, matched


def score(photos, dets_by_name, threshold):
    """All figures at one face-score threshold."""
    s = dict(faces=0, found=0, boxes=0, face_boxes=0, phantoms_face_photos=0, phantoms_noface_photos=0,
             expr_total=0, expr_right=0, expr_found=0, largest_real=0, largest_phantom=[],
             largest_none=[], noface_photos_with_box=[], per_class={}, missed=[])
    for p in photos:
        dets = [d for d in dets_by_name.get(p['name'], []) if d['face_score'] >= threshold]
        kinds, matched = match_photo(p['faces'], dets)
        real = [j for j, f in enumerate(p['faces']) if not f.get('ignore')]
        s['faces'] += len(real)
        s['found'] += sum(1 for j in real if matched[j] is not None)
        s['missed'] += [(p['name'], p['faces'][j]['box']) for j in real if matched[j] is None]
        s['boxes'] += sum(1 for k in kinds if k != 'ignore')
        s['face_boxes'] += kinds.count('face')
        if real:
            s['phantoms_face_photos'] += kinds.count('phantom')
        else:
            s['phantoms_noface_photos'] += kinds.count('phantom')
            if dets:
                s['noface_photos_with_box'].append(p['name'])
        for j in real:
            want = p['faces'][j].get('expression')
            if not want:
                continue
            c = s['per_class'].setdefault(want, [0, 0])
            c[1] += 1
            s['expr_total'] += 1
            i = matched[j]
            if i is not None:
                s['expr_found'] += 1
                if dets[i].get('label') == want:
                    s['expr_right'] += 1
                    c[0] += 1
        if real:
            if not dets:
                s['largest_none'].append(p['name'])
            else:
                big = main_face(dets)
                if kinds[big] == 'face':
                    s['largest_real'] += 1
                else:
                    d = dets[big]
                    s['largest_phantom'].append(f"{p['name']} ({kinds[big]} at {d['face_score']:.2f}, "
                                                f"read {d.get('label')})")
    return s


MAIN_FACE_MARGIN = 0.2  # include/emote.h EMOTE_MAIN_FACE_MARGIN


def main_face(dets):
    """emote_main_face: the largest box among those scoring within MAIN_FACE_MARGIN of the best."""
    best = max(d['face_score'] for d in dets)
    near = [i for i, d in enumerate(dets) if d['face_score'] >= best - MAIN_FACE_MARGIN]
    return max(near, key=lambda i: (dets[i]['box'][2] * dets[i]['box'][3], dets[i]['face_score']))


def pct(a, b):
    return f'{100.0 * a / b:.1f} %' if b else 'n/a'


def report(s, photos, threshold, title, seconds=None, own=False):
    n_face_photos = sum(1 for p in photos if any(not f.get('ignore') for f in p['faces']))
    n_noface = len(photos) - n_face_photos
    where = "at the tool's own threshold" if own else f'--min-face-score {threshold:g}'
    print(f'{title}, {where}, {len(photos)} photos ({n_face_photos} with faces, '
          f'{n_noface} without)')
    print(f"  recall      {pct(s['found'], s['faces']):>8}  ({s['found']} of {s['faces']} labelled faces found)")
    print(f"  precision   {pct(s['face_boxes'], s['boxes']):>8}  ({s['face_boxes']} of {s['boxes']} boxes are faces; "
          f"phantoms: {s['phantoms_face_photos']} in photos with faces, {s['phantoms_noface_photos']} in "
          f"{len(s['noface_photos_with_box'])} of {n_noface} no-face photos)")
    print(f"  expression  {pct(s['expr_right'], s['expr_total']):>8}  end to end ({s['expr_right']} of "
          f"{s['expr_total']} faces with a clear expression; of the {s['expr_found']} found: "
          f"{pct(s['expr_right'], s['expr_found'])})")
    for c, (r, t) in sorted(s['per_class'].items()):
        print(f'              {c:<9} {r} of {t}')
    print(f"  main face   {s['largest_real']} of {n_face_photos} photos with faces: a real face "
          f"(what eval --faces and sort --faces take)")
    for x in s['largest_phantom']:
        print(f'              main face is not a face: {x}')
    for x in s['largest_none']:
        print(f'              no box at all: {x}')
    if seconds is not None:
        print(f'  speed       {len(photos) / seconds:.2f} photos/s ({seconds:.2f} s wall for {len(photos)} photos, '
              'one run)')


def run_emote(a, photo_paths, threshold):
    cmd = [a.emote, '--faces', '--min-face-score', str(threshold), '--max-faces', '1000', '-q', '-f', 'jsonl']
    if a.model:
        cmd += ['-m', a.model]
    if a.jobs:
        cmd += ['-j', str(a.jobs)]
    cmd += photo_paths
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if out.returncode not in (0,):
        print(f'eval_photos: {" ".join(cmd[:9])} ...: exit status {out.returncode}\n{out.stderr}', file=sys.stderr)
        sys.exit(1)
    return out.stdout.splitlines(), dt, cmd


def parse_records(lines):
    by = {}
    for line in lines:
        r = json.loads(line)
        name = os.path.basename(r['path'])
        by.setdefault(name, [])
        if 'box' in r:
            by[name].append(r)
    return by


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--manifest', default=os.path.join(HERE, 'photos', 'manifest.json'))
    ap.add_argument('--photos', default='build/photos')
    ap.add_argument('--emote', default='./emote')
    ap.add_argument('-m', '--model', help='classifier: a built-in name or a file (default: emote\'s, fer2013-faces)')
    ap.add_argument('--min-face-score', type=float, default=0.4, help="emote's default (0.4)")
    ap.add_argument('-j', '--jobs', type=int, help="passed to emote's -j")
    ap.add_argument('--curve', action='store_true', help='precision/recall over face scores 0.1..0.9')
    ap.add_argument('--from-jsonl', help="score another tool's records instead of running emote")
    ap.add_argument('--name', default=None, help='title for --from-jsonl')
    ap.add_argument('--seconds', type=float, help='wall seconds of the --from-jsonl run, for photos/s')
    ap.add_argument('--dump-rgb', metavar='DIR', help='write each photo upright as raw RGB, DIR/NAME.WxH.rgb '
                    '(input for tools/eval_photos_peers.mjs), and exit')
    a = ap.parse_args()

    photos = json.load(open(a.manifest))['photos']
    present = [p for p in photos if os.path.isfile(os.path.join(a.photos, p['name']))]
    if not present:
        print(f'eval-photos: skipped: no photos in {a.photos} (rebuild them with '
              f'/usr/bin/python3 tools/photos/fetch_photos.py from fetched snapshots)')
        return 0
    if len(present) < len(photos):
        print(f'eval-photos: only {len(present)} of {len(photos)} photos in {a.photos}: '
              f'the figures below are over those', file=sys.stderr)
    photos = present
    paths = [os.path.join(a.photos, p['name']) for p in photos]
    if a.dump_rgb:
        from PIL import Image, ImageOps
        os.makedirs(a.dump_rgb, exist_ok=True)
        for p, path in zip(photos, paths):
            im = ImageOps.exif_transpose(Image.open(path)).convert('RGB')
            with open(os.path.join(a.dump_rgb, f"{p['name']}.{im.width}x{im.height}.rgb"), 'wb') as f:
                f.write(im.tobytes())
        return 0

    if a.from_jsonl:
        by = parse_records(open(a.from_jsonl))
        title = a.name or a.from_jsonl
        seconds = a.seconds
    else:
        threshold = 0.05 if a.curve else a.min_face_score
        lines, seconds, cmd = run_emote(a, paths, threshold)
        by = parse_records(lines)
        title = f"emote --faces{' -m ' + a.model if a.model else ''}"
    if a.curve:
        print(f'{title}: precision/recall over face scores ({len(photos)} photos; one run at 0.05)')
        print('| min face score | recall | precision | phantom boxes (no-face photos) | expression, end to end '
              '| main face a real face |')
        print('| ---: | ---: | ---: | ---: | ---: | ---: |')
        n_face_photos = sum(1 for p in photos if any(not f.get('ignore') for f in p['faces']))
        for t10 in range(1, 10):
            t = t10 / 10
            s = score(photos, by, t)
            ph = s['phantoms_face_photos'] + s['phantoms_noface_photos']
            print(f"| {t:.1f} | {pct(s['found'], s['faces'])} | {pct(s['face_boxes'], s['boxes'])} | "
                  f"{ph} ({s['phantoms_noface_photos']}) | {pct(s['expr_right'], s['expr_total'])} | "
                  f"{s['largest_real']} of {n_face_photos} |")
        return 0
    t = 0.0 if a.from_jsonl else a.min_face_score
    s = score(photos, by, t)
    report(s, photos, a.min_face_score, title, seconds, own=bool(a.from_jsonl))
    return 0


if __name__ == '__main__':
    sys.exit(main())
