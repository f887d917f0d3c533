#!/usr/bin/python3
"""Writes label folders for `emote adapt` and `emote eval` from a FER2013-style split
(SPLIT/<label>/*.png): OUT/<label>/NAME, symlinks to the split's images, nothing copied.

    /usr/bin/python3 tools/adapt_folders.py --per-label 200 ../shared/data/fer2013/train build/adapt/n200
    /usr/bin/python3 tools/adapt_folders.py --regroup 'positive=happy,surprise' \\
        --regroup 'negative=angry,disgust,fear,sad' --regroup neutral=neutral SPLIT OUT

--per-label N keeps N images of each (new) label, drawn with --seed (all when a label has
fewer); --regroup NEW=OLD,OLD... files the images of the old labels under a new one (labels
not named in any --regroup are left out when --regroup is given); --part K/N keeps the
K-th of N interleaved parts of each label's sorted file list (1-based: 1/2 and 2/2 split it in two).
"""
import argparse
import os
import random


def regrouping(specs, labels):
    if not specs:
        return {label: label for label in labels}
    mapping = {}
    for spec in specs:
        new, _, olds = spec.partition("=")
        for old in olds.split(","):
            if old not in labels:
                raise SystemExit(f"adapt_folders: --regroup {spec}: no label folder '{old}'")
            mapping[old] = new
    return mapping


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split")
    p.add_argument("out", help="folder to create (must not exist)")
    p.add_argument("--per-label", type=int, default=0, help="images per label (0 = all)")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--part", default="1/1", metavar="K/N")
    p.add_argument("--regroup", action="append", default=[], metavar="NEW=OLD,OLD")
    args = p.parse_args(argv)
    labels = sorted(d for d in os.listdir(args.split) if os.path.isdir(os.path.join(args.split, d)))
    mapping = regrouping(args.regroup, labels)
    files = {}
    for old, new in mapping.items():
        folder = os.path.join(args.split, old)
        files.setdefault(new, []).extend(os.path.join(folder, f) for f in sorted(os.listdir(folder)))
    k, n = (int(v) for v in args.part.split("/"))
    rng = random.Random(args.seed)
    os.makedirs(args.out)
    for new, paths in sorted(files.items()):
        paths = paths[k - 1::n]
        if args.per_label and len(paths) > args.per_label:
            paths = sorted(rng.sample(paths, args.per_label))
        os.makedirs(os.path.join(args.out, new))
        for path in paths:
            os.symlink(os.path.abspath(path), os.path.join(args.out, new, os.path.basename(path)))
        print(f"{new} {len(paths)}")


if __name__ == "__main__":
    main()
