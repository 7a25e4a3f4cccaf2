"""Engine benchmark: pipeline_tasks vs a plain doit dodo.py of the same shape, side by side.

    python bench/engine.py                 # 1,000 and 10,000 stages, parallel, durability
    python bench/engine.py --sizes 1000    # quicker

Each generated pipeline is a binary tree (stage i depends on stage (i-1)//2); each stage writes one
small file. Measured as whole commands (subprocesses), CPU time (user + system, see `timed`), each
best of --repeat runs:
first run, no-op rerun, status (`pipeline-tasks status` vs `doit list --status`). Then four
CPU-bound independent stages with -n 2 vs -n 1, and 1,000 stages with the durable backend vs
doit's plain sqlite3 backend. Results are printed as a Markdown table (ratios against plain doit).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE_MODULE = '''
def write(output_dir, stage_id):
    with open(output_dir + "/out.txt", "w") as fh:
        fh.write(stage_id)
'''

PLAIN_DODO = '''
import os
N = {n}
DOIT_CONFIG = {{"dep_file": ".doit-plain.sqlite", "backend": "sqlite3", "verbosity": 2}}

def write(path, name):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(name)

def task_stages():
    for i in range(N):
        target = f"plain/s{{i}}/out.txt"
        yield {{"basename": f"s{{i}}", "actions": [(write, [target, f"s{{i}}"])],
               "file_dep": [f"plain/s{{(i - 1) // 2}}/out.txt"] if i else [],
               "targets": [target]}}
'''


def write_pipeline(path: Path, n: int, callable_name: str = "bench_stage:write", args: str = "") -> None:
    lines = ["pipeline: {name: bench, version: '1'}", "stages:"]
    for i in range(n):
        dep = f"[s{(i - 1) // 2}]" if i else "[]"
        lines.append(f"  - id: s{i}\n    type: custom\n    depends_on: {dep}\n    config:\n"
                     f"      callable: \"{callable_name}\"\n      output_dir: out/s{i}{args}")
    path.write_text("\n".join(lines) + "\n")


def timed(cmd: list[str], cwd: Path, env: dict, cpu: bool = True) -> float:
    """CPU seconds (user + system) of the command and its children, or wall seconds.

    CPU time is the default: on a shared 2-core machine other processes make wall
    time swing 2x between identical runs, while the work a command does stays the same (the
    engine's work is CPU-bound; nothing here waits on fsync). Parallelism needs wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-2000:]}")
    if not cpu:
        return elapsed
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fresh(workdir: Path) -> None:
    for name in ("out", "plain", ".pipeline", ".doit-plain.sqlite"):
        target = workdir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def new_workdir(prefix: str, n: int, base: str | None = None) -> Path:
    """A fresh folder per repetition: deleting the previous run's files between runs makes this
    disk (ext4 mounted with `discard`) charge the next run with the deletions' system time."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (workdir / "bench_stage.py").write_text(STAGE_MODULE)
    (workdir / "dodo.py").write_text(PLAIN_DODO.format(n=n))
    write_pipeline(workdir / "p.yaml", n)
    return workdir


def bench_size(n: int, repeat: int, env: dict) -> dict[str, tuple[float, float]]:
    ours = [sys.executable, "-m", "pipeline_tasks"]
    plain = [sys.executable, "-m", "doit"]
    results: dict[str, tuple[float, float]] = {}
    best: dict[str, list[float]] = {k: [] for k in ("first ours", "first plain", "noop ours", "noop plain",
                                                    "status ours", "status plain")}
    workdirs = []
    for _ in range(repeat):
        workdir = new_workdir(f"bench-engine-{n}-", n)
        workdirs.append(workdir)
        # alternate the order so neither side always runs on a warmer cache
        best["first plain"].append(timed(plain, workdir, env))
        best["first ours"].append(timed(ours + ["run", "p.yaml", "--no-progress"], workdir, env))
        best["noop ours"].append(timed(ours + ["run", "p.yaml", "--no-progress"], workdir, env))
        best["noop plain"].append(timed(plain, workdir, env))
        best["status plain"].append(timed(plain + ["list", "--status"], workdir, env))
        best["status ours"].append(timed(ours + ["status", "p.yaml"], workdir, env))
    for metric in ("first", "noop", "status"):
        results[metric] = (min(best[f"{metric} ours"]), min(best[f"{metric} plain"]))
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


CPU_MODULE = '''
def burn(output_dir, args):
    total = 0
    for i in range(int(args["n"])):
        total += i * i % 7
    with open(output_dir + "/out.txt", "w") as fh:
        fh.write(str(total))
'''


def bench_parallel(env: dict, work: int, repeat: int = 1) -> tuple[float, float]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    (workdir / "bench_cpu.py").write_text(CPU_MODULE)
    lines = ["pipeline: {name: par, version: '1'}", "stages:"]
    for i in range(4):
        lines.append(f"  - id: w{i}\n    type: custom\n    config:\n      callable: \"bench_cpu:burn\"\n"
                     f"      args: {{n: {work}}}\n      output_dir: out/w{i}")
    (workdir / "p.yaml").write_text("\n".join(lines) + "\n")
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeat):
        for jobs in (1, 2):
            fresh(workdir)
            times[jobs].append(timed([sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "--no-progress",
                                      "-n", str(jobs)], workdir, env, cpu=False))
    shutil.rmtree(workdir, ignore_errors=True)
    return min(times[1]), min(times[2])


def bench_durability(env: dict, n: int, repeat: int) -> tuple[float, float]:
    """Median CPU time of a first run with the durable backend and with doit's sqlite3 backend,
    interleaved (A B B A ...). Run on tmpfs when there is one: on this ext4 disk the cost of creating
    the stages' files swings 3x between identical runs and drowns the backend's own cost (WAL commits
    go to the page cache on either file system; no fsync with synchronous=NORMAL)."""
    import statistics
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    durable, plain = [], []
    for i in range(repeat):
        order = ((["--no-durable"], plain), ([], durable))
        for variant, times in (order if i % 2 == 0 else order[::-1]):
            workdir = new_workdir("bench-durable-", n, base)
            times.append(timed([sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "--no-progress", *variant],
                               workdir, env))
            shutil.rmtree(workdir, ignore_errors=True)
    return statistics.median(durable), statistics.median(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-work", type=int, default=6_000_000)
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = "."
    print(f"# engine benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]})\n")
    print("CPU seconds (user + system) of each whole command, best of", args.repeat, "\n")
    print("| stages | measure | pipeline_tasks (s) | plain doit (s) | ratio |")
    print("|---:|---|---:|---:|---:|")
    for n in args.sizes:
        for metric, (ours, plain) in bench_size(n, args.repeat, env).items():
            print(f"| {n} | {metric} | {ours:.2f} | {plain:.2f} | {ours / plain:.2f}x |", flush=True)
    if not args.skip_parallel:
        one, two = bench_parallel(env, args.cpu_work, args.repeat)
        print(f"\nparallel, 4 CPU-bound stages, wall time: -n 1 {one:.2f} s, -n 2 {two:.2f} s, "
              f"speed-up {one / two:.2f}x "
              f"(load average before: {os.getloadavg()[0]:.1f})")
    durable, plain = bench_durability(env, 1000, max(args.repeat, 7))
    print(f"durability, 1000 stages first run on tmpfs, median CPU time: durable backend {durable:.2f} s, "
          f"plain sqlite3 {plain:.2f} s, cost {100 * (durable / plain - 1):+.1f}%")


if __name__ == "__main__":
    main()
