"""Where one command's CPU goes, phase by phase: a `pipeline-tasks` command run in this process with
timers around the engine's phases (no profiler: its overhead would distort the small calls).

    cd FOLDER_OF_A_BENCHMARK_RUN && PYTHONPATH=. python /path/to/bench/command_phases.py run p.yaml --no-progress
    ... command_phases.py plan p.yaml

(the folder of a bench/foreach.py or bench/engine.py run, e.g. one made by `new_workdir` there, after a
first run). Prints the CPU seconds of the imports, of the whole command and of each phase (phases nest:
`doit: run_all` is inside `doit`), best of --repeat runs in fresh processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

# (module, attribute path, label): the phases timed
PHASES = [
    ("pipeline_tasks.cli", "resolve_pipeline", "spec: the pipeline (spec cache or validation)"),
    ("pipeline_tasks.engine.compile", "compile_tasks", "compile the stages into task dicts"),
    ("pipeline_tasks.engine.compile", "fingerprint", "  of which: config fingerprints"),
    ("pipeline_tasks.engine.ownership", "check_output_folders", "  of which: output folder checks"),
    ("pipeline_tasks.engine.session", "PipelineSession.lock_specs", "lock file specs"),
    ("pipeline_tasks.engine.session", "PipelineSession.scheduling", "capacity and needs"),
    ("pipeline_tasks.engine.safety", "watched_folders", "safety guard: folders to watch"),
    ("pipeline_tasks.engine.monitor", "PipelineProgressMonitor.start_pipeline", "progress monitor start"),
    ("pipeline_tasks.state.paths", "RunLock.acquire", "run lock and output folder locks"),
    ("pipeline_tasks.engine.session", "doit_main", "doit set-up (items registry, database check)"),
    ("doit.doit_cmd", "DoitMain.run", "doit"),
    ("pipeline_tasks.engine.session", "PipelineLoader.load_tasks", "  doit: task objects"),
    ("doit.runner", "Runner.run_all", "  doit: run_all (up-to-date checks, actions)"),
    ("doit.runner", "Runner.finish", "  doit: finish (checkpoint, lock file, record)"),
    ("pipeline_tasks.orchestrator", "run_results", "run results (events read back)"),
    ("pipeline_tasks.engine.status", "plan", "plan"),
    ("pipeline_tasks.engine.status", "pipeline_status", "status"),
]

CHILD = r'''
import atexit, importlib, json, sys, time
start = time.process_time()
import pipeline_tasks.cli as cli
imports = time.process_time() - start
spent = {}
def timed(fn, label):
    def wrapper(*args, **kwargs):
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.process_time() - t
    return wrapper
for module, attr, label in json.loads(sys.argv[1]):
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, name)
    wrapper = timed(fn, label)
    setattr(owner, name, wrapper)
    for other in list(sys.modules.values()):       # `from x import fn` copies
        if other is not None and other is not owner and getattr(other, name, None) is fn:
            setattr(other, name, wrapper)
def report():
    spent["imports"] = imports
    spent["whole command"] = time.process_time()
    sys.__stderr__.write("PHASES " + json.dumps(spent) + "\n")
atexit.register(report)
sys.argv = ["pipeline-tasks", *sys.argv[2:]]
sys.stdout = open("/dev/null", "w")
cli.main()
'''


def main() -> None:
    args = sys.argv[1:]
    repeat = 3
    if args[:1] == ["--repeat"]:
        repeat, args = int(args[1]), args[2:]
    best: dict[str, float] = {}
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(PHASES), *args], capture_output=True,
                              text=True, env=dict(os.environ))
        line = next((x for x in proc.stderr.splitlines() if x.startswith("PHASES ")), None)
        if line is None:
            raise SystemExit(proc.stderr[-2000:])
        for label, value in json.loads(line[7:]).items():
            best[label] = min(best.get(label, float("inf")), value)
    print(f"# `pipeline-tasks {' '.join(args)}`: CPU seconds, best of {repeat} (load {os.getloadavg()[0]:.1f})\n")
    print("| phase | CPU s |\n|---|---:|")
    for label in ["whole command", "imports", *(label for _, _, label in PHASES)]:
        if label in best:
            print(f"| {label} | {best[label]:.3f} |")


if __name__ == "__main__":
    main()
