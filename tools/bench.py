#!/usr/bin/python3
"""`make bench`: emote's speed and memory, side by side with its peers, in one run.

    /usr/bin/python3 tools/bench.py [--model FILE] [--threads 1,2] [--batches 1,32] [--seconds S]
                                    [--out FILE.json] [--emote BIN] [--coretype auto|none|NAME]
                                    [--no-ort] [--quick]

Needs `make all` first (build/release/libemote.a, ./emote). For each (batch, threads) it
times, one after the other so they share the machine's state:
  emote         emote_classify through tools/bench_engine.c (build/bench/bench_engine)
  PyTorch       the same weights (EmoteNet rebuilt from the model file's config metadata)
                in eval mode under inference_mode, torch.set_num_threads(threads); both
                contiguous and channels_last are tried and the faster is reported
  ONNX Runtime  the same model exported by tools/export_onnx.py, run by npm onnxruntime-node
                (installed into build/bench/ort with ONNXRUNTIME_NODE_INSTALL=skip) from
                tools/bench_ort.mjs with intraOpNumThreads = threads, interOpNumThreads = 1
All three use one method: warm up (>= 2 calls, >= 0.25 s), then call on the same batch until
S seconds have passed (>= 5 calls); images/s = images classified / wall time. Every engine
outputs softmax probabilities.

Also: raw cblas_sgemm GFLOP/s (tools/bench_sgemm.c) on the model's conv GEMM shapes and on a
1024^3 GEMM, as the machine's limit; the cost of one `./emote` process classifying one image;
the peak RSS of `./emote -b 32` over 256 images. Before any timing, emote's probabilities are
checked against PyTorch's on the same random inputs (max |difference| <= 1e-4, else exit 1).

The emote and sgemm harnesses choose OpenBLAS's kernel as the emote CLI does
(src/cli/blas_kernel.c: where OpenBLAS falls back to its generic "Prescott" kernel on a CPU it
does not recognise, re-execute with OPENBLAS_CORETYPE set from the CPU's features). The table
names the kernel. --coretype NAME also times emote and sgemm with OPENBLAS_CORETYPE=NAME
(--coretype Prescott shows what that choice buys); auto (the default) does so only if emote
still runs a generic kernel; none never.

Prints machine info and Markdown tables; writes every raw number to --out
(default build/bench/results.json). Exit status: 0 done, 1 a failure (a wrong engine, a
harness that would not build or run), 2 usage.
"""
import argparse
import copy
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
from emote_model import EmoteNet  # noqa: E402
from export_onnx import ORT_DIR, Unavailable, ensure_ort, export_onnx  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

BENCH_DIR = os.path.join(ROOT, "build", "bench")
LIBEMOTE = os.path.join(ROOT, "build", "release", "libemote.a")
EMOTE = os.path.join(ROOT, "emote")
DEFAULT_MODEL = os.path.join(ROOT, "models", "emote-fer2013.safetensors")
SAMPLE = os.path.join(ROOT, "models", "samples", "astronaut-collins.png")
TOLERANCE = 1e-4
WARMUP_SECONDS = 0.25
MIN_CALLS = 5
SQUARE = 1024
RSS_IMAGES = 256
# OpenBLAS's generic x86-64 kernels: what DYNAMIC_ARCH falls back to on a CPU it cannot name.
GENERIC_CORES = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine",
                 "Northwood", "Banias", "Opteron", "Opteron_SSE3", "Barcelona"}


class Failure(Exception):
    """Something the benchmark cannot go on without."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ncpu = len(os.sched_getaffinity(0))
    default_threads = "1" if ncpu == 1 else f"1,{ncpu}"
    p.add_argument("--model", help=f"model file (default: {os.path.relpath(DEFAULT_MODEL, ROOT)})")
    p.add_argument("--threads", type=int_list, default=int_list(default_threads),
                   help=f"thread counts (default: {default_threads})")
    p.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes (default: 1,32)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per engine and config (default: 3)")
    p.add_argument("--process-runs", type=int, default=20, help="runs of ./emote per process-cost figure (default: 20)")
    p.add_argument("--coretype", default="auto",
                   help="also time emote and sgemm with OPENBLAS_CORETYPE=NAME: auto (only if emote runs a generic "
                        "kernel), none, or a name such as Prescott or SkylakeX (default: auto)")
    p.add_argument("--emote", default=EMOTE, help="the emote binary for the per-process and memory figures "
                   "(default: ./emote)")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--quick", action="store_true", help="smoke test: 0.3 s per figure, 5 process runs")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results.json"), help="raw results (JSON)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.process_runs = 0.3, 5
    if args.seconds <= 0 or args.process_runs < 1:
        p.error("--seconds and --process-runs must be positive")
    if args.model is None:
        if not os.path.exists(DEFAULT_MODEL):
            p.error(f"no default model {os.path.relpath(DEFAULT_MODEL, ROOT)}; pass --model FILE")
        args.model = DEFAULT_MODEL
    return args


# ---- machine -----------------------------------------------------------------------------

def cpu_info():
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("unknown", "", "x86_64"):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def compiler_version(cc):
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def machine_info(cc):
    model, flags = cpu_info()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "simd": sorted(f for f in flags if f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "compiler": compiler_version(cc),
    }


# ---- building and running the harnesses ---------------------------------------------------

def build_harnesses(cc):
    if not os.path.exists(LIBEMOTE):
        raise Failure(f"{os.path.relpath(LIBEMOTE, ROOT)} is missing: run `make all` first")
    os.makedirs(BENCH_DIR, exist_ok=True)
    flags = ["-std=c11", "-O2", "-D_GNU_SOURCE", "-Wall", "-Wextra"]
    # The CLI's choice of OpenBLAS kernel (src/cli/blas_kernel.c), so both harnesses run what ./emote runs.
    kernel = [os.path.join(ROOT, "src", "cli", "blas_kernel.c")]
    if os.path.exists(kernel[0]):
        flags.append("-DEMOTE_BENCH_CLI_KERNEL")
    else:
        kernel = []
    builds = {
        "bench_engine": [os.path.join(TOOLS, "bench_engine.c"), os.path.join(ROOT, "src", "no_builtin_model.c"),
                         *kernel, LIBEMOTE, "-lopenblas", "-lcjson", "-ljpeg", "-lm", "-lpthread"],
        "bench_sgemm": [os.path.join(TOOLS, "bench_sgemm.c"), *kernel, "-lopenblas", "-lpthread"],
    }
    paths = {}
    for name, sources in builds.items():
        out = os.path.join(BENCH_DIR, name)
        cmd = [cc, *flags, "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "src"), "-o", out, *sources]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise Failure(f"building {name} failed:\n{shlex.join(cmd)}\n{r.stderr}")
        if r.stderr.strip():
            log(f"{name}: compiler warnings:\n{r.stderr}")
        paths[name] = out
    return paths


def run_json(cmd, env=None, timeout=600):
    """Runs a harness and returns the JSON object on the last line of its stdout."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{shlex.join(cmd)}: no answer after {timeout} s")
    if r.returncode != 0:
        raise Failure(f"{shlex.join(cmd)} exited {r.returncode}:\n{r.stderr.strip()}")
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise Failure(f"{shlex.join(cmd)}: expected JSON, got:\n{r.stdout}\n{r.stderr}")


def env_with(**extra):
    env = dict(os.environ)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


# ---- the model in PyTorch and ONNX ----------------------------------------------------------

def load_reference(path):
    """(EmoteNet followed by softmax, in eval mode; config; input spec) from the model file alone."""
    tensors, metadata = read_safetensors(path)
    if "config" not in metadata or "input" not in metadata:
        raise Failure(f"{path}: no 'config'/'input' metadata; cannot rebuild the model in PyTorch")
    config, spec = json.loads(metadata["config"]), json.loads(metadata["input"])
    net = EmoteNet(config)
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise Failure(f"{path}: tensors do not fit EmoteNet({config}): missing {missing}, unexpected {unexpected}")
    model = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    return model, config, spec


def random_inputs(spec, count, seed=0):
    """Uniform random pixels, normalised as the model expects: (count, C, H, W) float32."""
    rng = np.random.default_rng(seed)
    c, h, w = spec["channels"], spec["height"], spec["width"]
    pixels = rng.random((count, c, h, w), dtype=np.float32)
    mean = np.asarray(spec["mean"], np.float32)[None, :, None, None]
    std = np.asarray(spec["std"], np.float32)[None, :, None, None]
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def conv_gemm_shapes(model, spec):
    """One image's conv GEMMs as the engine runs them (src/layers/conv.c): M=cout, N=oh*ow, K=cin*kh*kw."""
    shapes, handles = [], []

    def hook(mod, inp, out):
        shapes.append((mod.out_channels, out.shape[2] * out.shape[3],
                       mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook))
    with torch.inference_mode():
        model(torch.zeros(1, spec["channels"], spec["height"], spec["width"]))
    for h in handles:
        h.remove()
    return shapes


# ---- timing ---------------------------------------------------------------------------------

def time_calls(fn, batch, seconds):
    """The harnesses' method: warm up, then call until `seconds` have passed (>= MIN_CALLS calls)."""
    start, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - start < WARMUP_SECONDS:
        fn()
        n += 1
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if len(times) >= MIN_CALLS and t1 - start >= seconds:
            break
    total = t1 - start
    return {"calls": len(times), "seconds": total, "images_per_s": len(times) * batch / total,
            "ms_per_batch_median": statistics.median(times) * 1e3, "ms_per_batch_min": min(times) * 1e3}


def bench_torch(models, inputs, batch, threads, seconds):
    """Times each memory format (name -> model) briefly, then the faster one for `seconds`."""
    torch.set_num_threads(threads)
    x = torch.from_numpy(inputs[:batch].copy())
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    variants = {name: (m, x.contiguous(memory_format=formats[name])) for name, m in models.items()}
    trials = {}
    with torch.inference_mode():
        for name, (m, xi) in variants.items():
            trials[name] = time_calls(lambda: m(xi), batch, max(seconds / 6, 0.2))["images_per_s"]
        best = max(trials, key=trials.get)
        m, xi = variants[best]
        result = time_calls(lambda: m(xi), batch, seconds)
    result.update(batch=batch, threads=threads, memory_format=best, trial_images_per_s=trials)
    return result


# ---- per-process cost and memory -------------------------------------------------------------

def spawn(cmd):
    """Runs cmd with output discarded; returns (wall seconds, exit status)."""
    t0 = time.perf_counter()
    rc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait()
    return time.perf_counter() - t0, rc


def check_runs(cmd, want_output):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or (want_output and not r.stdout.strip()):
        raise Unavailable(f"`{shown(cmd)}` exited {r.returncode}: {r.stderr.strip()[:300]}")


def process_cost(cmd, runs, want_output=True):
    check_runs(cmd, want_output)
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            r = subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", f.name,
                                shlex.join(cmd)], capture_output=True, text=True)
            if r.returncode == 0:
                res = json.load(open(f.name))["results"][0]
                return {"method": "hyperfine", "runs": runs, "median_ms": res["median"] * 1e3,
                        "min_ms": res["min"] * 1e3, "mean_ms": res["mean"] * 1e3}
            log(f"hyperfine failed ({r.stderr.strip()[:200]}); timing in Python")
    for _ in range(3):
        spawn(cmd)
    walls = []
    for _ in range(runs):
        wall, rc = spawn(cmd)
        if rc != 0:
            raise Unavailable(f"`{shown(cmd)}` exited {rc}")
        walls.append(wall)
    return {"method": "python subprocess + perf_counter", "runs": runs, "median_ms": statistics.median(walls) * 1e3,
            "min_ms": min(walls) * 1e3, "mean_ms": statistics.fmean(walls) * 1e3}


def write_random_pngs(directory, spec, count, seed=1):
    from PIL import Image
    rng = np.random.default_rng(seed)
    mode = "L" if spec["channels"] == 1 else "RGB"
    for i in range(count):
        shape = (spec["height"], spec["width"]) + (() if mode == "L" else (3,))
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(os.path.join(directory, f"{i:04d}.png"))


# Linux carries a process's peak RSS across exec, and Python spawns children with vfork: measured
# straight from here, the child's peak would be at least this (PyTorch-sized) process's RSS. So
# the child is started from a small process that reports it: GNU time, else a bare Python.
RSS_HELPER = """import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss, p.returncode)
"""


def peak_rss(cmd):
    """Max RSS (KiB) of cmd, run with output discarded."""
    if os.access("/usr/bin/time", os.X_OK):
        with tempfile.NamedTemporaryFile(mode="r", suffix=".txt") as f:
            r = subprocess.run(["/usr/bin/time", "-f", "%M %x", "-o", f.name, *cmd], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            fields = f.read().split()
        method = "GNU time %M"
    else:
        r = subprocess.run([sys.executable, "-S", "-c", RSS_HELPER, *cmd], capture_output=True, text=True)
        fields = r.stdout.split()
        method = "wait4 from a bare Python"
    try:
        rss, rc = int(fields[-2]), int(fields[-1])
    except (IndexError, ValueError):
        raise Unavailable(f"could not measure `{shown(cmd)}` (exit {r.returncode})")
    if rc != 0:
        raise Unavailable(f"`{shown(cmd)}` exited {rc}")
    return {"max_rss_kib": rss, "method": method}


# ---- report -----------------------------------------------------------------------------------

def fmt(x, digits=1):
    return f"{x:,.{digits}f}"


def markdown_tables(res):
    lines = []
    m = res["model"]
    lines.append(f"Model: `{m['path']}`: input {'x'.join(map(str, m['input']))}, {m['params']:,} parameters, "
                 f"{m['macs'] / 1e6:.1f} M multiply-adds ({2 * m['macs'] / 1e6:.0f} MFLOPs) per image.")
    lines.append("")
    bound = res.get("bound", {})
    lines.append("Engine images/s (`emote_classify` / ONNX Runtime `session.run`, same weights, same run); the "
                 "GEMM-only bound is `cblas_sgemm` alone on the model's conv GEMMs over the same images:")
    lines.append("")
    lines.append("| batch / threads | emote | ONNX Runtime | emote / ORT | GEMM-only bound | emote / bound |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for row in res["throughput"]:
        e = row["emote"]["images_per_s"]
        o = row["ort"]["images_per_s"] if isinstance(row.get("ort"), dict) else None
        b = bound.get(f"{row['batch']}/{row['threads']}", {}).get("images_per_s")
        lines.append(f"| {row['batch']} / {row['threads']} | {fmt(e)} | {fmt(o) if o else 'n/a'} | "
                     f"{f'{e / o:.2f}' if o else 'n/a'} | {fmt(b) if b else 'n/a'} | {f'{e / b:.2f}' if b else 'n/a'} |")
    lines.append("")
    lines.append("| engine | batch | threads | images/s | ms/image | speed vs emote |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for row in res["throughput"]:
        base = row["emote"]["images_per_s"]
        for key, label in row["labels"].items():
            r = row.get(key)
            if isinstance(r, dict):
                ips = r["images_per_s"]
                lines.append(f"| {label} | {row['batch']} | {row['threads']} | {fmt(ips)} | {fmt(1e3 / ips, 2)} | "
                             f"{ips / base:.2f} |")
            elif r is not None:
                lines.append(f"| {label} | {row['batch']} | {row['threads']} | {r} | | |")
    lines.append("")
    s = res.get("sgemm")
    if s:
        lines.append(f"Raw `cblas_sgemm` ({s['openblas_config']}; kernel {s['openblas_corename']}), GFLOP/s:")
        lines.append("")
        lines.append("| threads | " + f"{SQUARE}³, OpenBLAS threads | model's conv shapes, OpenBLAS threads | "
                     "model's conv shapes, 1-thread callers (emote's way) | emote best | emote / conv-shape sgemm | "
                     "emote / 1024³ sgemm |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|")
        for t, e in sorted(res["efficiency"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {t} | {fmt(e['sgemm_square'])} | {fmt(e['sgemm_model_openblas'])} | "
                         f"{fmt(e['sgemm_model_workers'])} | {fmt(e['emote_gflops'])} (batch {e['emote_batch']}) | "
                         f"{e['fraction_of_model_sgemm']:.0%} | {e['fraction_of_square_sgemm']:.0%} |")
        lines.append("")
    alt = res.get("sgemm_coretype")
    if alt:
        lines.append(f"With OPENBLAS_CORETYPE={res['coretype']} (kernel {alt['openblas_corename']}): "
                     + ", ".join(f"{r['set']}/{r['mode']} {r['threads']}t {fmt(r['gflops'])}" for r in alt["results"])
                     + " GFLOP/s.")
        lines.append("")
    pc = res.get("process")
    if pc:
        lines.append("One process per image (start, load model, classify one image, exit), median wall time:")
        lines.append("")
        for key, value in pc.items():
            if isinstance(value, dict):
                lines.append(f"- `{value['command']}`: {fmt(value['median_ms'], 2)} ms "
                             f"(min {fmt(value['min_ms'], 2)}, {value['runs']} runs, {value['method']})")
            else:
                lines.append(f"- {key}: {value}")
        lines.append("")
    mem = res.get("memory")
    if mem:
        for key, value in mem.items():
            if isinstance(value, dict):
                lines.append(f"Peak memory: `{value['command']}` on {RSS_IMAGES} random "
                             f"{m['input'][1]}x{m['input'][2]} PNGs: max RSS {value['max_rss_kib'] / 1024:.1f} MiB "
                             f"({value['method']}).")
            else:
                lines.append(f"Peak memory ({key}): {value}")
        lines.append("")
    c = res["correctness"]
    lines.append(f"Correctness on {c['count']} random inputs: max |p_emote - p_torch| = {c['max_diff_emote_torch']:.2e} "
                 f"(tolerance {TOLERANCE:g}); emote batch {c['count']} x {c['threads']} threads vs one image at a time: "
                 f"{'bitwise identical' if c['bitwise_batch_invariant'] else 'max diff %.2e' % c['max_diff_batch_vs_single']}"
                 + (f"; max |p_ort - p_torch| = {c['max_diff_ort_torch']:.2e}" if "max_diff_ort_torch" in c else "")
                 + ".")
    return "\n".join(lines)


def efficiency(res):
    """Engine GFLOP/s (2 * MACs * images/s) against sgemm at the same thread count."""
    macs, out, by_threads = res["model"]["macs"], {}, {}
    for r in res["sgemm"]["results"]:
        by_threads.setdefault(r["threads"], {})[f"{r['set']}/{r['mode']}"] = r["gflops"]
    for t, s in by_threads.items():
        rows = [row for row in res["throughput"] if row["threads"] == t]
        if not rows:
            continue
        best = max(rows, key=lambda row: row["emote"]["images_per_s"])
        gflops = 2 * macs * best["emote"]["images_per_s"] / 1e9
        out[str(t)] = {"emote_gflops": gflops, "emote_batch": best["batch"], "sgemm_square": s.get("square/openblas"),
                       "sgemm_model_openblas": s.get("model/openblas"), "sgemm_model_workers": s.get("model/workers"),
                       "fraction_of_model_sgemm": gflops / s["model/workers"],
                       "fraction_of_square_sgemm": gflops / s["square/openblas"]}
    return out


# ---- main -------------------------------------------------------------------------------------

def pick_coretype(requested, corename, flags):
    if requested == "none":
        return None
    if requested != "auto":
        return requested
    if corename not in GENERIC_CORES:  # e.g. the CLI's own choice (src/cli/blas_kernel.c) already fixed it
        return None
    return "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None


class Context:
    """What every step shares: options, harness paths, the reference model and the inputs."""

    def __init__(self, args, harness, info, model, spec):
        self.args, self.harness, self.info, self.model, self.spec = args, harness, info, model, spec
        self.count = max(max(args.batches), 8)
        self.inputs = random_inputs(spec, self.count)
        self.inputs_path = os.path.join(BENCH_DIR, "inputs.f32")
        self.inputs.tofile(self.inputs_path)
        with torch.inference_mode():
            self.p_torch = model(torch.from_numpy(self.inputs)).numpy()
        self.onnx_path = os.path.join(BENCH_DIR, "emote.onnx")
        self.ort_cmd = ["node", os.path.join(TOOLS, "bench_ort.mjs"), ORT_DIR]
        self.chw = [str(spec[k]) for k in ("channels", "height", "width")]

    def engine(self, *words):
        return [self.harness["bench_engine"], words[0], self.args.model, *words[1:]]


def check_correctness(ctx):
    """emote's probabilities against PyTorch's on the shared inputs; Failure if they differ."""
    probs_path = os.path.join(BENCH_DIR, "probs_emote.f32")
    check = run_json(ctx.engine("check", ctx.inputs_path, str(ctx.count), str(max(ctx.args.threads)), probs_path))
    p_emote = np.fromfile(probs_path, dtype=np.float32).reshape(ctx.count, -1)
    diff = float(np.abs(p_emote - ctx.p_torch).max())
    log(f"emote vs PyTorch on {ctx.count} random inputs: max |dp| = {diff:.3g}")
    if not diff <= TOLERANCE:
        raise Failure(f"emote's probabilities differ from PyTorch's by {diff:.3g} (> {TOLERANCE:g}); "
                      "not benchmarking a wrong engine")
    return dict(check, max_diff_emote_torch=diff, tolerance=TOLERANCE)


def measure_sgemm(ctx, coretype):
    """Raw sgemm with emote's kernel, and with OPENBLAS_CORETYPE=coretype if given."""
    shapes = conv_gemm_shapes(ctx.model, ctx.spec)
    cmd = [ctx.harness["bench_sgemm"], str(min(ctx.args.seconds / 3, 1.0)), ",".join(map(str, ctx.args.threads)),
           str(SQUARE)] + [f"{m},{n},{k}" for m, n, k in shapes]
    log("timing cblas_sgemm")
    result = dict(run_json(cmd), conv_shapes=shapes, conv_macs=sum(m * n * k for m, n, k in shapes))
    alt = run_json(cmd, env=env_with(OPENBLAS_CORETYPE=coretype)) if coretype else None
    return result, alt


def measure_bound(ctx):
    """The speed limit of an im2col + OpenBLAS engine: for each (batch, threads), cblas_sgemm alone on
    every conv's GEMM with the batch's columns (N = pixels x images per thread), `threads` callers at
    once (or one caller with OpenBLAS threads, whichever is faster), as images/s."""
    shapes = conv_gemm_shapes(ctx.model, ctx.spec)
    macs = sum(m * n * k for m, n, k in shapes)
    bound = {}
    for batch in ctx.args.batches:
        for threads in ctx.args.threads:
            per = -(-batch // threads)
            cmd = [ctx.harness["bench_sgemm"], str(min(ctx.args.seconds / 6, 0.5)), str(threads), "64"] + \
                  [f"{m},{n * per},{k}" for m, n, k in shapes]
            log(f"GEMM-only bound, batch {batch}, {threads} thread(s)")
            r = run_json(cmd)
            gflops = max(x["gflops"] for x in r["results"] if x["set"] == "model")
            bound[f"{batch}/{threads}"] = {"gflops": gflops, "images_per_s": gflops * 1e9 / (2 * macs),
                                           "images_per_thread": per}
    return bound


def setup_ort(ctx):
    """Installs ONNX Runtime, exports the model and checks its answers; Unavailable if any step fails."""
    if ctx.args.no_ort:
        raise Unavailable("skipped (--no-ort)")
    version = ensure_ort()
    try:
        export_onnx(ctx.args.model, ctx.onnx_path)
    except Exception as e:  # the exporter raises many kinds
        raise Unavailable(f"ONNX export (tools/export_onnx.py) failed: {e}")
    probs_path = os.path.join(BENCH_DIR, "probs_ort.f32")
    try:
        run_json(ctx.ort_cmd + ["check", ctx.onnx_path, ctx.inputs_path, *ctx.chw, str(ctx.count), "1", probs_path])
    except Failure as e:
        raise Unavailable(str(e).splitlines()[-1])
    p_ort = np.fromfile(probs_path, dtype=np.float32).reshape(ctx.count, -1)
    return version, float(np.abs(p_ort - ctx.p_torch).max())


def measure_throughput(ctx, coretype, ort_version, ort_reason):
    """Every (batch, threads), each engine back to back so they see the same machine."""
    labels = {"emote": f"emote (OpenBLAS kernel {ctx.info['openblas_corename']})"}
    if coretype:
        labels["emote_coretype"] = f"emote, OPENBLAS_CORETYPE={coretype}"
    labels["torch"] = f"PyTorch {torch.__version__.split('+')[0]}"
    labels["ort"] = f"ONNX Runtime {ort_version or ''}".strip()
    torch_models = {"contiguous": ctx.model,
                    "channels_last": copy.deepcopy(ctx.model).to(memory_format=torch.channels_last)}
    rows = []
    for batch in ctx.args.batches:
        for threads in ctx.args.threads:
            log(f"batch {batch}, {threads} thread(s)")
            row = {"batch": batch, "threads": threads}
            timing = [str(batch), str(threads), str(ctx.args.seconds)]
            row["emote"] = run_json(ctx.engine("time", ctx.inputs_path, *timing))
            if coretype:
                row["emote_coretype"] = run_json(ctx.engine("time", ctx.inputs_path, *timing),
                                                 env=env_with(OPENBLAS_CORETYPE=coretype))
            row["torch"] = bench_torch(torch_models, ctx.inputs, batch, threads, ctx.args.seconds)
            row["labels"] = dict(labels, torch=f"{labels['torch']} ({row['torch']['memory_format']})")
            row["ort"] = ort_reason
            if not ort_reason:
                try:
                    row["ort"] = run_json(ctx.ort_cmd + ["time", ctx.onnx_path, ctx.inputs_path, *ctx.chw, *timing])
                except Failure as e:
                    row["ort"] = "unavailable: " + str(e).splitlines()[-1]
            rows.append(row)
    return rows


def main(argv=None):
    args = parse_args(argv)
    cc = os.environ.get("CC", "cc")
    command = "/usr/bin/python3 tools/bench.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    res = {"command": command.strip(), "machine": machine_info(cc), "settings": {
        "threads": args.threads, "batches": args.batches, "seconds": args.seconds, "warmup_seconds": WARMUP_SECONDS,
        "min_calls": MIN_CALLS, "process_runs": args.process_runs}}
    os.makedirs(BENCH_DIR, exist_ok=True)
    try:
        harness = build_harnesses(cc)
        info = run_json([harness["bench_engine"], "info", args.model])
        model, config, spec = load_reference(args.model)
        res["model"] = dict(info, path=shown([os.path.abspath(args.model)]), config=config)
        ctx = Context(args, harness, info, model, spec)
        res["correctness"] = check_correctness(ctx)

        coretype = pick_coretype(args.coretype, info["openblas_corename"], cpu_info()[1])
        if coretype:
            log(f"emote runs OpenBLAS kernel {info['openblas_corename']}; also timing OPENBLAS_CORETYPE={coretype}")
        res["coretype"] = coretype
        res["sgemm"], res["sgemm_coretype"] = measure_sgemm(ctx, coretype)

        ort_version, ort_reason = None, None
        try:
            ort_version, res["correctness"]["max_diff_ort_torch"] = setup_ort(ctx)
        except Unavailable as e:
            ort_reason = f"unavailable: {e}"
            log(f"ONNX Runtime {ort_reason}")
        res["onnxruntime"] = {"version": ort_version, "status": ort_reason or "ok"}

        res["throughput"] = measure_throughput(ctx, coretype, ort_version, ort_reason)
        res["efficiency"] = efficiency(res)
        res["bound"] = measure_bound(ctx)
        res["process"], res["memory"] = process_and_memory(args, spec)
    except Failure as e:
        log(f"FAILED: {e}")
        res["error"] = str(e)
        write_results(args.out, res)
        return 1

    res["machine"]["loadavg_end"] = os.getloadavg()
    write_results(args.out, res)
    print_report(res, args.out)
    return 0


def shown(cmd, names=None):
    """cmd as a user would type it in the repository root."""
    def word(a):
        if names and a in names:
            return names[a]
        if os.path.isabs(a) and os.path.abspath(a).startswith(ROOT + os.sep):
            rel = os.path.relpath(a, ROOT)
            return rel if os.sep in rel else "./" + rel
        return a
    return shlex.join(word(a) for a in cmd)


def process_and_memory(args, spec):
    process, memory = {}, {}
    emote = os.path.abspath(args.emote)
    if not os.access(emote, os.X_OK):
        reason = f"unavailable: {shown([emote])} not built (run `make all`)"
        return {"emote": reason}, {"emote": reason}
    runs = [("built-in model", [emote, "-f", "tsv", SAMPLE]),
            ("-m FILE", [emote, "-f", "tsv", "-m", os.path.abspath(args.model), SAMPLE])]
    log("timing one process per image")
    try:
        process["spawn baseline"] = dict(process_cost(["/bin/true"], args.process_runs, want_output=False),
                                         command="/bin/true")
    except Unavailable as e:
        process["spawn baseline"] = f"unavailable: {e}"
    builtin_ok = True
    for key, cmd in runs:
        try:
            process[key] = dict(process_cost(cmd, args.process_runs), command=shown(cmd))
        except Unavailable as e:
            process[key] = f"unavailable: {e}"
            builtin_ok = builtin_ok and key != "built-in model"
    log(f"peak memory over {RSS_IMAGES} images")
    with tempfile.TemporaryDirectory(prefix="emote-bench-") as d:
        write_random_pngs(d, spec, RSS_IMAGES)
        cmds = [("-m FILE", [emote, "-b", "32", "-f", "tsv", "-m", os.path.abspath(args.model), d])]
        if builtin_ok:
            cmds.insert(0, ("built-in model", [emote, "-b", "32", "-f", "tsv", d]))
        for key, cmd in cmds:
            try:
                memory[key] = dict(peak_rss(cmd), command=shown(cmd, {d: "DIR"}))
            except Unavailable as e:
                memory[key] = f"unavailable: {e}"
    return process, memory


def write_results(path, res):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")


def print_report(res, out):
    m = res["machine"]
    print(f"## emote benchmark ({m['date_utc']})")
    print()
    print(f"Command: `{res['command']}`  ")
    print(f"Machine: {m['cpu_model']}, {m['nproc']} CPUs ({', '.join(m['simd'])}), Linux {m['kernel']}; "
          f"load average {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end  ")
    print(f"Software: {m['compiler']}; {res['sgemm']['openblas_config']}; PyTorch {m['torch']}; "
          f"ONNX Runtime (onnxruntime-node) {res['onnxruntime']['version'] or res['onnxruntime']['status']}; "
          f"Python {m['python']}")
    print()
    print(markdown_tables(res))
    print()
    print(f"Raw numbers: {os.path.relpath(os.path.abspath(out), ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
