#!/usr/bin/python3
"""Score an ensemble of model files on a labelled folder tree with the C engine.

    /usr/bin/python3 tools/ensemble_eval.py build/ferplus/val models/emote-ferplus.safetensors runs/x/model.safetensors

Runs `./emote -m MODEL -f jsonl DIR` once per model (with --tta if asked), averages each
image's probabilities over the models, and prints each model's top-1 and the average's,
with mean per-class recall. The true label of an image is the name of its folder. Used to
judge whether models trained apart are diverse enough to be worth distilling into one.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def model_probs(emote, model, folder, tta):
    cmd = [emote, "-m", model, "-f", "jsonl"] + (["--tta"] if tta else []) + [folder]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["path"]: r["probs"] for r in records}


def folder_label(path):
    return os.path.basename(os.path.dirname(path))


def score(probs_by_path, labels):
    truth = np.array([labels.index(folder_label(p)) for p in probs_by_path])
    pred = np.array([int(np.argmax([probs[l] for l in labels])) for probs in probs_by_path.values()])
    recalls = [float((pred[truth == c] == c).mean()) for c in range(len(labels)) if (truth == c).any()]
    return float((pred == truth).mean()), float(np.mean(recalls))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="labelled tree: FOLDER/<label>/<image>")
    p.add_argument("models", nargs="+", help="model files")
    p.add_argument("--tta", action="store_true", help="each model averages the image and its mirror")
    p.add_argument("--emote", default="./emote")
    args = p.parse_args()

    per_model = [model_probs(args.emote, m, args.folder, args.tta) for m in args.models]
    paths = sorted(per_model[0])
    if any(sorted(pm) != paths for pm in per_model):
        sys.exit("ensemble_eval: the models did not label the same images")
    labels = sorted(per_model[0][paths[0]])
    if any(sorted(pm[paths[0]]) != labels for pm in per_model):
        sys.exit("ensemble_eval: the models do not share one label set")
    paths = [p for p in paths if folder_label(p) in labels]  # as emote eval, skip other folders
    for model, pm in zip(args.models, per_model):
        acc, recall = score({path: pm[path] for path in paths}, labels)
        print(json.dumps({"model": model, "images": len(paths), "accuracy": round(acc, 4),
                          "mean_recall": round(recall, 4)}))
    average = {path: {l: sum(pm[path][l] for pm in per_model) / len(per_model) for l in labels}
               for path in paths}
    acc, recall = score(average, labels)
    print(json.dumps({"ensemble": args.models, "tta": args.tta, "images": len(paths),
                      "accuracy": round(acc, 4), "mean_recall": round(recall, 4)}))


if __name__ == "__main__":
    main()
