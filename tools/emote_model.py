"""The emote model family in PyTorch: the reference the C engine is checked against.

ResEmoteNet style: stem convs -> squeeze-excitation -> residual blocks -> global
average pool -> linear head. Every width and depth comes from a config dict, and
`graph_of(model)` describes the network as the op list stored in the model file's
metadata (see DESIGN.md and src/graph.h for the op vocabulary).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

FER2013_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

DEFAULT_CONFIG = {
    "in_channels": 1,
    "input_size": 48,
    "stem": [32, 64],          # one 3x3 conv+BN+ReLU per entry
    "stem_pool_after": 0,      # 2x2 max pool after this stem conv (index), -1 for none
    "se_reduction": 8,
    "se_bias": True,
    "blocks": [[96, 2], [192, 2], [384, 2]],  # [out_channels, stride] per residual block
    "dropout": 0.3,
    "num_classes": 7,
}


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k, stride, relu):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.relu = relu


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction, bias):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def forward(self, x):
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class ResidualBlock(nn.Module):
    """conv3x3(stride)+BN+ReLU -> conv3x3+BN, plus identity or 1x1 conv+BN shortcut, then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride, relu=True)
        self.conv2 = ConvBN(cout, cout, 3, 1, relu=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = ConvBN(cin, cout, 1, stride, relu=False)

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class EmoteNet(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        self.config = dict(DEFAULT_CONFIG if config is None else config)
        c = self.config
        stem, cin = [], c["in_channels"]
        for i, width in enumerate(c["stem"]):
            stem.append(ConvBN(cin, width, 3, 1, relu=True))
            if i == c["stem_pool_after"]:
                stem.append(nn.MaxPool2d(2, 2))
            cin = width
        self.stem = nn.Sequential(*stem)
        self.se = SqueezeExcite(cin, c["se_reduction"], c["se_bias"])
        blocks = []
        for width, stride in c["blocks"]:
            blocks.append(ResidualBlock(cin, width, stride))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(c["dropout"])
        self.fc = nn.Linear(cin, c["num_classes"])

    def features(self, x):
        return self.blocks(self.se(self.stem(x)))

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        return self.fc(self.dropout(x))


# ---- graph description (the model file's "graph" metadata) -------------------------

def _bn_ref(prefix, bn):
    return {"weight": prefix + ".weight", "bias": prefix + ".bias",
            "mean": prefix + ".running_mean", "var": prefix + ".running_var", "eps": bn.eps}


def _conv_op(prefix, m):
    conv, bn = m[0], m[1]
    return {"op": "conv2d", "weight": prefix + ".0.weight",
            "bias": None if conv.bias is None else prefix + ".0.bias",
            "stride": conv.stride[0], "padding": conv.padding[0],
            "batchnorm": _bn_ref(prefix + ".1", bn), "relu": m.relu}


def graph_of(model):
    """The op list the C engine runs; tensor names are the state_dict names."""
    ops = []
    for i, m in enumerate(model.stem):
        if isinstance(m, ConvBN):
            ops.append(_conv_op(f"stem.{i}", m))
        else:
            ops.append({"op": "maxpool", "kernel": m.kernel_size, "stride": m.stride, "padding": m.padding})
    se = model.se
    ops.append({"op": "squeeze_excite",
                "fc1": {"weight": "se.fc1.weight", "bias": "se.fc1.bias" if se.fc1.bias is not None else None},
                "fc2": {"weight": "se.fc2.weight", "bias": "se.fc2.bias" if se.fc2.bias is not None else None}})
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}"
        ops.append({"op": "residual",
                    "body": [_conv_op(p + ".conv1", b.conv1), _conv_op(p + ".conv2", b.conv2)],
                    "shortcut": None if b.shortcut is None else _conv_op(p + ".shortcut", b.shortcut),
                    "relu": True})
    ops.append({"op": "global_avg_pool"})
    ops.append({"op": "linear", "weight": "fc.weight", "bias": "fc.bias"})
    ops.append({"op": "softmax"})
    return ops


def count_flops(model):
    """Per-image multiply-accumulates per module, counted by forward hooks; FLOPs = 2 * MACs."""
    rows = []

    def hook(name):
        def f(mod, inp, out):
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
                rows.append((name, "conv2d", out[0].numel() * k, sum(p.numel() for p in mod.parameters()), tuple(out.shape[1:])))
            elif isinstance(mod, nn.Linear):
                rows.append((name, "linear", mod.in_features * mod.out_features, sum(p.numel() for p in mod.parameters()), tuple(out.shape[1:])))
            elif isinstance(mod, nn.BatchNorm2d):
                rows.append((name, "batchnorm", 0, sum(p.numel() for p in mod.parameters()), tuple(out.shape[1:])))
        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    c = model.config
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, c["in_channels"], c["input_size"], c["input_size"]))
    model.train(was_training)
    for h in handles:
        h.remove()
    return rows
