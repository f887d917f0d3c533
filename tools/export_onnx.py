#!/usr/bin/python3
"""Exports an emote model file to ONNX, then checks the ONNX model against the C engine.

    /usr/bin/python3 tools/export_onnx.py MODEL.safetensors OUT.onnx [--tolerance T]
                                          [--images PATH...] [--random N] [--no-check]

Export: any model file in the emote format (see DESIGN.md). The network comes from the
file's own `__metadata__` "graph" op list, op by op (conv2d with optional BatchNorm and
ReLU, maxpool, squeeze_excite, residual, global_avg_pool, linear, relu, softmax), so no
Python class of the model is needed. ONNX opset 13; input "input" float32 [batch, C, H, W]
(preprocessed as `emote` does: see README "Preprocessing"), output "probs" float32
[batch, classes], softmax probabilities in label order. Tensors keep their names from the
model file (PyTorch state_dict names) and BatchNorm stays a BatchNormalization node, so
every weight can be traced back; every `__metadata__` entry (labels, input, provenance,
...) is copied into the ONNX model's metadata_props. Needs numpy and Debian's python3-onnx.

Check: runs the ONNX model with ONNX Runtime (npm onnxruntime-node through
tools/bench_ort.mjs, installed into build/bench/ort with ONNXRUNTIME_NODE_INSTALL=skip, as
`make bench` does) and the same inputs through the C engine (libemote through ctypes,
build/release/libemote.so, brought up to date by make), and prints the largest probability gap.
The inputs: the model's parity fixture inputs when MODEL is tests/fixtures/CASE.safetensors
(CASE.expected.safetensors "input"); the images under --images (default: the samples/
folder beside MODEL, e.g. models/samples/), preprocessed by the C code; N seeded random
inputs (--random, default 32). OUT.onnx is written only when the gap is within the
tolerance.

Exit status: 0 exported and checked (or --no-check); 1 the check failed: a probability
gap over --tolerance (OUT.onnx not written); 2 usage error, or MODEL cannot be read or
converted; 3 exported but not checked: ONNX Runtime or libemote could not be had here
(the reason is printed; OUT.onnx is written).

--perturb-for-test adds 1 to one weight of the last linear layer in the exported model
(its first bias, else its first weight row), so that the check must fail: the test suite
uses it to prove that the check can fail.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
from safetensors_io import read_safetensors  # noqa: E402

ORT_DIR = os.path.join(ROOT, "build", "bench", "ort")
ORT_PACKAGE = os.path.join(TOOLS, "bench_package.json")
ORT_SCRIPT = os.path.join(TOOLS, "bench_ort.mjs")
LIBEMOTE = os.path.join(ROOT, "build", "release", "libemote.so")
OPSET = 13
DEFAULT_TOLERANCE = 1e-5
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".pnm")


class Unavailable(Exception):
    """ONNX Runtime or libemote cannot be had on this machine; the check cannot run."""


def log(msg):
    print(f"export_onnx: {msg}", file=sys.stderr, flush=True)


# ---- export --------------------------------------------------------------------------------

class _GraphBuilder:
    """Turns the model file's op list into ONNX nodes, one op at a time."""

    def __init__(self, tensors):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.tensors, self.nodes, self.initializers, self.count = tensors, [], {}, 0

    def tensor(self, name):
        if name is None:
            return ""
        if name not in self.tensors:
            raise ValueError(f"the graph references tensor {name!r}, which the file does not hold")
        if name not in self.initializers:
            self.initializers[name] = self.numpy_helper.from_array(np.asarray(self.tensors[name], np.float32), name)
        return name

    def constant(self, name, values):
        self.initializers[name] = self.numpy_helper.from_array(np.asarray(values, np.int64), name)
        return name

    def node(self, op_type, inputs, **attributes):
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        while inputs and inputs[-1] == "":  # trailing optional inputs left out
            inputs = inputs[:-1]
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def conv2d(self, op, x):
        weight = self.tensor(op["weight"])
        k, s, p = self.tensors[weight].shape[2:], op["stride"], op["padding"]
        x = self.node("Conv", [x, weight, self.tensor(op.get("bias"))],
                      kernel_shape=list(k), strides=[s, s], pads=[p, p, p, p])
        bn = op.get("batchnorm")
        if bn is not None:
            x = self.node("BatchNormalization", [x] + [self.tensor(bn[key]) for key in ("weight", "bias", "mean", "var")],
                          epsilon=float(bn["eps"]))
        return self.node("Relu", [x]) if op["relu"] else x

    def linear(self, ref, x):
        return self.node("Gemm", [x, self.tensor(ref["weight"]), self.tensor(ref.get("bias"))], transB=1)

    def squeeze_excite(self, op, x):
        s = self.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
        s = self.node("Sigmoid", [self.linear(op["fc2"], self.node("Relu", [self.linear(op["fc1"], s)]))])
        s = self.node("Unsqueeze", [s, self.constant("se_axes", [2, 3])])
        return self.node("Mul", [x, s])

    def residual(self, op, x):
        y = x
        for conv in op["body"]:
            y = self.conv2d(conv, y)
        shortcut = x if op["shortcut"] is None else self.conv2d(op["shortcut"], x)
        y = self.node("Add", [y, shortcut])
        return self.node("Relu", [y]) if op["relu"] else y

    def op(self, op, x):
        kind = op["op"]
        if kind == "conv2d":
            return self.conv2d(op, x)
        if kind == "maxpool":
            k, s, p = op["kernel"], op["stride"], op["padding"]
            return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
        if kind == "squeeze_excite":
            return self.squeeze_excite(op, x)
        if kind == "residual":
            return self.residual(op, x)
        if kind == "global_avg_pool":
            return self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        if kind == "linear":
            return self.linear(op, x)
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "softmax":
            return self.node("Softmax", [x], axis=1)
        raise ValueError(f"op {kind!r} has no ONNX export")


def perturbed(tensors, ops):
    """A copy of tensors with 1 added to the last linear layer's first bias (else first weight row)."""
    linears = [op for op in ops if op["op"] == "linear"]
    if not linears:
        raise ValueError("--perturb-for-test needs a linear op in the graph")
    name = linears[-1].get("bias") or linears[-1]["weight"]
    changed = dict(tensors)
    changed[name] = np.array(tensors[name], np.float32)
    changed[name][0] += 1
    return changed


def onnx_model(tensors, metadata, perturb=False):
    """The ONNX ModelProto of a model file's tensors and __metadata__ (see the module doc)."""
    import onnx
    from onnx import TensorProto, helper
    try:
        ops, spec, labels = (json.loads(metadata[key]) for key in ("graph", "input", "labels"))
    except KeyError as e:
        raise ValueError(f"no {e.args[0]!r} in __metadata__: not an emote model file")
    if not ops or ops[-1]["op"] != "softmax":
        raise ValueError("the graph does not end with softmax")
    if perturb:
        tensors = perturbed(tensors, ops)
    b = _GraphBuilder(tensors)
    x = "input"
    for op in ops:
        x = b.op(op, x)
    b.nodes[-1].output[0] = "probs"
    shape = ["batch", spec["channels"], spec["height"], spec["width"]]
    graph = helper.make_graph(b.nodes, "emote", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(labels)])],
                              initializer=list(b.initializers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="emote tools/export_onnx.py",
                              doc_string="emote model: softmax probabilities over " + ", ".join(labels))
    model.ir_version = min(model.ir_version, 8)  # what ONNX 1.12 (Debian bookworm) writes for opset 13
    helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model


def export_onnx(model_path, out_path, perturb=False):
    """Writes model_path (emote format) as ONNX to out_path (atomically); returns (input spec, labels)."""
    import onnx
    tensors, metadata = read_safetensors(model_path)
    model = onnx_model(tensors, metadata, perturb)
    tmp = f"{out_path}.tmp{os.getpid()}"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return json.loads(metadata["input"]), json.loads(metadata["labels"])


# ---- ONNX Runtime (npm onnxruntime-node) ----------------------------------------------------

def ensure_ort():
    """Installs onnxruntime-node into build/bench/ort if missing; returns its version."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise Unavailable(f"`{tool}` not found")
    have = os.path.join(ORT_DIR, "package.json")
    pkg = os.path.join(ORT_DIR, "node_modules", "onnxruntime-node", "package.json")
    with open(ORT_PACKAGE) as f:
        wanted = f.read()
    current = open(have).read() if os.path.exists(have) else None
    if current != wanted or not os.path.exists(pkg):
        log(f"installing onnxruntime-node into {os.path.relpath(ORT_DIR, ROOT)} (npm, ONNXRUNTIME_NODE_INSTALL=skip)")
        os.makedirs(ORT_DIR, exist_ok=True)
        with open(have, "w") as f:
            f.write(wanted)
        try:
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ORT_DIR,
                               capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip"))
        except subprocess.TimeoutExpired:
            raise Unavailable("npm install onnxruntime-node timed out")
        if r.returncode != 0 or not os.path.exists(pkg):
            os.remove(have)  # try again next time
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]
            raise Unavailable("npm install onnxruntime-node failed: " + " | ".join(tail))
    with open(pkg) as f:
        return json.load(f)["version"]


def ort_probs(onnx_path, inputs):
    """ONNX Runtime's probabilities for float32 [N,C,H,W] inputs (one thread)."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs_path, probs_path = os.path.join(tmp, "inputs.f32"), os.path.join(tmp, "probs.f32")
        np.ascontiguousarray(inputs, np.float32).tofile(inputs_path)
        n, c, h, w = inputs.shape
        r = subprocess.run(["node", ORT_SCRIPT, ORT_DIR, "check", onnx_path, inputs_path, str(c), str(h), str(w),
                            str(n), "1", probs_path], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            tail = r.stderr.strip().splitlines()[-3:]
            raise Unavailable("ONNX Runtime could not run the model: " + " | ".join(tail))
        return np.fromfile(probs_path, np.float32).reshape(n, -1)


# ---- the check -------------------------------------------------------------------------------

def ensure_libemote():
    """Brings build/release/libemote.so up to date with make (unless $EMOTE_LIB names another)."""
    if os.environ.get("EMOTE_LIB"):
        return
    r = subprocess.run(["make", "-s", "-C", ROOT, "build/release/libemote.so"], capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable("cannot build libemote.so: " + (r.stderr.strip().splitlines() or ["make failed"])[-1])


def c_engine(model_path):
    from c_engine import CEngine
    try:
        return CEngine(model_path, max_batch=32, threads=1)
    except OSError as e:
        raise Unavailable(f"cannot load libemote: {e}")


def image_paths(paths):
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                yield from (os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            yield path


def check_inputs(model_path, spec, images, random_count):
    """[(description, float32 [N,C,H,W])]: fixture inputs, images, random inputs."""
    sets = []
    expected = model_path[:-len(".safetensors")] + ".expected.safetensors"
    if model_path.endswith(".safetensors") and os.path.exists(expected):
        sets.append((f"fixture inputs ({os.path.relpath(expected)})", read_safetensors(expected)[0]["input"]))
    if images is None:
        samples = os.path.join(os.path.dirname(os.path.abspath(model_path)), "samples")
        images = [samples] if os.path.isdir(samples) else []
    files = list(image_paths(images))
    if files:
        from preprocess import preprocess_file
        pixels = [preprocess_file(f, spec["channels"], spec["height"], spec["width"], spec["mean"], spec["std"])
                  for f in files]
        sets.append((f"images ({', '.join(os.path.relpath(p) for p in images)})", np.stack(pixels)))
    if random_count:
        rng = np.random.default_rng(0)
        shape = (random_count, spec["channels"], spec["height"], spec["width"])
        mean = np.asarray(spec["mean"], np.float32)[None, :, None, None]
        std = np.asarray(spec["std"], np.float32)[None, :, None, None]
        sets.append(("random inputs (seed 0)", ((rng.random(shape, dtype=np.float32) - mean) / std).astype(np.float32)))
    return sets


def largest_gap(model_path, onnx_path, input_sets):
    """Prints the gap per input set; returns the largest |p_onnx - p_c| over all."""
    version = ensure_ort()
    with c_engine(model_path) as engine:
        print(f"ONNX Runtime {version} vs the C engine (libemote), largest |probability difference|:")
        worst = 0.0
        for description, inputs in input_sets:
            p_c, p_ort = engine.classify(inputs), ort_probs(onnx_path, inputs)
            gap = float(np.abs(p_c - p_ort).max())
            agree = int((p_c.argmax(1) == p_ort.argmax(1)).sum())
            print(f"  {description}: {len(inputs)} inputs, gap {gap:.3g}, top-1 agrees on {agree}/{len(inputs)}")
            if not gap <= worst:  # NaN included: it fails the tolerance too
                worst = gap
        return worst


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.safetensors")
    p.add_argument("out", metavar="OUT.onnx")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest probability gap allowed (default {DEFAULT_TOLERANCE:g})")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="image files or folders to check on (default: the samples/ folder beside MODEL)")
    p.add_argument("--random", type=int, default=32, metavar="N", help="seeded random inputs to check on (default 32)")
    p.add_argument("--no-check", action="store_true", help="export only")
    p.add_argument("--perturb-for-test", action="store_true", help="break the export on purpose (see above)")
    args = p.parse_args(argv)
    if not args.tolerance >= 0 or args.random < 0:
        p.error("--tolerance and --random must not be negative")
    return args


def export_and_check(args, tmp):
    """Exports to tmp, checks it and moves it to args.out when it passes; the exit status."""
    try:
        spec, _ = export_onnx(args.model, tmp, args.perturb_for_test)
        if args.no_check:
            os.replace(tmp, args.out)
            log(f"wrote {args.out} (not checked: --no-check)")
            return 0
        ensure_libemote()
        input_sets = check_inputs(args.model, spec, args.images, args.random)
        if not input_sets:
            raise ValueError("no inputs to check on (give --images or --random N)")
        gap = largest_gap(args.model, tmp, input_sets)
    except Unavailable as e:
        os.replace(tmp, args.out)
        log(f"wrote {args.out} but could not check it: {e}")
        return 3
    except (OSError, ValueError, KeyError, TypeError) as e:
        log(f"{args.model}: {e}")
        return 2
    ok = gap <= args.tolerance
    print(f"largest probability gap {gap:.3g} (tolerance {args.tolerance:g}): {'ok' if ok else 'FAILED'}")
    if not ok:
        log(f"not writing {args.out}: the ONNX model's probabilities differ from the C engine's by {gap:.3g}")
        return 1
    os.replace(tmp, args.out)
    log(f"wrote {args.out}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".export_onnx.", suffix=".onnx",
                                   dir=os.path.dirname(os.path.abspath(args.out)))
    except OSError as e:
        log(f"cannot write {args.out}: {e}")
        return 2
    os.close(fd)
    try:
        return export_and_check(args, tmp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
