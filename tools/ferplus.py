"""FER+ crowd labels (../shared/data/ferplus/fer2013new.csv) joined to the FER2013 PNG folders.

Each CSV line holds 10 taggers' votes for one fer2013.csv row: neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, not-a-face. The FER2013 folders name each
image by its row (NNNNN.png), so line NNNNN + 2 of the CSV describes image NNNNN.

Targets follow the FER+ authors' reference processing (Barsoum et al. 2016, "PLD"):
votes of 1 are dropped as outliers; the top emotions are taken, most votes first, until they
hold 75 % of the votes or 3 emotions (ties taken together); an image whose kept votes are
not more than half of all votes, whose top is unknown or not-a-face, or that needs more than
3 emotions is left out. The target is the kept votes, normalised; its majority label is the
first highest entry (CSV order). Ties between the last emotion kept and unknown or
not-a-face end the selection there, as in the reference code.
"""
import csv
import os

import numpy as np
from PIL import Image

FERPLUS_LABELS = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]
EMOTIONS = len(FERPLUS_LABELS)  # the CSV's 8 emotion columns, then unknown and not-a-face
DEFAULT_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ferplus",
                           "fer2013new.csv")


def read_votes(csv_path):
    """{fer2013 row: votes[10]} for every CSV line with an image."""
    votes = {}
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row_index, line in enumerate(reader):
            if len(line) >= 12 and line[1].strip():
                votes[row_index] = np.array([float(v) for v in line[2:12]])
    return votes


def pld_target(votes):
    """The FER+ PLD target (8 floats summing to 1), or None when the image is left out."""
    raw = np.where(votes <= 1.0, 0.0, votes)
    total = raw.sum()
    kept = np.zeros_like(raw)
    kept_sum, count, valid = 0.0, 0, True
    while total > 0 and kept_sum < 0.75 * total and count < 3 and valid:
        top = raw.max()
        for i in range(len(raw)):
            if raw[i] == top:
                kept[i], raw[i] = top, 0.0
                kept_sum += top
                count += 1
                if i >= EMOTIONS:  # unknown or not-a-face as many votes as the emotions kept
                    valid = False
                    if kept.sum() > top:  # emotions came first: keep them, drop this one
                        kept[i] = 0.0
                        count -= 1
                    break
    if kept.sum() <= 0.5 * total or count > 3 or kept[EMOTIONS:].any():
        return None
    return (kept[:EMOTIONS] / kept[:EMOTIONS].sum()).astype(np.float32)


def row_of(name):
    """The fer2013.csv row of a file name: NNNNN.png, or face-NNNNN.png (a detector crop of it)."""
    return int(os.path.splitext(name)[0].rsplit("-", 1)[-1])


def ferplus_files(split_folder, csv_path=DEFAULT_CSV):
    """(targets float32 [N,8], paths) of the files of one split folder (<label>/NNNNN.png or
    face-NNNNN.png, any label) that FER+ keeps, ordered by row, then path."""
    votes = read_votes(csv_path)
    files = []
    for label in sorted(os.listdir(split_folder)):
        d = os.path.join(split_folder, label)
        files += [(row_of(name), os.path.join(d, name)) for name in os.listdir(d)]
    ts, paths = [], []
    for row, path in sorted(files):
        target = pld_target(votes[row]) if row in votes else None
        if target is not None:
            ts.append(target)
            paths.append(path)
    return np.stack(ts), paths


def load_ferplus(split_folder, csv_path=DEFAULT_CSV):
    """(images uint8 [N,48,48], targets float32 [N,8], majority int64 [N], paths) for one
    FER2013 split folder (see ferplus_files)."""
    targets, paths = ferplus_files(split_folder, csv_path)
    xs = []
    for path in paths:
        with Image.open(path) as im:
            if im.size != (48, 48) or im.mode != "L":
                raise ValueError(f"{path}: expected 48x48 grayscale, got {im.size} {im.mode}")
            xs.append(np.asarray(im, dtype=np.uint8))
    return np.stack(xs), targets, targets.argmax(1).astype(np.int64), paths
