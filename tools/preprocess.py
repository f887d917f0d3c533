"""The C preprocessing (src/image/preprocess.c, pipeline "emote/1") for the Python tools, via ctypes.

Training and inference must see the same pixels, so the tools never resize or convert
images themselves: they call libemote's emote_image_load + emote_preprocess.
The library is build/release/libemote.so (`make build/release/libemote.so`), or the
file named by $EMOTE_LIB.

    /usr/bin/python3 tools/preprocess.py IMAGE... --size 48 --channels 1 \\
        --mean 0.5 --std 0.25 --out batch.npy        # writes float32 [N,C,H,W]
"""
import argparse
import ctypes
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LIB = os.path.join(REPO, "build", "release", "libemote.so")


class _Error(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char * 512)]


class _Image(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("channels", ctypes.c_int),
                ("pixels", ctypes.POINTER(ctypes.c_ubyte)),
                ("source_width", ctypes.c_int), ("source_height", ctypes.c_int)]


class _InputSpec(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int), ("height", ctypes.c_int), ("width", ctypes.c_int),
                ("mean", ctypes.c_float * 3), ("std", ctypes.c_float * 3)]


_lib = None


def library():
    """libemote (ctypes.CDLL), loaded once, with the image functions declared."""
    global _lib
    if _lib is None:
        path = os.environ.get("EMOTE_LIB") or DEFAULT_LIB
        if not os.path.exists(path):
            raise OSError(f"{path}: not found; build it with `make build/release/libemote.so` or set EMOTE_LIB")
        lib = ctypes.CDLL(path)
        lib.emote_image_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Image), ctypes.POINTER(_Error)]
        lib.emote_image_load.restype = ctypes.c_int
        lib.emote_image_free.argtypes = [ctypes.POINTER(_Image)]
        lib.emote_image_free.restype = None
        lib.emote_preprocess.argtypes = [ctypes.POINTER(_InputSpec), ctypes.POINTER(_Image),
                                         ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_Error)]
        lib.emote_preprocess.restype = ctypes.c_int
        _lib = lib
    return _lib


def _per_channel(values, channels, name):
    values = [float(v) for v in (values if np.ndim(values) else [values])]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ValueError(f"{name}: expected 1 or {channels} values, got {len(values)}")
    return values + [0.0] * (3 - channels)


def preprocess_file(path, channels, height, width, mean, std):
    """Loads and preprocesses one image exactly as the emote CLI does.

    mean/std: one value or one per channel. Returns float32 [channels, height, width].
    Raises ValueError with the library's message (naming the file) on any failure."""
    lib = library()
    spec = _InputSpec(channels, height, width, (ctypes.c_float * 3)(*_per_channel(mean, channels, "mean")),
                      (ctypes.c_float * 3)(*_per_channel(std, channels, "std")))
    out = np.empty((channels, height, width), dtype=np.float32)
    image, err = _Image(), _Error()
    if lib.emote_image_load(os.fsencode(path), ctypes.byref(image), ctypes.byref(err)) != 0:
        raise ValueError(err.message.decode(errors="replace"))
    try:
        status = lib.emote_preprocess(ctypes.byref(spec), ctypes.byref(image),
                                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.byref(err))
    finally:
        lib.emote_image_free(ctypes.byref(image))
    if status != 0:
        raise ValueError(f"{path}: {err.message.decode(errors='replace')}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--size", type=int, default=48, help="input height and width (default 48)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 gray or 3 RGB (default 1)")
    p.add_argument("--mean", type=float, nargs="+", default=[0.5], help="per channel, or one for all (default 0.5)")
    p.add_argument("--std", type=float, nargs="+", default=[0.25], help="per channel, or one for all (default 0.25)")
    p.add_argument("--out", required=True, help=".npy file to write: float32 [N, C, H, W]")
    args = p.parse_args(argv)
    try:
        batch = np.stack([preprocess_file(path, args.channels, args.size, args.size, args.mean, args.std)
                          for path in args.images])
    except (ValueError, OSError) as e:
        sys.exit(f"preprocess: {e}")
    np.save(args.out, batch)
    print(f"preprocess: wrote {args.out} {list(batch.shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
