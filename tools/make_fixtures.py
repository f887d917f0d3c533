#!/usr/bin/python3
"""Write the C parity-test fixtures: small random-weight models and PyTorch references.

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures

For each case: CASE.safetensors (a model file) and CASE.expected.safetensors holding
"input" [N,C,H,W] (already-normalised model input), "op.<i>" (output of graph op i,
NCHW; vectors as [N,F,1,1]) and "probs" [N,K]. References are computed in float64
(tools/graph_ref.py) from the stored float32 weights and inputs, then stored as float32.
Deterministic: the same torch version writes the same bytes.
"""
import json
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emote_model import DEFAULT_CONFIG, EmoteNet, graph_of  # noqa: E402
from graph_ref import check_emotenet_graph, run_graph, run_named_graph  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

SEED = 20261122
MAX_TOTAL_BYTES = 2 * 1024 * 1024
BN_NAMES = {"weight": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}  # graph key: tensor


def random_bn(gen, c):
    """BatchNorm parameters far from identity, so folding them into the conv is really tested."""
    return {"weight": 0.5 + torch.rand(c, generator=gen), "bias": 0.2 * torch.randn(c, generator=gen),
            "running_mean": 0.2 * torch.randn(c, generator=gen), "running_var": 0.5 + 1.5 * torch.rand(c, generator=gen)}


def kaiming(gen, *shape):
    fan_in = 1
    for s in shape[1:]:
        fan_in *= s
    return torch.randn(*shape, generator=gen) * (2.0 / fan_in) ** 0.5


class Builder:
    """Builds a hand-written op list and its state dict; tracks the current channel count."""

    def __init__(self, gen, channels):
        self.gen, self.c, self.sd, self.n = gen, channels, {}, 0

    def _prefix(self):
        self.n += 1
        return f"layers.{self.n - 1}"

    def _add(self, name, t):
        self.sd[name] = t.float()
        return name

    def conv(self, cout, k, stride=1, padding=None, bias=False, bn=True, relu=True):
        p, cin = self._prefix(), self.c
        op = {"op": "conv2d", "weight": self._add(p + ".weight", kaiming(self.gen, cout, cin, k, k)),
              "bias": self._add(p + ".bias", 0.2 * torch.randn(cout, generator=self.gen)) if bias else None,
              "stride": stride, "padding": k // 2 if padding is None else padding, "batchnorm": None, "relu": relu}
        if bn:
            params = random_bn(self.gen, cout)
            op["batchnorm"] = {key: self._add(f"{p}.bn.{name}", params[name]) for key, name in BN_NAMES.items()}
            op["batchnorm"]["eps"] = 1e-5
        self.c = cout
        return op

    def depthwise(self, k=3, stride=1, bias=True, bn=False, relu=True, **extra):
        """A depthwise conv (groups = channels), padding k // 2."""
        p, c = self._prefix(), self.c
        op = {"op": "conv2d", "weight": self._add(p + ".weight", kaiming(self.gen, c, 1, k, k)),
              "bias": self._add(p + ".bias", 0.2 * torch.randn(c, generator=self.gen)) if bias else None,
              "stride": stride, "padding": k // 2, "groups": c, "batchnorm": None, "relu": relu, **extra}
        if bn:
            params = random_bn(self.gen, c)
            op["batchnorm"] = {key: self._add(f"{p}.bn.{name}", params[name]) for key, name in BN_NAMES.items()}
            op["batchnorm"]["eps"] = 1e-5
        return op

    def linear_ref(self, fin, fout, bias=True):
        p = self._prefix()
        return {"weight": self._add(p + ".weight", kaiming(self.gen, fout, fin)),
                "bias": self._add(p + ".bias", 0.2 * torch.randn(fout, generator=self.gen)) if bias else None}

    def linear(self, fout, bias=True):
        op = {"op": "linear", **self.linear_ref(self.c, fout, bias)}
        self.c = fout
        return op

    def squeeze_excite(self, hidden, bias):
        return {"op": "squeeze_excite", "fc1": self.linear_ref(self.c, hidden, bias),
                "fc2": self.linear_ref(hidden, self.c, bias)}

    def residual(self, cout, stride):
        cin = self.c
        body = [self.conv(cout, 3, stride), self.conv(cout, 3, relu=False)]
        shortcut = None
        if stride != 1 or cin != cout:
            self.c = cin
            shortcut = self.conv(cout, 1, stride, relu=False)
        return {"op": "residual", "body": body, "shortcut": shortcut, "relu": True}

    def head(self, classes):
        return [{"op": "global_avg_pool"}, self.linear(classes), {"op": "softmax"}]


# name: (input [C,H,W], classes, ops built from a Builder). Pre-pool convs have no ReLU, so
# max pooling sees negative values: in maxpool_k3_s2_p1, 18 of 600 windows give a different
# answer with zero padding than with -inf padding.
LAYER_CASES = {
    "conv_k3_s1_p1": ((3, 12, 12), 5, lambda b: [b.conv(8, 3, 1, 1)]),
    "conv_k5_s2_p2_bias_nobn": ((1, 13, 13), 4, lambda b: [b.conv(6, 5, 2, 2, bias=True, bn=False, relu=False)]),
    "conv_k1_s1_p0": ((3, 9, 9), 6, lambda b: [b.conv(8, 1, 1, 0)]),
    "conv_k1_s2_p0": ((3, 11, 11), 3, lambda b: [b.conv(6, 1, 2, 0)]),
    "conv_k3_s2_p0": ((1, 15, 15), 7, lambda b: [b.conv(8, 3, 2, 0)]),
    "conv_rgb_k3": ((3, 16, 16), 5, lambda b: [b.conv(12, 3, 1, 1)]),
    "maxpool_k2_s2": ((1, 11, 11), 4, lambda b: [b.conv(6, 3, relu=False),
                                                 {"op": "maxpool", "kernel": 2, "stride": 2, "padding": 0}]),
    "maxpool_k3_s2_p1": ((3, 9, 9), 5, lambda b: [b.conv(8, 3, relu=False),
                                                    {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]),
    "squeeze_excite_bias": ((3, 10, 10), 6, lambda b: [b.conv(8, 3, relu=False), b.squeeze_excite(2, True)]),
    "squeeze_excite_nobias": ((1, 9, 9), 3, lambda b: [b.conv(12, 3), b.squeeze_excite(3, False)]),
    "residual_identity": ((1, 12, 12), 7, lambda b: [b.conv(8, 3), b.residual(8, 1)]),
    "residual_projection": ((3, 13, 13), 5, lambda b: [b.conv(6, 3), b.residual(12, 2)]),
    "relu": ((3, 10, 10), 4, lambda b: [b.conv(4, 3, relu=False), {"op": "relu"}]),
    "linear_two_layers": ((3, 9, 9), 6, lambda b: [b.conv(8, 3), {"op": "global_avg_pool"}, b.linear(16),
                                                   {"op": "relu"}, b.linear(6), {"op": "softmax"}]),
}

# Multi-output graphs (run by src/net.c): name: (input [C,H,W], outputs, ops). Values are
# routed with "name", "input" and "with" (see tools/graph_ref.py run_named_graph).
NET_CASES = {
    "depthwise_k3_s1": ((3, 11, 13), ["out"], lambda b: [b.conv(8, 3, relu=False),
                                                        b.depthwise(3, 1, name="out")]),
    "depthwise_k3_s2_bn": ((3, 12, 9), ["out"], lambda b: [b.conv(6, 1, 1, 0, relu=False),
                                                          b.depthwise(3, 2, bias=False, bn=True, relu=False, name="out")]),
    "depthwise_k5_nobias": ((1, 10, 10), ["out"], lambda b: [b.conv(4, 3, relu=False),
                                                            b.depthwise(5, 1, bias=False, relu=False, name="out")]),
    "pointwise_depthwise": ((3, 9, 12), ["out"], lambda b: [b.conv(10, 1, 1, 0, bias=True, bn=False, relu=False),
                                                           b.depthwise(3, 1, name="out")]),
    "upsample_add_two_outputs": ((3, 12, 16), ["fine", "coarse"], lambda b: [
        b.conv(8, 3, relu=False) | {"name": "skip"},
        {"op": "maxpool", "kernel": 2, "stride": 2, "padding": 0},
        b.conv(8, 1, 1, 0, bias=True, bn=False, relu=True) | {"name": "coarse"},
        {"op": "upsample", "scale": 2},
        {"op": "add", "with": "skip"},
        {"op": "relu", "name": "fine"}]),
}
# The real YuNet weights (models/yunet.safetensors) at a size other than the nominal one.
YUNET_CASE = ("yunet_32x64", (3, 32, 64))

EMOTENET_CASES = {
    "emotenet_small": {"in_channels": 1, "input_size": 24, "stem": [8, 12], "stem_pool_after": -1,
                       "se_reduction": 4, "se_bias": True, "blocks": [[16, 2], [24, 2], [32, 2]],
                       "dropout": 0.0, "num_classes": 7},
    "emotenet_deep": {"in_channels": 1, "input_size": 28, "stem": [8, 16, 16], "stem_pool_after": 1,
                      "se_reduction": 8, "se_bias": False, "blocks": [[16, 1], [24, 2], [24, 1], [32, 2]],
                      "dropout": 0.0, "num_classes": 5},
}


def randomised_emotenet(config, gen):
    """EmoteNet with kaiming weights and random BatchNorm statistics, in eval mode."""
    model = EmoteNet(config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(kaiming(gen, *m.weight.shape))
                if m.bias is not None:
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, torch.nn.BatchNorm2d):
                for name, t in random_bn(gen, m.num_features).items():
                    getattr(m, name).copy_(t)
    return model


def base_metadata(ops, input_chw, **fields):
    """Metadata every fixture shares; `fields` (labels, outputs, ...) follow "format"."""
    c, h, w = input_chw
    return {"format": "emote-model/1", **fields,
            "input": json.dumps({"channels": c, "height": h, "width": w, "mean": [0.5] * c, "std": [0.25] * c,
                                 "preprocess": "emote/1"}),
            "graph": json.dumps(ops),
            "provenance": json.dumps({"data": "random weights (test fixture)",
                                      "command": "/usr/bin/python3 tools/make_fixtures.py tests/fixtures",
                                      "seed": SEED})}


def model_metadata(ops, input_chw, classes, config=None):
    meta = base_metadata(ops, input_chw, labels=json.dumps([f"c{i}" for i in range(classes)]))
    if config is not None:
        meta["config"] = json.dumps(config)
    return meta


def net_metadata(ops, input_chw, outputs):
    return base_metadata(ops, input_chw, outputs=json.dumps(outputs))


def write_net_case(outdir, name, ops, state_dict, meta, x, outputs, model_path=None):
    """A multi-output case: the model (unless model_path names an existing one) and the
    float64 reference: input [1,C,H,W], op.<i> and out.<name>."""
    named, op_outputs = run_named_graph(ops, state_dict, x, outputs, torch.float64)
    expected = {"input": x}
    expected.update({f"op.{i}": o for i, o in enumerate(op_outputs)})
    expected.update({f"out.{k}": v for k, v in named.items()})
    size = 0
    if model_path is None:
        model_path = os.path.join(outdir, name + ".safetensors")
        write_safetensors(model_path, {k: v.numpy() for k, v in state_dict.items()}, meta)
        size += os.path.getsize(model_path)
    expected_path = os.path.join(outdir, name + ".expected.safetensors")
    write_safetensors(expected_path, {k: v.float().numpy() for k, v in expected.items()})
    size += os.path.getsize(expected_path)
    peak = max(o.abs().max().item() for o in op_outputs)
    return size, f"{name:26s} {size:7d} B  {len(ops):2d} ops  max|act| {peak:8.2f}  outputs {', '.join(outputs)}"


def write_yunet_case(outdir, gen):
    name, chw = YUNET_CASE
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "yunet.safetensors")
    tensors, meta = read_safetensors(path)
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    x = (torch.rand(1, *chw, generator=gen) * 255).round()  # pixels 0..255, mean 0, std 1/255
    return write_net_case(outdir, name, json.loads(meta["graph"]), sd, None, x, json.loads(meta["outputs"]),
                          model_path=path)


def write_case(outdir, name, ops, state_dict, meta, x):
    """Writes the model and its float64 reference outputs; returns (bytes written, summary line)."""
    probs, outputs = run_graph(ops, state_dict, x, torch.float64)
    probs32, _ = run_graph(ops, state_dict, x, torch.float32)
    expected = {"input": x}
    for i, out in enumerate(outputs):
        expected[f"op.{i}"] = out if out.ndim == 4 else out[:, :, None, None]
    expected["probs"] = probs
    tensors = {k: v.numpy() for k, v in state_dict.items()}
    model_path = os.path.join(outdir, name + ".safetensors")
    expected_path = os.path.join(outdir, name + ".expected.safetensors")
    write_safetensors(model_path, tensors, meta)
    write_safetensors(expected_path, {k: v.float().numpy() for k, v in expected.items()})
    size = os.path.getsize(model_path) + os.path.getsize(expected_path)
    peak = max(o.abs().max().item() for o in outputs[:-1])
    err32 = (probs32.double() - probs).abs().max().item()
    return size, (f"{name:26s} {size:7d} B  {len(ops):2d} ops  max|act| {peak:6.2f}  "
                  f"probs {probs.min().item():.3f}..{probs.max().item():.3f}  torch f32 err {err32:.1e}")


README = """# Parity-test fixtures

Made by `make fixtures`, which runs `/usr/bin/python3 tools/make_fixtures.py tests/fixtures`
(seeded, deterministic; do not edit by hand): one small random-weight model per layer kind
(each ending in global_avg_pool -> linear -> softmax) and two whole EmoteNet models, all with
random BatchNorm statistics. `CASE.safetensors` is a model file in the emote format
(safetensors with `format`, `labels` c0..cK-1, `input`, `graph` metadata; see DESIGN.md and
tools/export.py); `CASE.expected.safetensors` holds `input` [N,C,H,W] (already-normalised
model input), `op.<i>` (the output of graph op i, NCHW, vectors stored as [N,F,1,1]) and
`probs` [N,K], all F32, computed by the PyTorch graph interpreter tools/graph_ref.py in
float64 from the stored float32 weights and inputs.

Multi-output cases (depthwise_*, pointwise_depthwise, upsample_add_two_outputs, run by
src/net.c) have `outputs` instead of labels and route values by name; their expected files
hold `input` [1,C,H,W], `op.<i>` and `out.<name>` (tools/graph_ref.py run_named_graph).
`yunet_32x64.expected.safetensors` is the real detector (models/yunet.safetensors, not copied)
on random pixels at 32x64, a size other than its nominal 640x640.

`faces/`: composed scenes (tools/make_face_scenes.py) and `faces/reference.jsonl`, the
detections of libfacedetection's own reference_runner on them (see
../shared/third_party/libfacedetection/README.md; built only to make this file).
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: make_fixtures.py OUTDIR")
    outdir = argv[0]
    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)

    gen = torch.Generator().manual_seed(SEED)
    model = randomised_emotenet(DEFAULT_CONFIG, gen)
    err64, err32 = check_emotenet_graph(model, torch.randn(2, 1, 48, 48, generator=gen))
    print(f"self-test: graph_ref matches EmoteNet (max |diff| {err64:.1e} float64, {err32:.1e} float32)")

    total = 0
    for name, (chw, classes, build) in LAYER_CASES.items():
        gen = torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))
        b = Builder(gen, chw[0])
        ops = build(b)
        if ops[-1]["op"] != "softmax":
            ops += b.head(classes)
        x = torch.randn(3, *chw, generator=gen)
        size, line = write_case(outdir, name, ops, b.sd, model_metadata(ops, chw, classes), x)
        total += size
        print(line)
    for name, config in EMOTENET_CASES.items():
        gen = torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))
        model = randomised_emotenet(config, gen)
        chw = (config["in_channels"], config["input_size"], config["input_size"])
        x = torch.randn(4, *chw, generator=gen)
        check_emotenet_graph(model, x)
        sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        ops = graph_of(model)
        size, line = write_case(outdir, name, ops, sd, model_metadata(ops, chw, config["num_classes"], config), x)
        total += size
        print(line)
    for name, (chw, outputs, build) in NET_CASES.items():
        gen = torch.Generator().manual_seed(SEED ^ zlib.crc32(name.encode()))
        b = Builder(gen, chw[0])
        ops = build(b)
        x = torch.randn(1, *chw, generator=gen)
        size, line = write_net_case(outdir, name, ops, b.sd, net_metadata(ops, chw, outputs), x, outputs)
        total += size
        print(line)
    size, line = write_yunet_case(outdir, torch.Generator().manual_seed(SEED ^ zlib.crc32(YUNET_CASE[0].encode())))
    total += size
    print(line)
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write(README)
    print(f"total {total} bytes in {outdir}")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"make_fixtures: fixtures total {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")


if __name__ == "__main__":
    main()
