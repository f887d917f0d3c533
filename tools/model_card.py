#!/usr/bin/python3
"""Tables for a model card, printed as Markdown.

    /usr/bin/python3 tools/model_card.py models/emote-fer2013.safetensors [--eval EVAL.json]

Prints the architecture (per-layer output shape, parameters and FLOPs, counted by
forward hooks on the PyTorch model rebuilt from the file's config) and, given the JSON
of `emote eval -f json`, the per-class table and the confusion matrix.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emote_model import EmoteNet, count_flops  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def architecture_table(config):
    model = EmoteNet(config)
    rows = count_flops(model)
    print("| layer | kind | output (C×H×W) | parameters | MFLOPs |")
    print("| --- | --- | --- | ---: | ---: |")
    for name, kind, macs, params, shape in rows:
        shape_text = "×".join(str(s) for s in shape)
        print(f"| `{name}` | {kind} | {shape_text} | {params:,} | {2 * macs / 1e6:.2f} |")
    total_params = sum(p.numel() for p in model.parameters())
    total_macs = sum(r[2] for r in rows)
    print(f"| **total** | | | **{total_params:,}** | **{2 * total_macs / 1e6:.1f}** |")
    print("\nFLOPs = 2 × multiply-adds of convs and linear layers; BatchNorm is folded into the convs at load.")


def eval_tables(result):
    labels = result["labels"]
    print(f"\n{result['images']} images: accuracy **{result['accuracy']:.4f}**, "
          f"mean per-class recall {result['mean_recall']:.4f}, macro-F1 {result['macro_f1']:.4f}\n")
    print("| class | precision | recall | F1 | support |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label in labels:
        c = result["per_class"][label]
        print(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    print("\nConfusion matrix (rows: true label, columns: predicted):\n")
    print("| | " + " | ".join(labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for label, row in zip(labels, result["confusion"]):
        print(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--eval", help="JSON written by `emote eval -f json`")
    args = p.parse_args()
    _, meta = read_safetensors(args.model)
    architecture_table(json.loads(meta["config"]))
    if args.eval:
        with open(args.eval) as f:
            eval_tables(json.load(f))


if __name__ == "__main__":
    main()
