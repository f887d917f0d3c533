#!/usr/bin/python3
"""Compose the face-detection test scenes from the public-domain astronaut crop.

    /usr/bin/python3 tools/make_face_scenes.py models/samples/astronaut-collins.png tests/fixtures/faces

Each scene pastes the 130x130 crop (scaled, rotated, mirrored) onto a smooth self-made
background, as PNG (lossless, so the reference library and emote decode the same pixels).
Deterministic. The reference faces come from libfacedetection's reference_runner
(see tests/fixtures/README.md and `make face-fixtures`).
"""
import os
import sys

import numpy as np
from PIL import Image, ImageOps

# name: (canvas w, h, [(scale, rotation degrees, mirrored, x, y)])
SCENES = {
    "scene-one": (320, 240, [(1.0, 0, False, 95, 50)]),
    "scene-two-scales": (480, 320, [(0.6, 0, False, 40, 60), (1.6, 0, True, 220, 60)]),
    "scene-rotated": (360, 300, [(1.2, 20, False, 30, 40), (0.9, -25, True, 220, 120)]),
    "scene-crowd": (640, 360, [(0.5, 0, False, 20, 20), (0.75, 10, True, 140, 150), (1.0, 0, False, 300, 40),
                               (1.3, -10, True, 460, 140)]),
    "scene-empty": (200, 150, []),
}


def background(w, h, seed):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0.2, 0.8, 3)
    img = np.stack([90 + 80 * np.sin(x / (37 + 20 * a)) * a + 40 * b,
                    110 + 60 * np.cos(y / (29 + 15 * b)) * c,
                    130 + 50 * np.sin((x + y) / (53 + 10 * c))], axis=-1)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def place(canvas, face, scale, angle, mirrored, x, y):
    f = face.resize((round(face.width * scale), round(face.height * scale)), Image.BICUBIC)
    if mirrored:
        f = ImageOps.mirror(f)
    mask = Image.new("L", f.size, 255)
    if angle:
        f = f.rotate(angle, resample=Image.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.BICUBIC, expand=True)
    canvas.paste(f, (x, y), mask)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_face_scenes.py FACE.png OUTDIR")
    face = Image.open(sys.argv[1]).convert("RGB")
    os.makedirs(sys.argv[2], exist_ok=True)
    for i, (name, (w, h, faces)) in enumerate(SCENES.items()):
        canvas = background(w, h, i)
        for f in faces:
            place(canvas, face, *f)
        path = os.path.join(sys.argv[2], name + ".png")
        canvas.save(path, optimize=True)
        print(f"{path}: {w}x{h}, {len(faces)} faces, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
