"""Two clean runs of a pipeline in two clones of the project, compared byte by byte.

    python bench/reproducible.py                       # configs/demo.yaml
    python bench/reproducible.py configs/demo.yaml --set make_video.duration=12

Copies the project's pipeline file into two fresh project folders at different paths, runs
`pipeline-tasks run` in each, and compares every file the runs wrote (stage outputs, manifests and
the lock file beside the pipeline; not the state folder `.pipeline/` nor the output folders' run
locks, which are per machine; a manifest without its run facts, `manifest.RUN_FACTS`: metrics,
duration, executor version). Prints each file that
differs, or that one clone has and the other lacks, and exits 1 if any does (the outputs of a stage
type that is not `reproducible`, the report, are listed apart: they show the run's times). Then runs
`pipeline-tasks verify` in the second clone and in a moved copy of the first, and reruns there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline_tasks.engine.manifest import RUN_FACTS

REPO = Path(__file__).resolve().parent.parent


def files_of(root: Path) -> dict[str, bytes]:
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".pipeline"]
        for name in files:
            if name == ".stage.lock":         # names the process that held the folder: per machine
                continue
            path = Path(folder) / name
            data = path.read_bytes()
            if name == ".stage.json":
                manifest = json.loads(data)
                for fact in RUN_FACTS:
                    manifest.pop(fact, None)
                data = json.dumps(manifest, sort_keys=True).encode()
            out[path.relative_to(root).as_posix()] = data
    return out


def reproducible_output(project: Path, name: str) -> bool:
    """Whether file `name` belongs to a stage whose type is `reproducible` (the nearest folder above
    it with a manifest names the type)."""
    from pipeline_tasks.spec.registry import get_executor_class

    folder = (project / name).parent
    while folder != project.parent:
        if (folder / ".stage.json").exists():
            stage_type = json.loads((folder / ".stage.json").read_text())["type"]
            return get_executor_class(stage_type).reproducible
        folder = folder.parent
    return True


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_tasks", *args], cwd=project, capture_output=True,
                          text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", nargs="?", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help="change a config value in both clones (the value is read as YAML)")
    args = parser.parse_args()
    data = yaml.safe_load((REPO / args.pipeline).read_text())
    stages = {s["id"]: s for s in data["stages"]}
    for change in args.set:
        key, _, value = change.partition("=")
        stage, _, name = key.partition(".")
        stages[stage]["config"][name] = yaml.safe_load(value)
    base = Path(tempfile.mkdtemp(prefix="reproducible-"))
    clones = [base / "first" / "project", base / "second" / "deeper" / "clone"]
    try:
        for project in clones:
            project.mkdir(parents=True)
            target = project / args.pipeline
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump(data, sort_keys=False))
            t0 = time.monotonic()
            proc = cli(project, "run", args.pipeline, "--no-progress")
            print(f"{project}: run exit {proc.returncode} in {time.monotonic() - t0:.1f} s")
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
                return 1
        first, second = (files_of(p) for p in clones)
        differ = sorted(k for k in first.keys() & second.keys() if first[k] != second[k])
        run_facts = [k for k in differ if not reproducible_output(clones[0], k)]
        differ = [k for k in differ if k not in run_facts]
        only = sorted(first.keys() ^ second.keys())
        print(f"{len(first)} files in the first clone, {len(second)} in the second; "
              f"{len(differ)} differ, {len(only)} in one clone only, {len(run_facts)} differ as they should "
              "(outputs of stage types that describe the run, e.g. the report)")
        for name in run_facts:
            print(f"  describes the run: {name}")
        for name in differ:
            print(f"  differs: {name}")
        for name in only:
            print(f"  in one clone only: {name}")
        moved = base / "moved"
        shutil.move(clones[0], moved)
        for project in (clones[1], moved):
            proc = cli(project, "verify", args.pipeline)
            print(f"verify in {project}: exit {proc.returncode} {proc.stdout.strip().splitlines()[-1:]}"
                  f"{proc.stderr.strip()[-500:]}")
        proc = cli(moved, "run", args.pipeline, "--no-progress")
        print(f"rerun in the moved clone: {proc.stdout.strip().splitlines()[-1:]}")
        return 1 if differ or only else 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
