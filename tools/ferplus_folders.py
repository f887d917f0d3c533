#!/usr/bin/python3
"""Writes FER+ label folders for `emote eval`: OUT/<label>/NNNNN.png, symlinks to the FER2013
PNGs, one per image kept by the FER+ processing (tools/ferplus.py), filed under its majority
label. Nothing is copied.

    /usr/bin/python3 tools/ferplus_folders.py ../shared/data/fer2013/val build/ferplus/val
    ./emote eval -m ferplus build/ferplus/val

Any image size works: build/framing/padded (val padded into 384x384 canvases,
tools/framing_study.py) gives FER+ test as the detector crops it, for `eval --faces`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ferplus import DEFAULT_CSV, FERPLUS_LABELS, ferplus_files  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", help="a FER2013 split folder (<label>/NNNNN.png)")
    p.add_argument("out", help="folder to create (must not exist)")
    p.add_argument("--csv", default=DEFAULT_CSV, help="fer2013new.csv")
    args = p.parse_args(argv)
    targets, paths = ferplus_files(args.split, args.csv)
    majority = targets.argmax(1)
    os.makedirs(args.out)
    for label in FERPLUS_LABELS:
        os.makedirs(os.path.join(args.out, label))
    for label_id, path in zip(majority, paths):
        os.symlink(os.path.abspath(path), os.path.join(args.out, FERPLUS_LABELS[label_id], os.path.basename(path)))
    counts = {label: int((majority == i).sum()) for i, label in enumerate(FERPLUS_LABELS)}
    print(f"{len(paths)} images: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
