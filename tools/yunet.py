"""YuNet (libfacedetection) in PyTorch: weights from facedetectcnn-data.cpp, the network,
the emote graph of it, and the detector's post-processing — the reference for emote's C side.

    from yunet import load_weights, YuNet, graph_ops, detect

Op semantics, read from ../shared/third_party/libfacedetection (facedetectcnn.cpp,
facedetectcnn-model.cpp):
- the image (BGR bytes, 0..255, no normalisation) is zero-padded at the bottom and right to
  a multiple of 32; conv_head is a 3x3 stride-2 pad-1 conv, stored as a 32-wide pointwise
  filter over an im2col of 27 = 3x3 taps x 3 channels (tap-major, then B, G, R) + 5 zeros;
- a "DP" unit is a 1x1 conv (no ReLU) then a 3x3 depthwise conv (pad 1), ReLU if asked;
  pointwise weights are [out][in], depthwise weights [tap][channel];
- maxpool 2x2 stride 2; upsample x2 nearest; add elementwise;
- heads at strides 8, 16, 32: cls (1), bbox (4), obj (1), kps (10) per cell, decoded as
  cx = (dx + col) * s, w = exp(dw) * s, landmarks (dx + col) * s; score =
  sqrt(sigmoid(cls) * sigmoid(obj)) >= 0.2; NMS at IoU 0.45 over the best 1000, keep 512.
emote feeds RGB: the converter swaps conv_head's input channels so the model takes RGB.
"""
import math
import re

import numpy as np
import torch
import torch.nn.functional as F

STRIDES = (8, 16, 32)
SCORE_THRESHOLD = 0.2
NMS_IOU = 0.45
TOP_K = 1000
KEEP_TOP_K = 512
SIZE_MULTIPLE = 32
HEADS = ("cls", "bbox", "obj", "kps")
HEAD_CHANNELS = {"cls": 1, "bbox": 4, "obj": 1, "kps": 10}

# param_pConvInfo order (facedetectcnn-model.cpp): conv index -> array base name.
_ARRAY = re.compile(r"float\s+(\w+)\s*\[([^\]]*)\]\s*=\s*\{([^}]*)\}", re.S)
_INFO = re.compile(r"\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(true|false)\s*,\s*(true|false)\s*,\s*(true|false)\s*,\s*(\w+)\s*,\s*(\w+)\s*\}")


def tensor_name(c_name):
    """backbone__model1_dp1_pw_weight -> backbone.model1.dp1.pw.weight (the module path)."""
    parts = c_name.split("__")
    return ".".join(parts[:-1] + parts[-1].split("_"))


def load_weights(data_cpp):
    """Parses facedetectcnn-data.cpp: a list of 53 conv layers, each a dict with cin, cout,
    depthwise, weight (torch layout [out, in/groups, k, k]), bias, and their tensor names."""
    text = open(data_cpp).read()
    arrays = {}
    for name, size, body in _ARRAY.findall(text):
        values = np.array([float(v.rstrip("f")) for v in body.replace("\n", "").split(",") if v.strip()],
                          dtype=np.float32)
        count = eval(size, {"__builtins__": {}})  # "16*32*1*1": integers only
        if values.size != count:
            raise ValueError(f"{data_cpp}: {name} has {values.size} values, declared {count}")
        arrays[name] = values
    info = text[text.index("param_pConvInfo"):]
    layers = []
    for cin, cout, dw, pw, _relu, wname, bname in _INFO.findall(info):
        cin, cout, dw = int(cin), int(cout), dw == "true"
        w = arrays[wname]
        if dw:  # [tap][channel] -> [channel][1][3][3]
            weight = w.reshape(9, cin).T.reshape(cin, 1, 3, 3)
        else:   # [out][in] -> [out][in][1][1]
            weight = w.reshape(cout, cin)[:, :, None, None]
        layers.append({"cin": cin, "cout": cout, "depthwise": dw, "weight": np.ascontiguousarray(weight),
                       "bias": arrays[bname].copy(), "weight_name": tensor_name(wname),
                       "bias_name": tensor_name(bname)})
    if len(layers) != 53:
        raise ValueError(f"{data_cpp}: found {len(layers)} conv layers, expected 53")
    return layers


def head_conv_rgb(pointwise32):
    """conv_head's [16][32] im2col filter -> a [16][3][3][3] conv over RGB input."""
    w = pointwise32.reshape(16, 32)[:, :27].reshape(16, 3, 3, 3)  # [out][ky][kx][bgr]
    w = w.transpose(0, 3, 1, 2)                                    # [out][bgr][ky][kx]
    return np.ascontiguousarray(w[:, ::-1])                        # BGR -> RGB


# The network as (conv indices, relu) steps, facedetectcnn-model.cpp's order.
BACKBONE = [("head", [0], True), ("dp", [1, 2], True), ("pool",), ("dp", [3, 4], True), ("dp", [5, 6], True),
            ("dp", [7, 8], True), ("dp", [9, 10], True), ("pool",), ("dp", [11, 12], True), ("dp", [13, 14], True)]
# stride-8 (fb1) = after BACKBONE; then pool, conv4 -> fb2 (stride 16); pool, conv5 -> fb3 (stride 32).
STAGE = {16: [15, 16, 17, 18], 32: [19, 20, 21, 22]}
LATERAL = {8: [23, 24], 16: [25, 26], 32: [27, 28]}
HEAD_CONVS = {"cls": {8: [29, 30], 16: [31, 32], 32: [33, 34]},
              "bbox": {8: [35, 36], 16: [37, 38], 32: [39, 40]},
              "obj": {8: [41, 42], 16: [43, 44], 32: [45, 46]},
              "kps": {8: [47, 48], 16: [49, 50], 32: [51, 52]}}


def output_name(head, stride):
    return f"{head}_{stride}"


def graph_ops(layers):
    """The emote graph (see DESIGN.md): conv2d (groups for depthwise), maxpool, upsample, add,
    with named values ("name", "input", "with"); outputs listed by output_names()."""
    ops = []

    def conv(i, relu, **extra):
        L = layers[i]
        op = {"op": "conv2d", "weight": L["weight_name"], "bias": L["bias_name"], "stride": 1,
              "padding": 1 if L["depthwise"] else 0, "relu": relu, "batchnorm": None}
        if L["depthwise"]:
            op["groups"] = L["cin"]
        op.update(extra)
        ops.append(op)

    def dp(pw, dwi, relu, **extra):
        conv(pw, False, **({"input": extra.pop("input")} if "input" in extra else {}))
        conv(dwi, relu, **extra)

    conv(0, True, stride=2, padding=1)
    ops[-1]["weight"] = "conv_head.weight"
    dp(1, 2, True)
    ops.append({"op": "maxpool", "kernel": 2, "stride": 2, "padding": 0})
    for a, b in ((3, 4), (5, 6), (7, 8), (9, 10)):
        dp(a, b, True)
    ops.append({"op": "maxpool", "kernel": 2, "stride": 2, "padding": 0})
    dp(11, 12, True)
    dp(13, 14, True, name="fb1")
    for stride, prev in ((16, "fb1"), (32, "fb2")):
        ops.append({"op": "maxpool", "kernel": 2, "stride": 2, "padding": 0, "input": prev})
        c = STAGE[stride]
        dp(c[0], c[1], True)
        dp(c[2], c[3], True, name={16: "fb2", 32: "fb3"}[stride])
    # Neck and heads, coarse to fine: lateral DP, heads, then upsample + add into the next level.
    for stride, feat in ((32, "fb3"), (16, "fb2"), (8, "fb1")):
        src = feat if stride == 32 else f"sum{stride}"
        a, b = LATERAL[stride]
        dp(a, b, True, input=src, name=f"lat{stride}")
        for head in HEADS:
            a, b = HEAD_CONVS[head][stride]
            dp(a, b, False, input=f"lat{stride}", name=output_name(head, stride))
        if stride > 8:
            ops.append({"op": "upsample", "scale": 2, "input": f"lat{stride}"})
            ops.append({"op": "add", "with": "fb2" if stride == 32 else "fb1", "name": f"sum{stride // 2}"})
    return ops


def output_names():
    return [output_name(h, s) for s in STRIDES for h in HEADS]


def state_dict(layers):
    sd = {"conv_head.weight": head_conv_rgb(layers[0]["weight"]), layers[0]["bias_name"]: layers[0]["bias"]}
    for L in layers[1:]:
        sd[L["weight_name"]] = L["weight"]
        sd[L["bias_name"]] = L["bias"]
    return sd


class YuNet(torch.nn.Module):
    """The network written out by hand (not through the graph), for cross-checking graph_ref."""

    def __init__(self, layers):
        super().__init__()
        self.w = [torch.from_numpy(L["weight"]) for L in layers]
        self.b = [torch.from_numpy(L["bias"]) for L in layers]
        self.w[0] = torch.from_numpy(head_conv_rgb(layers[0]["weight"]))
        self.dw = [L["depthwise"] for L in layers]

    def conv(self, i, x, relu):
        w, b = self.w[i].to(x.dtype), self.b[i].to(x.dtype)
        if i == 0:
            y = F.conv2d(x, w, b, stride=2, padding=1)
        else:
            y = F.conv2d(x, w, b, padding=1 if self.dw[i] else 0, groups=w.shape[0] if self.dw[i] else 1)
        return F.relu(y) if relu else y

    def dp(self, pair, x, relu):
        return self.conv(pair[1], self.conv(pair[0], x, False), relu)

    def forward(self, x):
        """x: [N,3,H,W] RGB 0..255, H and W multiples of 32 -> dict output name -> [N,C,h,w]."""
        x = self.dp([1, 2], self.conv(0, x, True), True)
        x = F.max_pool2d(x, 2, 2)
        for pair in ([3, 4], [5, 6], [7, 8], [9, 10]):
            x = self.dp(pair, x, True)
        x = F.max_pool2d(x, 2, 2)
        fb = {8: self.dp([13, 14], self.dp([11, 12], x, True), True)}
        for stride in (16, 32):
            c = STAGE[stride]
            fb[stride] = self.dp(c[2:], self.dp(c[:2], F.max_pool2d(fb[stride // 2], 2, 2), True), True)
        out, up = {}, None
        for stride in (32, 16, 8):
            lat = self.dp(LATERAL[stride], fb[stride] if up is None else up + fb[stride], True)
            for head in HEADS:
                out[output_name(head, stride)] = self.dp(HEAD_CONVS[head][stride], lat, False)
            up = F.interpolate(lat, scale_factor=2, mode="nearest")
        return out


def pad_to_multiple(img_chw, multiple=SIZE_MULTIPLE):
    c, h, w = img_chw.shape
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    out = torch.zeros(c, ph, pw, dtype=img_chw.dtype)
    out[:, :h, :w] = img_chw
    return out


def decode(outputs, score_threshold=SCORE_THRESHOLD):
    """Head outputs (one image) -> list of (score, [x0, y0, x1, y1], [10 landmark coords])."""
    cands = []
    for stride in STRIDES:
        o = {h: outputs[output_name(h, stride)][0].double() for h in HEADS}
        _, rows, cols = o["cls"].shape
        score = torch.sqrt(torch.sigmoid(o["cls"][0]) * torch.sigmoid(o["obj"][0]))
        for r in range(rows):
            for c in range(cols):
                s = score[r, c].item()
                if s < score_threshold:
                    continue
                b = o["bbox"][:, r, c]
                cx, cy = (b[0].item() + c) * stride, (b[1].item() + r) * stride
                w, h = math.exp(b[2].item()) * stride, math.exp(b[3].item()) * stride
                k = o["kps"][:, r, c]
                lm = [v for i in range(5) for v in ((k[2 * i].item() + c) * stride, (k[2 * i + 1].item() + r) * stride)]
                cands.append((s, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], lm))
    return cands


def iou(a, b):
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nms(cands, iou_threshold=NMS_IOU, top_k=TOP_K, keep_top_k=KEEP_TOP_K):
    cands = sorted(cands, key=lambda t: -t[0])[:top_k]
    kept = []
    for c in cands:
        if all(iou(c[1], k[1]) <= iou_threshold for k in kept):
            kept.append(c)
    return kept[:keep_top_k]


@torch.no_grad()
def detect(model, rgb_hwc_uint8, score_threshold=SCORE_THRESHOLD):
    """Faces in one image, as the reference library reports them (before its int rounding)."""
    x = torch.from_numpy(np.array(rgb_hwc_uint8)).permute(2, 0, 1).float()
    out = model(pad_to_multiple(x)[None])
    return nms(decode(out, score_threshold))
