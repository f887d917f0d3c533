#!/usr/bin/python3
"""C engine vs PyTorch on a folder of images: top-1 agreement and largest probability gap.

    /usr/bin/python3 tools/compare_c_torch.py models/emote-fer2013.safetensors ../shared/data/fer2013/val

Runs `./emote -f jsonl -m MODEL DIR`, then the same weights in PyTorch (float32, eval mode)
on the same pixels: each image goes through the C preprocessing (tools/preprocess.py), so
both sides see identical inputs. Exits 1 when agreement < --min-agreement or the gap is
above --max-gap.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emote_model import EmoteNet  # noqa: E402
from preprocess import preprocess_file  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument("--emote", default="./emote")
    p.add_argument("--min-agreement", type=float, default=0.999)
    p.add_argument("--max-gap", type=float, default=1e-4)
    args = p.parse_args()
    torch.set_num_threads(2)

    out = subprocess.run([args.emote, "-f", "jsonl", "-m", args.model, args.folder],
                         check=False, capture_output=True, text=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    ok = [r for r in records if "probs" in r]
    if not ok:
        sys.exit(f"emote produced no predictions: {out.stderr[-500:]}")

    tensors, meta = read_safetensors(args.model)
    model = EmoteNet(json.loads(meta["config"]))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    model.eval()
    labels = json.loads(meta["labels"])
    spec = json.loads(meta["input"])

    agree, gap, worst = 0, 0.0, None
    for start in range(0, len(ok), 256):
        chunk = ok[start:start + 256]
        x = np.stack([preprocess_file(r["path"], spec["channels"], spec["height"], spec["width"],
                                      spec["mean"], spec["std"]) for r in chunk])
        with torch.no_grad():
            probs = model(torch.from_numpy(x)).softmax(1).numpy()
        for r, pt in zip(chunk, probs):
            c = np.array([r["probs"][label] for label in labels])
            agree += int(c.argmax() == pt.argmax())
            d = float(np.abs(c - pt).max())
            if d > gap:
                gap, worst = d, r["path"]
    n = len(ok)
    print(json.dumps({"images": n, "failed": len(records) - n, "top1_agreement": agree / n,
                      "top1_disagreements": n - agree, "max_prob_gap": gap, "worst_image": worst}))
    sys.exit(0 if agree / n >= args.min_agreement and gap <= args.max_gap else 1)


if __name__ == "__main__":
    main()
