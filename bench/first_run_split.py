"""Where a first run's CPU time goes: pipeline_tasks against plain doit, phase by phase.

    TMPDIR=/dev/shm python bench/first_run_split.py --stages 10000 --repeat 3

Same generated pipelines as bench/engine.py (binary tree, each stage writes one small file). Each
command runs in a fresh process that wraps the main phases with `time.process_time` counters and
reports them (nested phases overlap: `run_stage` is inside doit's task execution). Three
variants, each best of --repeat by total:
- `ours`: `pipeline-tasks run p.yaml` on a cold spec (no spec cache);
- `ours, bare action`: the same, but every stage's action only writes the file and an empty
  manifest (what the runtime costs is the difference to `ours`);
- `plain`: `doit` on the plain dodo.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from engine import new_workdir  # noqa: E402

CHILD = r'''
import collections, inspect, json, os, sys, time
T0 = time.process_time()
acc = collections.Counter()

def wrap(owner, name, label):
    fn = getattr(owner, name)
    def timed(*a, **k):
        t = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            acc[label] += time.process_time() - t
    try:
        timed.__signature__ = inspect.signature(fn)
    except (TypeError, ValueError):
        pass
    setattr(owner, name, timed)
    return timed

import doit.dependency, doit.loader, doit.runner, doit.task
variant = sys.argv[1]
if variant == "plain":
    from doit.cmd_base import DodoTaskLoader
    from doit.doit_cmd import DoitMain
    wrap(doit.loader, "load_tasks", "load and create tasks")
    wrap(doit.runner.Runner, "execute_task", "execute actions")
else:
    from pipeline_tasks import cli
    from pipeline_tasks.engine import compile as comp
    from pipeline_tasks.engine import runtime
    from pipeline_tasks.engine import session as doit_app
    from pipeline_tasks.spec import loader as spec
    cli.load_pipeline = wrap(spec, "load_pipeline", "parse and validate spec")
    doit_app.compile_tasks = wrap(doit_app, "compile_tasks", "compile stages")
    doit_app.dict_to_task = wrap(doit.task, "dict_to_task", "create doit tasks")
    wrap(doit.runner.Runner, "execute_task", "execute actions")
    if variant == "bare":
        def bare(payload):
            os.makedirs(payload["output_dir"], exist_ok=True)
            with open(payload["output_dir"] + "/out.txt", "w") as fh:
                fh.write(payload["stage_id"])
            with open(payload["manifest"], "w") as fh:
                fh.write('{"files": []}')
            return {"_files": []}
        comp.run_stage = bare
    else:
        comp.run_stage = wrap(runtime, "run_stage", "  of which run_stage")
T1 = time.process_time()
acc["imports"] = T1 - T0
wrap(doit.runner.Runner, "select_task", "select (up-to-date checks)")
wrap(doit.runner.Runner, "process_task_result", "record results")
wrap(doit.runner.Runner, "finish", "finish (DB dump, reporter)")
try:
    if variant == "plain":
        DoitMain(DodoTaskLoader()).run([])
    else:
        cli.main(["run", "p.yaml", "--no-progress"])
except SystemExit:
    pass
acc["total"] = time.process_time() - T0
sys.stderr.write("PHASES " + json.dumps(acc) + "\n")
'''

VARIANTS = {"ours": "ours", "ours, bare action": "bare", "plain": "plain"}


def run_variant(workdir: Path, variant: str, env: dict) -> dict[str, float]:
    for name in ("out", "plain", ".pipeline", ".doit-plain.sqlite"):
        path = workdir / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, variant], cwd=workdir, env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("PHASES ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[len("PHASES "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = new_workdir(f"bench-split-{args.stages}-", args.stages)
    env = dict(os.environ, PYTHONPATH=str(workdir), PIPELINE_TASKS_NO_CACHE="1")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for label, variant in VARIANTS.items():
            phases = run_variant(workdir, variant, env)
            if label not in best or phases["total"] < best[label]["total"]:
                best[label] = phases
    shutil.rmtree(workdir, ignore_errors=True)
    rows = sorted({k for phases in best.values() for k in phases} - {"total"})
    rows.sort(key=lambda k: -max(p.get(k, 0) for p in best.values()))
    print(f"# first run of {args.stages} stages, CPU seconds by phase, best of {args.repeat} "
          f"({time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f})\n")
    print("| phase | " + " | ".join(best) + " |")
    print("|---|" + "---:|" * len(best))
    for row in ["total"] + rows:
        print(f"| {row} | " + " | ".join(f"{best[v].get(row, 0):.3f}" if row in best[v] else "" for v in best) + " |")
    per_stage = (best["ours"]["total"] - best["ours, bare action"]["total"]) / args.stages * 1e6
    print(f"\nruntime around each stage (ours minus bare action): {per_stage:.0f} µs a stage")


if __name__ == "__main__":
    main()
