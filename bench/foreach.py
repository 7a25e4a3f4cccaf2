"""Batch (foreach) benchmark: pipeline_tasks vs a plain doit dodo.py of the same shape, side by side.

    python bench/foreach.py                  # 1,000 and 10,000 items
    python bench/foreach.py --sizes 1000     # quicker

Shape: N input files; three item-wise stages (a over the files, b over a, c over b: one doit
sub-task per item each, file deps, targets) and one gather over every item of c. Each task writes
one small file. The plain dodo declares the same sub-tasks, file deps and targets. Measured as whole
commands (subprocesses), CPU time (user + system; see bench/engine.py for why), best of --repeat:
first run, no-op rerun, `status` and `plan` (vs `doit list --all --status`), `report` (its CPU and the
HTML's size: every item is a row of its stage's item table), adding one input
file to the N (the run after it, and how many tasks executed: 3 items + the gather), and the peak
RSS of a no-op run. Printed as a Markdown table, ratios against plain doit.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE_MODULE = '''
def write(output_dir):
    with open(output_dir + "/out.txt", "w") as fh:
        fh.write("x")
'''

PIPELINE = '''pipeline: {name: batch-bench, version: "1"}
stages:
  - id: a
    type: custom
    foreach: {glob: "inputs/*.txt"}
    config: {callable: "bench_stage:write", inputs: ["{item.path}"], output_dir: "out/a/{item}"}
  - id: b
    type: custom
    foreach: a
    config: {callable: "bench_stage:write", output_dir: "out/b/{item}"}
  - id: c
    type: custom
    foreach: b
    config: {callable: "bench_stage:write", output_dir: "out/c/{item}"}
  - id: g
    type: custom
    depends_on: [c]
    config: {callable: "bench_stage:write", output_dir: out/g}
'''

PLAIN_DODO = '''
import glob
import os

DOIT_CONFIG = {"dep_file": ".doit-plain.sqlite", "backend": "sqlite3", "verbosity": 2}
ITEMS = sorted(os.path.basename(p)[:-4] for p in glob.glob("inputs/*.txt"))


def write(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("x")


def _stage(name, upstream):
    for key in ITEMS:
        target = f"plain/{name}/{key}/out.txt"
        dep = f"inputs/{key}.txt" if upstream is None else f"plain/{upstream}/{key}/out.txt"
        yield {"name": key, "actions": [(write, [target])], "file_dep": [dep], "targets": [target]}


def task_a():
    yield from _stage("a", None)


def task_b():
    yield from _stage("b", "a")


def task_c():
    yield from _stage("c", "b")


def task_g():
    return {"actions": [(write, ["plain/g/out.txt"])], "file_dep": [f"plain/c/{k}/out.txt" for k in ITEMS],
            "targets": ["plain/g/out.txt"]}
'''

# runs a command and prints its CPU seconds, its peak RSS (KiB) and its exit code
MEASURE = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, "
           "stderr=subprocess.PIPE, text=True); r = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print(r.ru_utime + r.ru_stime, r.ru_maxrss, p.returncode); sys.stderr.write(p.stderr[-2000:]); "
           "sys.stdout.write(p.stdout)")


def measure(cmd: list[str], cwd: Path, env: dict) -> tuple[float, int, str]:
    """(CPU seconds, peak RSS in MiB, stdout) of one command run in its own measuring process."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    head, _, out = proc.stdout.partition("\n")
    cpu, rss, code = head.split()
    if code != "0":
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-2000:]}")
    return float(cpu), int(rss) // 1024, out


def new_workdir(n: int) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-foreach-{n}-"))
    (workdir / "bench_stage.py").write_text(STAGE_MODULE)
    (workdir / "dodo.py").write_text(PLAIN_DODO)
    (workdir / "p.yaml").write_text(PIPELINE)
    inputs = workdir / "inputs"
    inputs.mkdir()
    for i in range(n):
        (inputs / f"i{i:06d}.txt").write_text(str(i))
    return workdir


def bench_size(n: int, repeat: int, env: dict) -> dict[str, tuple[float, float]]:
    ours = [sys.executable, "-m", "pipeline_tasks"]
    plain = [sys.executable, "-m", "doit"]
    runs: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    executed: set[str] = set()
    for _ in range(repeat):
        workdir = new_workdir(n)
        env = dict(env, PIPELINE_TASKS_CACHE=str(workdir / ".spec-cache"))
        note("first plain", measure(plain, workdir, env)[0])
        note("first ours", measure(ours + ["run", "p.yaml", "--no-progress"], workdir, env)[0])
        cpu, rss, _ = measure(ours + ["run", "p.yaml", "--no-progress"], workdir, env)
        note("noop ours", cpu)
        note("rss ours", rss)
        cpu, rss, _ = measure(plain, workdir, env)
        note("noop plain", cpu)
        note("rss plain", rss)
        note("status plain", measure(plain + ["list", "--all", "--status"], workdir, env)[0])
        note("status ours", measure(ours + ["status", "p.yaml"], workdir, env)[0])
        note("plan ours", measure(ours + ["plan", "p.yaml"], workdir, env)[0])
        note("report ours", measure(ours + ["report", "p.yaml", "-o", "report.html"], workdir, env)[0])
        note("report MiB", (workdir / "report.html").stat().st_size / 2 ** 20)
        (workdir / "inputs" / "new-item.txt").write_text("new")
        note("add one plain", measure(plain, workdir, env)[0])
        cpu, _, out = measure(ours + ["run", "p.yaml", "--no-progress"], workdir, env)
        note("add one ours", cpu)
        executed.add(" ".join(sorted(line[3:] for line in out.splitlines() if line.startswith(".  "))))
        shutil.rmtree(workdir, ignore_errors=True)
    results = {}
    for metric in ("first", "noop", "add one", "rss"):
        results[metric] = (min(runs[f"{metric} ours"]), min(runs[f"{metric} plain"]))
    for metric in ("status", "plan"):
        results[metric] = (min(runs[f"{metric} ours"]), min(runs["status plain"]))
    results["executed after adding one"] = executed
    results["report"] = (min(runs["report ours"]), max(runs["report MiB"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = "."
    env.pop("PIPELINE_TASKS_NO_CACHE", None)
    print(f"# foreach benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]})\n")
    print(f"N items x 3 item-wise stages + 1 gather; CPU seconds of each whole command, best of {args.repeat}; "
          "status and plan against `doit list --all --status`; rss: peak MiB of a no-op run\n")
    print("| items | measure | pipeline_tasks | plain doit | ratio |")
    print("|---:|---|---:|---:|---:|")
    rss: dict[int, int] = {}
    for n in args.sizes:
        results = bench_size(n, args.repeat, env)
        executed = results.pop("executed after adding one")
        report_cpu, report_mib = results.pop("report")
        for metric, (ours, plain) in results.items():
            unit = " MiB" if metric == "rss" else " s"
            fmt = "{:.0f}" if metric == "rss" else "{:.2f}"
            print(f"| {n} | {metric} | {fmt.format(ours)}{unit} | {fmt.format(plain)}{unit} | {ours / plain:.2f}x |",
                  flush=True)
        rss[n] = results["rss"][0]
        noop = results["noop"][0]
        print(f"| {n} | add one / no-op (ours) | {results['add one'][0] / noop:.2f}x | | |")
        print(f"| {n} | ran after adding one | {' / '.join(sorted(executed))} | | |", flush=True)
        print(f"| {n} | `report` (ours): its HTML | {report_cpu:.2f} s, {report_mib:.1f} MiB | | |", flush=True)
    if len(rss) > 1:
        (small, a), (large, b) = sorted(rss.items())[0], sorted(rss.items())[-1]
        print(f"\npeak RSS of a no-op run grows {b - a} MiB from {small} to {large} items "
              f"({1024 * (b - a) / (large - small):.1f} KiB per item)")


if __name__ == "__main__":
    main()
