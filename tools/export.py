#!/usr/bin/python3
"""Export a training checkpoint (tools/train.py) to an emote model file (safetensors).

    /usr/bin/python3 tools/export.py runs/default/best.pt models/emote-fer2013.safetensors

Writes the weights under their state_dict names and the metadata the C engine needs
(format, labels, input spec, graph) plus config, provenance and val metrics.
--val-metrics FILE merges a JSON object of metrics over the checkpoint's own; --measure DIR
measures them on DIR (a val folder, one subfolder per label) with the C engine instead
(`./emote eval`, with and without --tta; run `make` first) and records those.
An existing output file is never replaced unless --force is given.
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
from emote_model import EmoteNet, graph_of  # noqa: E402
from graph_ref import check_emotenet_graph  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402
from train import INPUT_MEAN, INPUT_STD, LABEL_SETS  # noqa: E402

DATA = {
    "fer2013": "FER2013 train (../shared/data/fer2013/train, 28,709 images); model selection on val (3,589)",
    "ferplus": "FER2013 train images with FER+ crowd votes (../shared/data/ferplus/fer2013new.csv; PLD targets, "
               "27,956 images with an emotion majority); model selection on FER+ PublicTest majority labels "
               "(3,505 of the 3,589 val images)",
}
METRIC_KEYS = ("val_acc", "val_acc_tta", "val_mean_class_acc", "holdout_acc")


def data_description(args, last_epoch):
    """DATA for the checkpoint's labels, with where the epoch was picked (--holdout-percent), or
    that it was not (a last.pt: the end of a fixed schedule)."""
    text = DATA[args.get("labels", "fer2013")]
    held = args.get("holdout_percent", 0)
    if last_epoch:
        text = text.split("; model selection on")[0] + "; the last epoch of its schedule, no selection, val only measured"
    elif held:
        text = text.split("; model selection on")[0] + (
            f"; model selection on {held} % of train kept aside by pixel hash (train.py --holdout-percent), "
            "val only measured")
    if args.get("data") and "facecrops" in args["data"]:
        text += "; train also as the detector crops it (tools/face_crops_dataset.py)"
    return text


def training_command(args):
    """The train.py command line that reproduces `args` (the checkpoint's vars(args))."""
    words = ["/usr/bin/python3", "tools/train.py"]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if key == "ferplus_csv" and args.get("labels", "fer2013") != "ferplus":
            continue  # read only for FER+ labels
        if value is True:
            words.append(flag)
        elif isinstance(value, list):  # a repeatable option (--teacher)
            for v in value:
                words += [flag, str(v)]
        elif value is not None and value is not False:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def training_commands(ck):
    """The command lines of every stage that made this checkpoint, first stage first: a
    checkpoint trained with --init names the one it started from."""
    args = ck.get("args", {})
    earlier = []
    if args.get("init_model"):
        provenance = json.loads(read_safetensors(args["init_model"])[1].get("provenance", "{}"))
        if not provenance.get("training_command"):
            sys.exit(f"export: {args['init_model']} (the model this one started from) records no training command")
        earlier = [provenance["training_command"]]
    if args.get("init"):
        if not os.path.exists(args["init"]):
            sys.exit(f"export: {args['init']} (the checkpoint this one started from) is missing; "
                     "its training command is part of the provenance")
        earlier = training_commands(torch.load(args["init"], map_location="cpu"))
    return earlier + [training_command(args)]


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=TOOLS, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def labels_of(ck):
    return LABEL_SETS[ck.get("args", {}).get("labels", "fer2013")]


def val_metrics(record, extra, labels):
    metrics = {k: record[k] for k in METRIC_KEYS if k in record}
    if "val_recall" in record:
        metrics["val_recall"] = dict(zip(labels, record["val_recall"]))
    metrics.update(extra)
    return metrics


def measured_metrics(model_path, val_dir):
    """The metrics of the model file at model_path on val_dir, as `./emote eval` measures them."""
    emote = os.path.join(os.path.dirname(TOOLS), "emote")
    if not os.access(emote, os.X_OK):
        sys.exit(f"export: --measure needs {emote}: run `make` first")
    runs = {}
    for tta in (False, True):
        cmd = [emote, "eval", "-m", model_path, "-f", "json", *(["--tta"] if tta else []), val_dir]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"export: {shlex.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip()}")
        runs[tta] = json.loads(r.stdout)
    plain = runs[False]
    return {"val_acc": plain["accuracy"], "val_acc_tta": runs[True]["accuracy"],
            "val_mean_class_acc": plain["mean_recall"], "val_macro_f1": plain["macro_f1"],
            "val_recall": {label: c["recall"] for label, c in plain["per_class"].items()},
            "measured_by": f"./emote eval -f json {val_dir} (and --tta), C engine, on {plain['images']} images"}


def metadata_for(model, ck, extra_metrics, measured=None):
    """measured: metrics from measured_metrics, recorded instead of the checkpoint's."""
    c = model.config
    return {
        "format": "emote-model/1",
        "labels": json.dumps(labels_of(ck)),
        "input": json.dumps({"channels": c["in_channels"], "height": c["input_size"], "width": c["input_size"],
                             "mean": [INPUT_MEAN] * c["in_channels"], "std": [INPUT_STD] * c["in_channels"],
                             "preprocess": "emote/1"}),
        "graph": json.dumps(graph_of(model)),
        "config": json.dumps(c),
        "provenance": json.dumps({
            "data": data_description(ck.get("args", {}), "metrics" not in ck),
            "training_command": " && ".join(training_commands(ck)),
            "commit": git_commit(),
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "epoch": ck.get("epoch")}),
        "metrics": json.dumps(measured or val_metrics(ck.get("metrics", {}), extra_metrics, labels_of(ck))),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint .pt written by tools/train.py")
    p.add_argument("out", help="model file to write (.safetensors)")
    p.add_argument("--val-metrics", metavar="JSON_FILE", help="JSON object of metrics merged over the checkpoint's")
    p.add_argument("--measure", metavar="VAL_DIR",
                   help="record val metrics measured on VAL_DIR by the C engine (./emote eval) instead")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    if os.path.exists(args.out) and not args.force:
        sys.exit(f"export: {args.out} exists; not replacing it (use --force)")
    extra = {}
    if args.val_metrics:
        with open(args.val_metrics) as f:
            extra = json.load(f)
        if not isinstance(extra, dict):
            sys.exit(f"export: {args.val_metrics}: expected a JSON object")

    ck = torch.load(args.checkpoint, map_location="cpu")
    model = EmoteNet(ck["config"])
    model.load_state_dict(ck["model"])
    model.eval()
    if model.config["num_classes"] != len(labels_of(ck)):
        sys.exit(f"export: model has {model.config['num_classes']} classes, labels list has {len(labels_of(ck))}")
    c = model.config
    check_emotenet_graph(model, torch.randn(4, c["in_channels"], c["input_size"], c["input_size"],
                                            generator=torch.Generator().manual_seed(0)))

    tensors = {name: t.detach().contiguous().numpy() for name, t in model.state_dict().items()
               if not name.endswith("num_batches_tracked")}
    measured = None
    if args.measure:  # measured on a file of its own, so that OUT is only written once they are known
        probe = args.out + ".measuring.safetensors"
        write_safetensors(probe, tensors, metadata_for(model, ck, extra))
        try:
            measured = measured_metrics(probe, args.measure)
        finally:
            os.remove(probe)
    write_safetensors(args.out, tensors, metadata_for(model, ck, extra, measured))
    n_params = sum(t.size for t in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {n_params} floats, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
