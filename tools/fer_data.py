"""Load an ImageFolder tree of 48x48 grayscale face crops into uint8 arrays.

Images already at the model's input size are read as they are (8-bit grayscale PNG);
anything else must go through the C preprocessing (tools/preprocess.py) so that
training and inference see the same pixels.
"""
import os

import numpy as np
from PIL import Image

CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "cache")


def load_split(folder, labels, size=48):
    """Returns (images uint8 [N,size,size], labels int64 [N]), files in sorted order per label."""
    folder = os.path.abspath(folder)
    key = folder.strip("/").replace("/", "_")
    cache = os.path.join(CACHE_DIR, key + ".npz")
    if os.path.exists(cache) and os.path.getmtime(cache) > os.path.getmtime(folder):
        z = np.load(cache)
        return z["x"], z["y"]
    xs, ys = [], []
    for label_id, label in enumerate(labels):
        d = os.path.join(folder, label)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            with Image.open(os.path.join(d, name)) as im:
                if im.size != (size, size) or im.mode != "L":
                    raise ValueError(f"{os.path.join(d, name)}: expected {size}x{size} grayscale, got {im.size} {im.mode}")
                xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(label_id)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    os.makedirs(CACHE_DIR, exist_ok=True)
    np.savez(cache + ".tmp.npz", x=x, y=y)
    os.replace(cache + ".tmp.npz", cache)
    return x, y
