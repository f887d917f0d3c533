#!/usr/bin/python3
"""Convert libfacedetection's YuNet weights into an emote model file.

    /usr/bin/python3 tools/convert_yunet.py ../shared/third_party/libfacedetection models/yunet.safetensors \
        [--check REFERENCE.jsonl]

Reads facedetectcnn-data.cpp (tools/yunet.py parses it), writes the weights under their
module names with the graph, input spec and outputs in __metadata__, and checks that the
graph interpreter (tools/graph_ref.py) reproduces the hand-written PyTorch YuNet. With
--check, it also runs the PyTorch detector on each image of a reference_runner output
(one JSON line per image) and compares faces with the library's own.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yunet  # noqa: E402
from graph_ref import run_named_graph  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

LICENSE_NOTE = ("YuNet weights from libfacedetection (github.com/ShiqiYu/libfacedetection), "
                "3-clause BSD, Copyright (c) 2018-2023 Shiqi Yu; see models/yunet.LICENSE")
# Nominal input size: the model takes any size that is a multiple of size_multiple.
NOMINAL = 640


def commit_of(src):
    readme = os.path.join(src, "README.md")
    try:
        for line in open(readme):
            if "commit" in line:
                return line.split("commit", 1)[1].split()[0]
    except OSError:
        pass
    return "unknown"


def metadata(ops, src):
    return {
        "format": "emote-model/1",
        "kind": "detector",
        "detector": "yunet",
        "outputs": json.dumps(yunet.output_names()),
        "input": json.dumps({"channels": 3, "height": NOMINAL, "width": NOMINAL, "size_multiple": yunet.SIZE_MULTIPLE,
                             "mean": [0.0, 0.0, 0.0], "std": [1 / 255] * 3, "preprocess": "emote/1"}),
        "graph": json.dumps(ops),
        "postprocess": json.dumps({"strides": list(yunet.STRIDES), "score_threshold": yunet.SCORE_THRESHOLD,
                                   "nms_iou": yunet.NMS_IOU, "top_k": yunet.TOP_K, "keep_top_k": yunet.KEEP_TOP_K}),
        "license": LICENSE_NOTE,
        "provenance": json.dumps({"source": "libfacedetection facedetectcnn-data.cpp", "commit": commit_of(src),
                                  "command": "/usr/bin/python3 tools/convert_yunet.py " + " ".join(sys.argv[1:]),
                                  "paper": "YuNet: A Tiny Millisecond-level Face Detector (Wu, Peng, Yu, 2023)",
                                  "wider_face_val_ap": {"easy": 0.887, "medium": 0.871, "hard": 0.768}}),
    }


@torch.no_grad()
def self_test(model, ops, sd, gen):
    """graph_ref on the converted graph == the hand-written network (float64, to rounding)."""
    x = torch.rand(1, 3, 64, 96, generator=gen, dtype=torch.float64) * 255
    want = model(x)
    got, _ = run_named_graph(ops, sd, x, yunet.output_names())
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    if worst > 1e-9:
        raise AssertionError(f"graph_ref disagrees with the PyTorch YuNet by {worst:.3g}")
    return worst


def load_rgb(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def compare_with_reference(model, jsonl):
    """Returns the worst (box px, score) differences; raises on a missed or extra face."""
    worst_box, worst_score = 0.0, 0.0
    for line in open(jsonl):
        ref = json.loads(line)
        faces = yunet.detect(model, load_rgb(ref["path"]))
        if len(faces) != len(ref["faces"]):
            raise AssertionError(f"{ref['path']}: {len(faces)} faces, the reference has {len(ref['faces'])}")
        for got, want in zip(faces, ref["faces"]):
            x0, y0, x1, y1 = got[1]
            box = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
            worst_box = max(worst_box, max(abs(a - b) for a, b in zip(box, want["box"])))
            worst_score = max(worst_score, abs(got[0] - want["score"] / 100))
        print(f"  {ref['path']}: {len(faces)} faces match")
    return worst_box, worst_score


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="the libfacedetection folder (with facedetectcnn-data.cpp)")
    ap.add_argument("out")
    ap.add_argument("--check", help="reference_runner output (JSON lines) to compare the PyTorch detector with")
    args = ap.parse_args()
    torch.set_num_threads(1)
    layers = yunet.load_weights(os.path.join(args.src, "facedetectcnn-data.cpp"))
    ops, sd = yunet.graph_ops(layers), yunet.state_dict(layers)
    model = yunet.YuNet(layers).eval()
    err = self_test(model, ops, sd, torch.Generator().manual_seed(9))
    print(f"self-test: graph_ref matches the PyTorch YuNet (max |diff| {err:.1e}); "
          f"{sum(v.size for v in sd.values())} parameters, {len(ops)} ops")
    if args.check:
        box, score = compare_with_reference(model, args.check)
        print(f"reference check: boxes within {box} px, scores within {score:.4f}")
        if box > 2 or score > 0.02:
            sys.exit("convert_yunet: the PyTorch YuNet disagrees with the reference library")
    write_safetensors(args.out, sd, metadata(ops, args.src))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
