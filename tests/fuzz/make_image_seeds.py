"""Writes small seed images for build/fuzz/fuzz_image into DIR: every supported format and
its variants (gray/RGB/RGBA/palette, 16-bit, interlaced, progressive, EXIF-rotated, CMYK).
Usage: /usr/bin/python3 tests/fuzz/make_image_seeds.py DIR"""
import io
import os
import sys

import numpy as np
from PIL import Image


def exif_with_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    gray, rgba = rgb.convert("L"), rgb.convert("RGBA")
    seeds = {
        "gray.png": (gray, "PNG", {}), "rgb.png": (rgb, "PNG", {}), "rgba.png": (rgba, "PNG", {}),
        "palette.png": (rgb.convert("P"), "PNG", {}), "interlaced.png": (rgb, "PNG", {"interlace": 1}),
        "gray16.png": (Image.fromarray(rng.integers(0, 65536, (9, 7), dtype=np.uint16)), "PNG", {}),
        "rgb.jpg": (rgb, "JPEG", {"quality": 90}), "gray.jpg": (gray, "JPEG", {}),
        "progressive.jpg": (rgb, "JPEG", {"progressive": True}),
        "exif6.jpg": (rgb, "JPEG", {"exif": exif_with_orientation(6)}),
        "exif3.jpg": (rgb, "JPEG", {"exif": exif_with_orientation(3)}),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
        "big.jpg": (rgb.resize((160, 120)), "JPEG", {"quality": 50}),
        "rgb.gif": (rgb.convert("P"), "GIF", {}), "rgb.bmp": (rgb, "BMP", {}),
        "palette.bmp": (rgb.convert("P"), "BMP", {}), "gray.pgm": (gray, "PPM", {}), "rgb.ppm": (rgb, "PPM", {}),
    }
    for name, (image, fmt, opts) in seeds.items():
        buf = io.BytesIO()
        image.save(buf, fmt, **opts)
        with open(os.path.join(out, name), "wb") as f:
            f.write(buf.getvalue())


if __name__ == "__main__":
    main(sys.argv[1])
