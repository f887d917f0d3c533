#!/usr/bin/python3
"""Train an EmoteNet on FER2013 or FER+ labels (CPU by default, CUDA when available).

    /usr/bin/python3 tools/train.py --data ../shared/data/fer2013 --out runs/default
    /usr/bin/python3 tools/train.py --labels ferplus --init-model models/emote-fer2013.safetensors \
        --epochs 16 --lr 0.02 --out runs/ferplus

With --labels ferplus the same images are trained on the FER+ crowd votes (tools/ferplus.py):
cross-entropy against the normalised votes (PLD), images without an emotion majority left
out, accuracy and selection on the majority label of the val split (FER+ PublicTest).
--init-model starts from a model file's weights, every tensor but a head of another size.

The shipped model has two stages (`make model`): 50 epochs from scratch, then
`--init runs/default/best.pt --epochs 16 --lr 0.02 --warmup-epochs 0.5 --out runs/stage2`,
a warm restart with a fresh optimizer and a shorter cosine cycle. Model selection uses a held-out tenth of train (--holdout-percent, by a hash of each image's
pixels), so that the val figure is a test figure. Every epoch writes `last.pt` (resumable
with --resume), `best.pt` (best val accuracy so far) and one JSON line to `log.jsonl`.
"""
import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emote_model import DEFAULT_CONFIG, FER2013_LABELS, EmoteNet  # noqa: E402
from fer_data import load_split  # noqa: E402
from ferplus import DEFAULT_CSV, FERPLUS_LABELS, load_ferplus  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

LABEL_SETS = {"fer2013": FER2013_LABELS, "ferplus": FERPLUS_LABELS}

INPUT_MEAN, INPUT_STD = 0.5, 0.25   # applied to pixel/255; stored in the model file
MEMORY_FORMAT = torch.channels_last  # measured ~20 % faster than NCHW for training on CPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/fer2013", help="folder with train/ and val/ ImageFolder trees")
    p.add_argument("--out", default="runs/default", help="checkpoint and log folder")
    p.add_argument("--labels", choices=sorted(LABEL_SETS), default="fer2013",
                   help="fer2013: one label per image (folder names); ferplus: FER+ crowd votes (PLD targets)")
    p.add_argument("--ferplus-csv", default=DEFAULT_CSV, help="FER+ votes (fer2013new.csv), for --labels ferplus")
    p.add_argument("--init-model", default=None,
                   help="start from this model file's weights (every tensor whose shape fits; a new head otherwise)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (SGD, Nesterov)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=2.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--class-weight-power", type=float, default=0.25,
                   help="loss weight per class = (max_count/count)^power (0 disables)")
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--config", default=None, help="JSON model config overriding the defaults")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", default=None,
                   help="start from this checkpoint's weights (and config) with a fresh optimizer and schedule: "
                        "a second, low learning-rate stage")
    p.add_argument("--max-train-images", type=int, default=0, help="use only N training images, a random subset fixed by --seed (smoke tests, quick comparisons)")
    p.add_argument("--time-iterations", type=int, default=0, help="time N training steps, print seconds/epoch, exit")
    p.add_argument("--bf16", dest="bf16", action="store_true", default=None,
                   help="bfloat16 autocast for forward and loss, fp32 master weights (default where the CPU has "
                        "avx512_bf16 or amx_bf16, or on CUDA)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in float32")
    p.add_argument("--holdout-percent", type=int, default=10,
                   help="keep this share of train aside (by a hash of each image's pixels, stable) to pick the "
                        "best epoch; val is then only reported, a test figure (0: select on val as before)")
    p.add_argument("--teacher", action="append", default=[],
                   help="checkpoint (.pt) or model file of a teacher; repeat for an ensemble, whose averaged "
                        "softened probabilities the student learns from (knowledge distillation)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the loss from the teachers, the rest from the labels (with --teacher)")
    p.add_argument("--distill-temperature", type=float, default=2.0,
                   help="softmax temperature of teachers and student in the distillation loss")
    p.add_argument("--cutmix", type=float, default=0.0,
                   help="probability of CutMix per batch (Beta(1,1) box; loss mixed by area)")
    return p.parse_args(argv)


def cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def holdout_mask(images, percent):
    """True for images kept aside: SHA-1 of the pixels, first 4 bytes mod 100 < percent (stable across runs)."""
    if percent <= 0:
        return np.zeros(len(images), dtype=bool)
    return np.array([int.from_bytes(hashlib.sha1(im.tobytes()).digest()[:4], "big") % 100 < percent for im in images], dtype=bool)


def cutmix(x, gen):
    """Pastes a box of a shuffled copy of the batch into x; returns (x, permutation, kept area fraction)."""
    n, _, h, w = x.shape
    lam = float(torch.rand(1, generator=gen))
    perm = torch.randperm(n, generator=gen)
    bh, bw = int(round(h * math.sqrt(1 - lam))), int(round(w * math.sqrt(1 - lam)))
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return p.parse_args(argv)


def augment(x, gen):
    """Batch augmentation on normalised images: flip, affine (rotate/scale/shift), random erasing."""
    n = x.shape[0]
    dev = x.device
    flip = torch.rand(n, generator=gen) < 0.5
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(15)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.15
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.12
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sx = torch.where(flip, -torch.ones(n), torch.ones(n))
    theta = torch.stack([torch.stack([cos * sx, -sin, shift[:, 0]], 1),
                         torch.stack([sin * sx, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing: one rectangle of 2-20 % of the area in half of the images, filled with noise
    h, w = x.shape[2], x.shape[3]
    erase = (torch.rand(n, generator=gen) < 0.5).tolist()
    area = (0.02 + torch.rand(n, generator=gen) * 0.18).tolist()
    aspect = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log(3)).tolist()
    pos = torch.rand(n, 2, generator=gen).tolist()
    for i in range(n):
        if not erase[i]:
            continue
        eh = max(1, min(h, int(round(math.sqrt(area[i] * h * w * aspect[i])))))
        ew = max(1, min(w, int(round(math.sqrt(area[i] * h * w / aspect[i])))))
        y0, x0 = int(pos[i][0] * (h - eh + 1)), int(pos[i][1] * (w - ew + 1))
        x[i, :, y0:y0 + eh, x0:x0 + ew] = torch.randn(x.shape[1], eh, ew, generator=gen).to(dev)
    return x


def to_input(pixels_u8):
    return (torch.from_numpy(pixels_u8).float().unsqueeze(1) / 255.0 - INPUT_MEAN) / INPUT_STD


@torch.no_grad()
def evaluate(model, images, labels, device, num_classes, batch=512, prefix="val"):
    model.eval()
    logits, logits_tta = [], []
    for i in range(0, len(images), batch):
        x = to_input(images[i:i + batch]).to(device)
        out = model(x)
        logits.append(out.cpu())
        logits_tta.append(((out.softmax(1) + model(x.flip(3)).softmax(1)) / 2).cpu())
    pred = torch.cat(logits).argmax(1).numpy()
    pred_tta = torch.cat(logits_tta).argmax(1).numpy()
    k = num_classes
    recall = [float((pred[labels == c] == c).mean()) for c in range(k)]
    return {f"{prefix}_acc": float((pred == labels).mean()), f"{prefix}_acc_tta": float((pred_tta == labels).mean()),
            f"{prefix}_mean_class_acc": float(np.mean(recall)), f"{prefix}_recall": recall}


def load_teacher(path, device, num_classes):
    """An EmoteNet in eval mode from a training checkpoint or an exported model file."""
    if path.endswith(".pt"):
        ck = torch.load(path, map_location="cpu")
        config, state = ck["config"], ck["model"]
    else:
        tensors, meta = read_safetensors(path)
        config = json.loads(meta["config"])
        state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    if config["num_classes"] != num_classes:
        sys.exit(f"train.py: teacher {path} has {config['num_classes']} classes, the labels {num_classes}")
    model = EmoteNet(config).to(device).to(memory_format=MEMORY_FORMAT)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def teacher_probs(teachers, x, temperature, autocast):
    """The teachers' averaged probabilities at the given temperature, in float32."""
    with autocast():
        return torch.stack([(t(x).float() / temperature).softmax(1) for t in teachers]).mean(0)


def lr_at(step, total, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * t))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    labels = LABEL_SETS[args.labels]
    if args.labels == "ferplus":
        train_x, train_t, train_y, _ = load_ferplus(os.path.join(args.data, "train"), args.ferplus_csv)
        val_x, _, val_y, _ = load_ferplus(os.path.join(args.data, "val"), args.ferplus_csv)
    else:
        train_x, train_y = load_split(os.path.join(args.data, "train"), labels)
        val_x, val_y = load_split(os.path.join(args.data, "val"), labels)
        train_t = None
    if args.max_train_images:  # a seeded random subset: the files come sorted by label
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(train_x))[:args.max_train_images])
        train_x, train_y = train_x[keep], train_y[keep]
        train_t = train_t[keep] if train_t is not None else None
    held = holdout_mask(train_x, args.holdout_percent)
    hold_x, hold_y = train_x[held], train_y[held]
    train_x, train_y = train_x[~held], train_y[~held]
    train_t = train_t[~held] if train_t is not None else None
    select_key = "holdout_acc" if held.any() else "val_acc"
    if args.bf16 is None:
        args.bf16 = device.type == "cuda" or cpu_has_bf16()
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    print(f"train {len(train_x)} images, held out {len(hold_x)} (selection on {select_key}), val {len(val_x)} "
          f"images, device {device}, {'bf16 autocast' if args.bf16 else 'fp32'}", flush=True)

    config = dict(DEFAULT_CONFIG)
    if args.init_model:
        config = json.loads(read_safetensors(args.init_model)[1]["config"])
    if args.config:
        config.update(json.loads(args.config))
    config["num_classes"] = len(labels)
    init = torch.load(args.init, map_location="cpu") if args.init else None
    if init:
        config = init["config"]
    model = EmoteNet(config).to(device).to(memory_format=MEMORY_FORMAT)
    if init:
        model.load_state_dict(init["model"])
        print(f"initialised from {args.init} (its epoch {init['epoch']})", flush=True)
        del init
    if args.init_model:
        tensors = read_safetensors(args.init_model)[0]
        state = model.state_dict()
        fits = {k: torch.from_numpy(v.copy()) for k, v in tensors.items() if k in state and state[k].shape == v.shape}
        model.load_state_dict(fits, strict=False)
        print(f"initialised {len(fits)} of {len(state)} tensors from {args.init_model}; new: "
              f"{sorted(set(state) - set(fits))}", flush=True)
    teachers = [load_teacher(t, device, len(labels)) for t in args.teacher]
    if teachers:
        print(f"distilling from {len(teachers)} teacher(s), weight {args.distill_weight}, "
              f"temperature {args.distill_temperature}", flush=True)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, momentum=0.9, nesterov=True)
    counts = np.bincount(train_y, minlength=len(labels)).astype(np.float64)
    class_weight = torch.tensor((counts.max() / np.maximum(counts, 1)) ** args.class_weight_power, dtype=torch.float32)
    class_weight = (class_weight / (class_weight * torch.tensor(counts / counts.sum(), dtype=torch.float32)).sum()).to(device)

    steps_per_epoch = len(train_x) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    start_epoch, best = 0, {select_key: -1.0}
    last_path, best_path = os.path.join(args.out, "last.pt"), os.path.join(args.out, "best.pt")
    if args.resume and os.path.exists(last_path):
        ck = torch.load(last_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        start_epoch, best = ck["epoch"] + 1, ck["best"]
        print(f"resumed from {last_path} at epoch {start_epoch}", flush=True)

    for epoch in range(start_epoch, args.epochs):
        model.train()
        perm = torch.randperm(len(train_x), generator=gen).numpy()
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        for it in range(steps_per_epoch):
            step = epoch * steps_per_epoch + it
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, warmup, args.lr)
            idx = perm[it * args.batch_size:(it + 1) * args.batch_size]
            x = augment(to_input(train_x[idx]), gen).to(device).contiguous(memory_format=MEMORY_FORMAT)
            y = torch.from_numpy(train_y[idx]).long().to(device)
            mix = args.cutmix > 0 and float(torch.rand(1, generator=gen)) < args.cutmix
            if mix:
                x, mix_perm, mix_keep = cutmix(x, gen)
            with autocast():
                out = model(x)
            out = out.float()
            if train_t is not None:  # PLD: cross-entropy against the vote distribution
                target = torch.from_numpy(train_t[idx]).to(device)
                if mix:
                    target = mix_keep * target + (1 - mix_keep) * target[mix_perm]
                loss = -(target * F.log_softmax(out, 1)).sum(1).mean()
            else:
                loss = F.cross_entropy(out, y, weight=class_weight, label_smoothing=args.label_smoothing)
                if mix:
                    loss = mix_keep * loss + (1 - mix_keep) * F.cross_entropy(
                        out, y[mix_perm], weight=class_weight, label_smoothing=args.label_smoothing)
            if teachers:
                temp = args.distill_temperature
                soft = teacher_probs(teachers, x, temp, autocast)
                distill = -(soft * F.log_softmax(out / temp, 1)).sum(1).mean() * temp * temp
                loss = (1 - args.distill_weight) * loss + args.distill_weight * distill
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == y).sum())
            if args.time_iterations and it + 1 == args.time_iterations:
                per_step = (time.time() - t0) / args.time_iterations
                print(f"{per_step:.3f} s/step, {per_step * steps_per_epoch:.0f} s/epoch", flush=True)
                return
        metrics = evaluate(model, val_x, val_y, device, len(labels))
        if len(hold_x):
            metrics.update(evaluate(model, hold_x, hold_y, device, len(labels), prefix="holdout"))
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0, **metrics}
        if metrics[select_key] > best[select_key]:
            best = dict(record)
            torch.save({"model": model.state_dict(), "config": config, "epoch": epoch, "metrics": record,
                        "args": vars(args)}, best_path)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "epoch": epoch, "best": best, "config": config, "args": vars(args)}, last_path + ".tmp")
        os.replace(last_path + ".tmp", last_path)
        with open(os.path.join(args.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                          if not k.endswith("_recall")}), flush=True)
    print(f"best {select_key} {best[select_key]:.4f} at epoch {best.get('epoch')} "
          f"(val_acc {best.get('val_acc', float('nan')):.4f})", flush=True)


if __name__ == "__main__":
    main()
