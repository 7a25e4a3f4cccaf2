"""Where the runtime around each stage goes: `run_stage` called in a loop, with parts left out.

    TMPDIR=/dev/shm python bench/stage_runtime.py --stages 2000 --repeat 3

The pipeline of bench/engine.py (a binary tree of trivial `custom` stages) is loaded and compiled
once; then each variant runs every stage's action in order, in this process (no doit around it),
and reports CPU µs a stage, best of --repeat:
- `bare action`: writes the stage's file and an empty manifest, nothing else;
- `run_stage`: the real action; the difference to `bare action` is the runtime's cost;
- `run_stage without X`: one part replaced by nothing (resource measurement, events, the custom
  stage's executor, the scan of the output folder, the manifest and the upstream read): the
  difference to `run_stage` is what that part costs. The parts overlap a little (a manifest that
  is not written is not read), so they need not add up.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from engine import new_workdir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = new_workdir("bench-stage-runtime-", args.stages)
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    os.environ["PIPELINE_TASKS_NO_CACHE"] = "1"
    from pipeline_tasks.engine import manifest as mf
    from pipeline_tasks.engine import runtime, usage
    from pipeline_tasks.engine.compile import compile_tasks
    from pipeline_tasks.models import ExecutionStatus, StageResult
    from pipeline_tasks.spec.loader import load_pipeline
    from pipeline_tasks.state.events import EventBus
    from pipeline_tasks.state.paths import StatePaths

    pipeline = load_pipeline("p.yaml")
    paths = StatePaths(".pipeline/bench")
    paths.root.mkdir(parents=True, exist_ok=True)
    payloads = [task["actions"][0][1][0] for task in compile_tasks(pipeline, paths, "bench")]

    def bare(payload):
        os.makedirs(payload["output_dir"], exist_ok=True)
        with open(payload["output_dir"] + "/out.txt", "w") as fh:
            fh.write(payload["stage_id"])
        with open(payload["manifest"], "w") as fh:
            fh.write('{"files": []}')
        return {"_files": []}

    def execute_bare(payload, context, inputs):
        with open(payload["output_dir"] + "/out.txt", "w") as fh:
            fh.write(payload["stage_id"])
        return StageResult(stage_id=payload["stage_id"], status=ExecutionStatus.SUCCESS, outputs={}, metrics={})

    class NoMeasure:
        def __init__(self, *args, **kwargs):
            self.usage = usage.Usage()

        def __enter__(self):
            return self.usage

        def __exit__(self, *exc):
            return None

    variants = {
        "bare action": (bare, []),
        "run_stage": (runtime.run_stage, []),
        "run_stage without resource measurement": (runtime.run_stage, [(usage, "measure", NoMeasure)]),
        "run_stage without events": (runtime.run_stage, [(EventBus, "dispatch", lambda self, event: None)]),
        "run_stage with a bare executor": (runtime.run_stage, [(runtime, "_execute_once", execute_bare)]),
        "run_stage without the folder scan": (runtime.run_stage, [(runtime, "_produced_files", lambda p, m: [])]),
        "run_stage without manifest write and read": (runtime.run_stage, [
            (mf, "write", lambda path, manifest, fsync=False: [0, 0]), (runtime, "read_inputs", lambda p: {})]),
    }

    def once(action) -> float:
        shutil.rmtree("out", ignore_errors=True)
        for payload in payloads:            # a run's folder locks make every output folder first
            os.makedirs(payload["output_dir"], exist_ok=True)
        start = time.process_time()
        for payload in payloads:
            result = action(payload)
            if not isinstance(result, dict):
                raise SystemExit(f"{payload['stage_id']} failed: {result}")
        return (time.process_time() - start) / len(payloads) * 1e6

    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, (action, patches) in variants.items():
            with contextlib.ExitStack() as undo:
                for owner, attr, value in patches:
                    undo.callback(setattr, owner, attr, getattr(owner, attr))
                    setattr(owner, attr, value)
                best[name] = min(best.get(name, float("inf")), once(action))
    os.chdir("/")
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"# run_stage over {args.stages} stages in one process, CPU µs a stage, best of {args.repeat} "
          f"({time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f})\n")
    print("| variant | µs a stage | difference to run_stage |")
    print("|---|---:|---:|")
    for name, value in best.items():
        print(f"| {name} | {value:.1f} | {value - best['run_stage']:+.1f} |")
    print(f"\nruntime around each stage (run_stage minus bare action): "
          f"{best['run_stage'] - best['bare action']:.0f} µs")


if __name__ == "__main__":
    main()
