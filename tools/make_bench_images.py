"""Writes the decode and face benchmarks' inputs into DIR: photo-12mp.jpg, a 4032x3024 JPEG (quality 90,
4:2:0, as phone cameras write) made from the README's sample face upscaled and textured with
noise; crop-48.png, the sample face as a 48x48 gray PNG; and faces-640x480.png, the
detector benchmark's photo: the four-face scene of tests/fixtures/faces (640x360) with its
edges extended to 640x480.
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
    scene = np.asarray(Image.open(os.path.join(ROOT, "tests", "fixtures", "faces", "scene-crowd.png")).convert("RGB"))
    pad = (480 - scene.shape[0]) // 2
    scene = np.pad(scene, ((pad, 480 - scene.shape[0] - pad), (0, 640 - scene.shape[1]), (0, 0)), mode="edge")
    Image.fromarray(scene).save(os.path.join(out, "faces-640x480.png"))


if __name__ == "__main__":
    main(sys.argv[1])
