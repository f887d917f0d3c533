#!/usr/bin/python3
"""How --faces frames a face against how the classifier's training crops were framed.

    /usr/bin/python3 tools/framing_study.py [--val ../shared/data/fer2013/val] [--work DIR]

1. Each FER2013 val crop (48x48) is upscaled 4x (bicubic, 192 px) and edge-padded into a
   384x384 canvas: WORK/padded/<label>/<name>.png, the FER2013 crop being the square
   [96, 288)^2 of the canvas.
2. `./emote --faces --max-faces 1 -f jsonl` finds the face in each (WORK/faces.jsonl).
3. For each framing below, every found face is cropped as src/faces/align.c does (rotation
   about the box centre, bilinear sampling at the box's resolution, at least the model's
   side, at most 4x it), shrunk to 48x48 (PIL, antialiased) and classified by the C engine
   (build/release/libemote.so via tools/c_engine.py); the probabilities of a framing's
   crops are averaged. Printed: top-1 accuracy on the found faces, next to the same faces'
   original crops classified directly and the exact FER2013 square cut from the canvas
   (what resampling alone costs).

This is a model of the CLI's crop path for quick comparisons, not the CLI itself: the
CLI's own figure comes from `./emote eval --faces WORK/padded`.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from c_engine import CEngine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SIDE, CANVAS, FER = 48, 384, 192  # model input, canvas, the FER2013 crop in the canvas

# name: list of crops (scale x box side, levelling tolerance in degrees, or None: no rotation)
FRAMINGS = {
    "scale 1.1, eyes levelled (the CLI until 2026-11-30)": [(1.1, 0)],
    "scale 0.9, eyes levelled": [(0.9, 0)],
    "scale 1.0, eyes levelled": [(1.0, 0)],
    "scale 1.0, no rotation": [(1.0, None)],
    "scale 1.0, levelled past 15 degrees": [(1.0, 15)],
    "scales 0.9/1.0/1.1 averaged, levelled past 15 degrees (the CLI now)": [(0.9, 15), (1.0, 15), (1.1, 15)],
    "scales 0.9/1.0/1.1 averaged, no rotation": [(0.9, None), (1.0, None), (1.1, None)],
    "scales 0.8-1.2 (5) averaged, levelled past 15 degrees": [(s, 15) for s in (0.8, 0.9, 1.0, 1.1, 1.2)],
}


def pad_val(val, out):
    for label in LABELS:
        os.makedirs(os.path.join(out, label), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(val, label))):
            dst = os.path.join(out, label, name)
            if os.path.exists(dst):
                continue
            img = Image.open(os.path.join(val, label, name)).convert("L").resize((FER, FER), Image.BICUBIC)
            pad = (CANVAS - FER) // 2
            Image.fromarray(np.pad(np.asarray(img), pad, mode="edge")).save(dst)


def sample(img, sx, sy):
    h, w = img.shape
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = sx.astype(int), sy.astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
    bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
    return top + (bottom - top) * fy


def crop(img, box, landmarks, scale, level):
    x, y, w, h = box
    tilt = np.arctan2(landmarks[3] - landmarks[1], landmarks[2] - landmarks[0])
    angle = 0.0 if level is None else np.sign(tilt) * max(abs(tilt) - np.radians(level), 0.0)
    cs, sn = np.cos(angle), np.sin(angle)
    side = scale * max(w, h)
    size = min(max(int(side), SIDE), 4 * SIDE)
    g = (np.arange(size) + 0.5) / size * side - side / 2
    du, dv = np.meshgrid(g, g)
    sx = x + w / 2 + du * cs - dv * sn - 0.5
    sy = y + h / 2 + du * sn + dv * cs - 0.5
    pixels = np.rint(sample(img, sx, sy)).clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float32)


def accuracy(engine, crops, truth):
    x = ((np.asarray(crops, dtype=np.float32) / 255.0 - 0.5) / 0.25)  # N, k, 48, 48
    n, k = x.shape[:2]
    x = x.reshape(n * k, 1, SIDE, SIDE)
    probs = np.concatenate([engine.classify(x[i:i + 32]) for i in range(0, len(x), 32)])
    return 100.0 * (probs.reshape(n, k, -1).mean(1).argmax(1) == truth).mean()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val", default=os.path.join(ROOT, "..", "shared", "data", "fer2013", "val"))
    p.add_argument("--work", default=os.path.join(ROOT, "build", "framing"))
    p.add_argument("--model", default=os.path.join(ROOT, "models", "emote-fer2013.safetensors"))
    a = p.parse_args()
    padded, detections = os.path.join(a.work, "padded"), os.path.join(a.work, "faces.jsonl")
    pad_val(a.val, padded)
    if not os.path.exists(detections):
        with open(detections + ".tmp", "w") as f:
            subprocess.run([os.path.join(ROOT, "emote"), "--faces", "--max-faces", "1", "-q", "-f", "jsonl",
                            "--no-progress", padded], stdout=f, check=False)
        os.replace(detections + ".tmp", detections)
    rows = [r for r in map(json.loads, open(detections)) if "box" in r]
    truth = np.array([LABELS.index(r["path"].split("/")[-2]) for r in rows])
    canvases = [np.asarray(Image.open(r["path"]).convert("L"), dtype=np.float32) for r in rows]
    ratio = FER / np.array([max(r["box"][2], r["box"][3]) for r in rows])
    print(f"{len(rows)} faces found in the padded val images; the FER2013 crop's side is "
          f"{np.median(ratio):.2f} x the box's longer side at the median (std of the log {np.log(ratio).std():.2f})")
    print("top-1 accuracy on them:")
    with CEngine(a.model, max_batch=32) as engine:
        direct = [np.asarray(Image.open(os.path.join(a.val, *r["path"].split("/")[-2:])).convert("L"),
                             dtype=np.float32)[None] for r in rows]
        print(f"  {accuracy(engine, direct, truth):6.2f} %  the original 48x48 crops, classified directly")
        exact = [[crop(c, (96, 96, FER, FER), [0, 0, 1, 0], 1.0, None)] for c in canvases]
        print(f"  {accuracy(engine, exact, truth):6.2f} %  the exact FER2013 square cut from the canvas")
        for name, framings in FRAMINGS.items():
            crops = [[crop(c, r["box"], r["landmarks"], s, lv) for s, lv in framings] for c, r in zip(canvases, rows)]
            print(f"  {accuracy(engine, crops, truth):6.2f} %  {name}", flush=True)


if __name__ == "__main__":
    main()
