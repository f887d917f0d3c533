"""Writes the decode benchmark's inputs into DIR: photo-12mp.jpg, a 4032x3024 JPEG (quality 90,
4:2:0, as phone cameras write) made from the README's sample face upscaled and textured with
noise, and crop-48.png, the sample face as a 48x48 gray PNG.
Usage: /usr/bin/python3 tools/make_bench_images.py DIR"""
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(out):
    os.makedirs(out, exist_ok=True)
    face = Image.open(os.path.join(ROOT, "models", "samples", "astronaut-collins.png")).convert("RGB")
    photo = np.asarray(face.resize((4032, 3024), Image.BICUBIC), dtype=np.float32)
    photo += np.random.default_rng(12).normal(0, 6, photo.shape)
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(
        os.path.join(out, "photo-12mp.jpg"), quality=90, subsampling=2)
    face.convert("L").resize((48, 48), Image.BICUBIC).save(os.path.join(out, "crop-48.png"))


if __name__ == "__main__":
    main(sys.argv[1])
