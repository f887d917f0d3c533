"""The one PyTorch interpreter of the model file's "graph" op list (see DESIGN.md).

    probs, outputs = run_graph(ops, state_dict, x, dtype=torch.float64)

runs the ops with torch.nn.functional, in eval-mode semantics (BatchNorm uses its
running statistics), and returns the softmax output plus every op's output.
References for the C parity fixtures are computed in float64: the C engine works in
float32 (with BatchNorm folded into the conv weights), so a float64 reference keeps
PyTorch's own float32 rounding out of the measured difference.
"""
import copy

import torch
import torch.nn.functional as F

from emote_model import graph_of


def _tensor(state_dict, name, dtype):
    if name is None:
        return None
    if name not in state_dict:
        raise KeyError(f"graph references tensor {name!r}, not in the state dict")
    return torch.as_tensor(state_dict[name]).to(dtype)


def _conv2d(op, sd, x, dtype):
    x = F.conv2d(x, _tensor(sd, op["weight"], dtype), _tensor(sd, op.get("bias"), dtype),
                 stride=op["stride"], padding=op["padding"], groups=op.get("groups", 1))
    bn = op.get("batchnorm")
    if bn is not None:
        x = F.batch_norm(x, _tensor(sd, bn["mean"], dtype), _tensor(sd, bn["var"], dtype),
                         _tensor(sd, bn["weight"], dtype), _tensor(sd, bn["bias"], dtype),
                         training=False, eps=bn["eps"])
    return F.relu(x) if op["relu"] else x


def _linear(ref, sd, x, dtype):
    if x.ndim != 2:
        raise ValueError(f"linear on a tensor of shape {tuple(x.shape)}: only vectors [N,F] allowed")
    return F.linear(x, _tensor(sd, ref["weight"], dtype), _tensor(sd, ref.get("bias"), dtype))


def run_op(op, sd, x, dtype=torch.float64, values=None):
    """One op on x; `values`: the named values so far (for "add" and its "with")."""
    kind = op["op"]
    if kind == "upsample":
        return F.interpolate(x, scale_factor=op["scale"], mode="nearest")
    if kind == "add":
        return x + values[op["with"]]
    if kind == "conv2d":
        return _conv2d(op, sd, x, dtype)
    if kind == "maxpool":
        return F.max_pool2d(x, op["kernel"], op["stride"], op["padding"])
    if kind == "squeeze_excite":
        s = torch.sigmoid(_linear(op["fc2"], sd, F.relu(_linear(op["fc1"], sd, x.mean(dim=(2, 3)), dtype)), dtype))
        return x * s[:, :, None, None]
    if kind == "residual":
        y = x
        for conv in op["body"]:
            y = _conv2d(conv, sd, y, dtype)
        y = y + (x if op["shortcut"] is None else _conv2d(op["shortcut"], sd, x, dtype))
        return F.relu(y) if op["relu"] else y
    if kind == "global_avg_pool":
        return x.mean(dim=(2, 3))
    if kind == "linear":
        return _linear(op, sd, x, dtype)
    if kind == "relu":
        return F.relu(x)
    if kind == "softmax":
        return x.softmax(1)
    raise ValueError(f"unknown op {kind!r}")


@torch.no_grad()
def run_graph(ops, state_dict, x, dtype=torch.float64):
    """Returns (probs [N,K], [output of each op]); all computed in `dtype`."""
    if not ops or ops[-1]["op"] != "softmax":
        raise ValueError("graph must end with softmax")
    x = torch.as_tensor(x).to(dtype)
    outputs = []
    for op in ops:
        x = run_op(op, state_dict, x, dtype)
        outputs.append(x)
    return x, outputs


@torch.no_grad()
def run_named_graph(ops, state_dict, x, output_names, dtype=torch.float64):
    """A graph with named values ("name" stores an op's result, "input" reads one instead of
    the previous op's result, "add" adds "with"): returns ({output name: tensor}, [op outputs])."""
    x = torch.as_tensor(x).to(dtype)
    values, outputs = {}, []
    for op in ops:
        if "input" in op:
            x = values[op["input"]]
        x = run_op(op, state_dict, x, dtype, values)
        if "name" in op:
            values[op["name"]] = x
        outputs.append(x)
    return {name: values[name] for name in output_names}, outputs


@torch.no_grad()
def check_emotenet_graph(model, x):
    """Self-test: the graph interpreter reproduces EmoteNet's eval-mode softmax.

    Compared in float64 (both sides, must agree to rounding) and in float32 (the
    model as trained against the float64 reference). Raises AssertionError on mismatch.
    """
    ops = graph_of(model)
    m64 = copy.deepcopy(model).double().eval()
    want64 = m64(x.double()).softmax(1)
    got64, _ = run_graph(ops, m64.state_dict(), x, torch.float64)
    err64 = (got64 - want64).abs().max().item()
    want32 = copy.deepcopy(model).float().eval()(x.float()).softmax(1)
    err32 = (got64 - want32.double()).abs().max().item()
    if not (err64 < 1e-12 and err32 < 1e-5):
        raise AssertionError(f"graph_ref disagrees with EmoteNet: max |diff| {err64:.3g} (float64), "
                             f"{err32:.3g} (float32 model vs float64 graph)")
    return err64, err32
