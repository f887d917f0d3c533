#!/usr/bin/env python3
"""Start-up cost of ./emote: one process per run (posix_spawn, output to /dev/null), wall time
and the child's CPU time (wait4's rusage), median and min over N runs. Several commands are
timed interleaved (A B A B ...) so that a loaded machine weighs on each alike.

  tools/bench_startup.py [-n 30] [--warmup 3] -- CMD1 [--- CMD2 ...]
  tools/bench_startup.py            # the defaults: a one-image classify, `emote info`, /bin/true
"""
import argparse, os, shlex, statistics, sys, time

DEFAULT = [["./emote", "-f", "tsv", "models/samples/astronaut-collins.png"], ["./emote", "info"], ["/bin/true"]]


def run_once(cmd, devnull):
    t0 = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1),
                                                              (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.exit(f"bench_startup: `{shlex.join(cmd)}` exited {rc}")
    return wall * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3, ru.ru_stime * 1e3, ru.ru_minflt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="timed runs per command (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("cmds", nargs="*", help="-- CMD [--- CMD ...]")
    a = ap.parse_args()
    cmds, cur = [], []
    for w in a.cmds:
        if w == "---":
            cmds.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        cmds.append(cur)
    cmds = cmds or DEFAULT
    devnull = os.open(os.devnull, os.O_WRONLY)
    res = [[] for _ in cmds]
    for _ in range(a.warmup):
        for c in cmds:
            run_once(c, devnull)
    for _ in range(a.n):
        for i, c in enumerate(cmds):
            res[i].append(run_once(c, devnull))
    print(f"# {a.n} runs each, interleaved; load average at the end: {os.getloadavg()[0]:.2f}")
    print("# wall median (min) ms | CPU (user+sys) median ms | sys median ms | minor faults median | command")
    for c, r in zip(cmds, res):
        w, cpu, sy, flt = zip(*r)
        print(f"{statistics.median(w):7.2f} ({min(w):6.2f}) | {statistics.median(cpu):7.2f} | "
              f"{statistics.median(sy):6.2f} | {statistics.median(flt):7.0f} | {shlex.join(c)}")


if __name__ == "__main__":
    main()
