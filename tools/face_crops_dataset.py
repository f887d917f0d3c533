#!/usr/bin/python3
"""A training set of detector-framed faces: FER2013 train faces as `emote --faces` crops them.

    /usr/bin/python3 tools/face_crops_dataset.py [--data ../shared/data/fer2013] [--work build/facecrops]

Each train crop (48x48) is upscaled 4x (bicubic) and edge-padded into a 384x384 canvas, as
tools/framing_study.py does for val; `./emote --faces --max-faces 1 --save-crops` finds the
face and writes its crop (scale 1.0, eyes levelled past 15 degrees); the C preprocessing
(tools/preprocess.py) shrinks each crop to 48x48 as the CLI would. WORK/mix then holds
train/<label>/ = the original crops (links) plus the detector crops, and val/ = the
original val folder (model selection stays on the faces as FER2013 cut them), for
`tools/train.py --data WORK/mix`.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from framing_study import LABELS, pad_val  # noqa: E402
from preprocess import preprocess_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "fer2013"))
    p.add_argument("--work", default=os.path.join(ROOT, "build", "facecrops"))
    a = p.parse_args()
    data, work = os.path.abspath(a.data), os.path.abspath(a.work)
    padded, raw, mix = (os.path.join(work, d) for d in ("padded", "raw", "mix"))
    pad_val(os.path.join(data, "train"), padded)
    jobs = []
    for label in LABELS:
        os.makedirs(os.path.join(raw, label), exist_ok=True)
        if not os.listdir(os.path.join(raw, label)):
            jobs.append(subprocess.Popen([os.path.join(ROOT, "emote"), "--faces", "--max-faces", "1", "-q",
                                          "--no-progress", "-f", "tsv", "--save-crops", os.path.join(raw, label),
                                          os.path.join(padded, label)], stdout=subprocess.DEVNULL))
        if len(jobs) == 2:  # one detector per core
            jobs.pop(0).wait()
    for job in jobs:
        job.wait()
    crops = 0
    for label in LABELS:
        out = os.path.join(mix, "train", label)
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(data, "train", label))):
            link = os.path.join(out, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(data, "train", label, name), link)
        for name in sorted(os.listdir(os.path.join(raw, label))):
            dst = os.path.join(out, "face-" + name.replace(".face0", ""))
            if not os.path.exists(dst):
                x = preprocess_file(os.path.join(raw, label, name), 1, 48, 48, 0.5, 0.25)[0]
                Image.fromarray(np.rint((x * 0.25 + 0.5) * 255).clip(0, 255).astype(np.uint8)).save(dst)
            crops += 1
    if not os.path.lexists(os.path.join(mix, "val")):
        os.symlink(os.path.join(data, "val"), os.path.join(mix, "val"))
    print(f"{crops} detector crops next to the original train crops in {mix}/train")


if __name__ == "__main__":
    main()
