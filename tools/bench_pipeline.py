#!/usr/bin/python3
"""`make bench-pipeline`: end-to-end files/s of `emote -f tsv` over a folder of crops against
the engine alone at the same batch and threads, with and without slow file opens; peak RSS
with many paths streamed through `emote -`.

    /usr/bin/python3 tools/bench_pipeline.py [--data DIR] [--batch 32] [--threads N] [--rounds 3]
        [--latency-ms 5] [--rss-paths 10000,1000000] [--rss-model FILE] [--quick] [--out FILE.json]

Needs `make all` and build/bench/bench_engine, build/bench/slow_open.so (the Makefile builds
them). Each round runs, one after the other so they share the machine's state:
  engine     build/bench/bench_engine time: emote_classify on one batch of random
             preprocessed inputs, called until --seconds have passed (as in `make bench`)
  loop       ./emote -f tsv -b B -j T --readers 0 DIR   (reading between forward passes)
  pipeline   ./emote -f tsv -b B -j T DIR               (default --readers)
and both emote runs again with --latency-ms added to every file open under DIR
(LD_PRELOAD=build/bench/slow_open.so, tools/slow_open.c). The report gives each figure's
median over the rounds (and its range), files/s over engine images/s, and each slow figure
over the same mode's figure without latency.

Peak RSS (`/usr/bin/time -v`, maximum resident set size): `./emote -q -f tsv -m RSS_MODEL -`
fed each --rss-paths count of paths, which repeat the first 8 files of DIR; then the default
model with the smallest count. --rss-model defaults to the small test fixture model so that a
million paths take a minute, not the better part of an hour: the pipeline's memory does not
depend on the model's compute, and RSS at two counts 100x apart shows whether it grows.

Prints machine info and Markdown tables with the commands; writes every raw number to --out
(default build/bench/pipeline.json). Exit status: 0 done, 1 a failed run, 2 usage.
"""
import argparse
import array
import datetime
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "build", "bench")
ENGINE = os.path.join(BENCH_DIR, "bench_engine")
SHIM = os.path.join(BENCH_DIR, "slow_open.so")
EMOTE = os.path.join(ROOT, "emote")
MODEL = os.path.join(ROOT, "models", "emote-fer2013.safetensors")
SMALL_MODEL = os.path.join(ROOT, "tests", "fixtures", "emotenet_small.safetensors")
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "fer2013", "val"))
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".pnm")
RSS_FILES = 8


class Failure(Exception):
    pass


def log(msg):
    print(f"bench-pipeline: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ncpu = len(os.sched_getaffinity(0))
    p.add_argument("--data", default=DATA, help="folder of crops (default: %(default)s)")
    p.add_argument("--emote", default=EMOTE, help="emote binary (default: ./emote)")
    p.add_argument("--model", default=MODEL, help="model file, as built into ./emote (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="-b (default: 32, emote's default)")
    p.add_argument("--threads", type=int, default=ncpu, help=f"-j (default: {ncpu}, one per CPU)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every figure (default: 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds of the engine per round (default: 3)")
    p.add_argument("--latency-ms", type=int, default=5, help="added per file open (default: 5)")
    p.add_argument("--rss-paths", default="10000,1000000", help="path counts for peak RSS (default: %(default)s)")
    p.add_argument("--rss-model", default=SMALL_MODEL, help="model for the RSS runs (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, 0.3 s, RSS over 2000,20000 paths")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "pipeline.json"), help="raw results (JSON)")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.seconds, a.rss_paths = 1, 0.3, "2000,20000"
    try:
        a.rss_paths = sorted(int(n) for n in a.rss_paths.split(","))
    except ValueError:
        p.error("--rss-paths: comma-separated integers")
    if min(a.batch, a.threads, a.rounds, *a.rss_paths) < 1 or a.seconds <= 0 or a.latency_ms < 0:
        p.error("--batch, --threads, --rounds, --rss-paths and --seconds must be positive")
    for path in (a.emote, a.model, a.rss_model, ENGINE, SHIM):
        if not os.path.exists(path):
            p.error(f"{path} is missing (run `make bench-pipeline`)")
    if not os.path.isdir(a.data):
        p.error(f"{a.data}: no such folder (pass --data DIR)")
    a.data = os.path.abspath(a.data)
    return a


def image_files(folder):
    found = []
    for d, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(d, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXT)]
    return found


def shown(cmd, env=None, names=None):
    text = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    words = [os.path.relpath(w, ROOT) if os.path.isabs(w) and w.startswith(ROOT + "/") else w for w in cmd]
    if "/" not in words[0]:
        words[0] = "./" + words[0]
    for old, new in (names or {}).items():
        words = [w.replace(old, new) for w in words]
    return (text + " " if text else "") + shlex.join(words)


def engine_images_per_s(a, inputs):
    cmd = [ENGINE, "time", a.model, inputs, str(a.batch), str(a.threads), str(a.seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"{shlex.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])["images_per_s"]


def emote_files_per_s(a, readers, slow, want_records):
    """Wall-clock files/s of one `emote -f tsv` over a.data; checks it wrote every record."""
    cmd = [a.emote, "-f", "tsv", "--no-header", "-b", str(a.batch), "-j", str(a.threads)]
    cmd += (["--readers", "0"] if readers == 0 else []) + [a.data]
    env = dict(os.environ)
    if slow:
        env.update(LD_PRELOAD=SHIM, SLOW_OPEN_PREFIX=a.data + "/", SLOW_OPEN_MS=str(a.latency_ms))
    with tempfile.TemporaryFile() as out:
        t0 = os.times().elapsed
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
        seconds = os.times().elapsed - t0
        out.seek(0)
        records = sum(1 for _ in out)
    if r.returncode != 0 or records != want_records:
        raise Failure(f"{shlex.join(cmd)}: exit {r.returncode}, {records} records of {want_records}\n"
                      f"{r.stderr.decode(errors='replace')}")
    return want_records / seconds


def peak_rss_kib(cmd, stdin_path):
    """Runs cmd under /usr/bin/time -v with stdin from stdin_path; returns (max RSS KiB, records)."""
    with open(stdin_path, "rb") as inp, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdin=inp, stdout=subprocess.PIPE, stderr=err)
        records = sum(chunk.count(b"\n") for chunk in iter(lambda: p.stdout.read(1 << 20), b""))
        rc = p.wait()
        err.seek(0)
        text = err.read().decode(errors="replace")
    if rc != 0:
        raise Failure(f"{shlex.join(cmd)}: exit {rc}\n{text[-2000:]}")
    for line in text.splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1]), records
    raise Failure(f"/usr/bin/time -v printed no maximum resident set size:\n{text[-2000:]}")


def measure_memory(a, files):
    rows = []
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as d:
        for model, counts in ((a.rss_model, a.rss_paths), (a.model, a.rss_paths[:1])):
            for n in counts:
                paths = os.path.join(d, f"paths-{n}.txt")
                with open(paths, "w") as f:
                    for i in range(n):
                        f.write(files[i % RSS_FILES] + "\n")
                cmd = [a.emote, "-q", "-f", "tsv", "--no-header", "-m", model, "-"]
                log(f"peak RSS: {n} paths, {os.path.basename(model)}")
                rss, records = peak_rss_kib(cmd, paths)
                if records != n:
                    raise Failure(f"{shlex.join(cmd)}: {records} records for {n} paths")
                rows.append({"paths": n, "model": os.path.relpath(model, ROOT), "max_rss_kib": rss,
                             "command": f"/usr/bin/time -v {shown(cmd)} < paths-{n}.txt"})
    return rows


def median_range(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def training_running():
    r = subprocess.run(["pgrep", "-f", "tools/train.py"], capture_output=True, text=True)
    return bool(r.stdout.strip())


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
    except OSError:
        pass
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "loadavg_start": os.getloadavg(),
            "training_running_start": training_running()}


def report(res):
    m, a = res["machine"], res["args"]
    t = res["throughput"]
    eng = t["engine"]["median"]
    lines = [f"Machine: {m['cpu_model']}, {m['nproc']} CPUs, {m['date_utc']}; load average "
             f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; a training run "
             f"was {'running' if m['training_running_start'] or m['training_running_end'] else 'not running'}.",
             f"{res['files']} files in {a['data']}, -b {a['batch']} -j {a['threads']}, {a['rounds']} rounds "
             f"(median, range), {a['latency_ms']} ms added per open with slow_open.so.", "",
             "| figure | per second | of engine | of no-latency | command |", "|---|---|---|---|---|"]
    for key, label in (("engine", "engine only, images"), ("loop", "--readers 0, files"),
                       ("pipeline", "default readers, files"), ("loop_slow", f"--readers 0 + {a['latency_ms']} ms/open"),
                       ("pipeline_slow", f"default readers + {a['latency_ms']} ms/open")):
        v = t[key]
        of_engine = f"{v['median'] / eng:.2f}" if key != "engine" else ""
        base = key.removesuffix("_slow")
        of_fast = f"{v['median'] / t[base]['median']:.2f}" if key.endswith("_slow") else ""
        lines.append(f"| {label} | {v['median']:.0f} ({v['min']:.0f}-{v['max']:.0f}) | {of_engine} | {of_fast} "
                     f"| `{res['commands'][key]}` |")
    lines += ["", "| paths | model | max RSS | command |", "|---|---|---|---|"]
    for r in res["memory"]:
        lines.append(f"| {r['paths']} | {r['model']} | {r['max_rss_kib'] / 1024:.1f} MiB | `{r['command']}` |")
    return "\n".join(lines)


def main(argv=None):
    a = parse_args(argv)
    os.makedirs(BENCH_DIR, exist_ok=True)
    files = image_files(a.data)
    if len(files) < RSS_FILES:
        raise Failure(f"{a.data}: fewer than {RSS_FILES} images")
    res = {"machine": machine(), "args": {k: v for k, v in vars(a).items()}, "files": len(files)}
    info = json.loads(subprocess.run([ENGINE, "info", a.model], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])
    c, h, w = info["input"]
    inputs = os.path.join(BENCH_DIR, "pipeline-inputs.f32")
    rng = random.Random(0)
    array.array("f", (rng.gauss(0.0, 1.0) for _ in range(a.batch * c * h * w))).tofile(open(inputs, "wb"))
    for path in files:  # the first round should not be the one that reads from disk
        with open(path, "rb") as f:
            f.read()
    runs = {k: [] for k in ("engine", "loop", "pipeline", "loop_slow", "pipeline_slow")}
    for i in range(a.rounds):
        log(f"round {i + 1}/{a.rounds}")
        runs["engine"].append(engine_images_per_s(a, inputs))
        for key, readers, slow in (("loop", 0, False), ("pipeline", None, False), ("loop_slow", 0, True),
                                   ("pipeline_slow", None, True)):
            runs[key].append(emote_files_per_s(a, readers, slow, len(files)))
    res["throughput"] = {k: median_range(v) for k, v in runs.items()}
    base = [a.emote, "-f", "tsv", "--no-header", "-b", str(a.batch), "-j", str(a.threads)]
    slow_env = {"LD_PRELOAD": "build/bench/slow_open.so", "SLOW_OPEN_PREFIX": "VAL/",
                "SLOW_OPEN_MS": str(a.latency_ms)}
    names = {a.data: "VAL"}
    res["commands"] = {
        "engine": shown([ENGINE, "time", a.model, "INPUTS.f32", str(a.batch), str(a.threads), str(a.seconds)]),
        "loop": shown(base + ["--readers", "0", a.data], names=names),
        "pipeline": shown(base + [a.data], names=names),
        "loop_slow": shown(base + ["--readers", "0", a.data], slow_env, names),
        "pipeline_slow": shown(base + [a.data], slow_env, names),
    }
    res["memory"] = measure_memory(a, files)
    res["machine"].update(loadavg_end=os.getloadavg(), training_running_end=training_running())
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(report(res))
    log(f"raw numbers in {os.path.relpath(a.out, ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, subprocess.CalledProcessError) as e:
        log(f"error: {e}")
        sys.exit(1)
