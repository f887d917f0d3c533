#!/usr/bin/python3
"""Tables for a model card, printed as Markdown.

    /usr/bin/python3 tools/model_card.py models/emote-fer2013.safetensors [--eval EVAL.json]
                                         [--log runs/default/log.jsonl [--log STAGE2/log.jsonl ...]
                                          [--curve CURVE.svg]]

Prints the architecture (per-layer output shape, parameters and FLOPs, counted by
forward hooks on the PyTorch model rebuilt from the file's config); given the JSON
of `emote eval -f json`, the per-class table and the confusion matrix; given the
training logs of tools/train.py (one per stage, in order), the learning curve as a
table, and with --curve as an SVG chart (train and val accuracy per epoch).
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
    print("\nFLOPs = 2 × multiply-adds of convs and linear layers; BatchNorm is applied after each conv's GEMM (scale and shift), counted as 0.")


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


def read_logs(paths):
    """Every stage's records in order, each tagged with its stage number (from 1)."""
    records = []
    for stage, path in enumerate(paths, 1):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    r["stage"] = stage
                    records.append(r)
    return records


def log_table(records, every=5):
    best = max(records, key=lambda r: r["val_acc"])
    print("| stage | epoch | learning rate | train loss | train acc | val acc | val acc, TTA | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, r in enumerate(records):
        last_of_stage = i + 1 == len(records) or records[i + 1]["stage"] != r["stage"]
        if (r["epoch"] + 1) % every and r is not best and not last_of_stage:
            continue
        mark = " (best)" if r is best else ""
        print(f"| {r['stage']} | {r['epoch'] + 1}{mark} | {r['lr']:.4f} | {r['train_loss']:.3f} | {r['train_acc']:.3f} | "
              f"{r['val_acc']:.4f} | {r['val_acc_tta']:.4f} | {r['seconds']:.0f} |")
    total = sum(r["seconds"] for r in records)
    print(f"\n{len(records)} epochs, {total / 60:.0f} minutes of training and validation in all.")


def log_curve_svg(records, path):
    """Train and val accuracy per epoch as a small SVG line chart."""
    w, h, left, right, top, bottom = 640, 360, 56, 16, 24, 44
    epochs = len(records)
    lo = 0.2
    hi = max(0.8, max(max(r["train_acc"], r["val_acc"]) for r in records))

    def x_of(i):
        return left + (w - left - right) * (i / max(1, epochs - 1))

    def y_of(v):
        return top + (h - top - bottom) * (1 - (v - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for k in range(int(lo * 10), int(hi * 10) + 1):
        y = y_of(k / 10)
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{k / 10:.1f}</text>')
    for i in range(0, epochs, 10 if epochs > 30 else 5):
        out.append(f'<text x="{x_of(i):.1f}" y="{h - bottom + 16}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{(w + left) / 2}" y="{h - 8}" text-anchor="middle">epoch</text>')
    for i in range(1, epochs):
        if records[i]["stage"] != records[i - 1]["stage"]:
            x = x_of(i)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{h - bottom}" stroke="#999" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{x + 4:.1f}" y="{h - bottom - 6}" fill="#666">stage {records[i]["stage"]}</text>')
    for key, colour, name, row in (("train_acc", "#888", "train accuracy (augmented)", 0),
                                   ("val_acc", "#c0392b", "val accuracy", 1)):
        points = " ".join(f"{x_of(i):.1f},{y_of(r[key]):.1f}" for i, r in enumerate(records))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + 10}" y="{top + 14 + 16 * row}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--eval", help="JSON written by `emote eval -f json`")
    p.add_argument("--log", action="append", help="log.jsonl written by tools/train.py (repeat for each stage)")
    p.add_argument("--curve", help="with --log: write the learning curve to this SVG file")
    args = p.parse_args()
    if args.curve and not args.log:
        p.error("--curve needs --log")
    _, meta = read_safetensors(args.model)
    architecture_table(json.loads(meta["config"]))
    if args.eval:
        with open(args.eval) as f:
            eval_tables(json.load(f))
    if args.log:
        records = read_logs(args.log)
        print()
        log_table(records)
        if args.curve:
            log_curve_svg(records, args.curve)


if __name__ == "__main__":
    main()
