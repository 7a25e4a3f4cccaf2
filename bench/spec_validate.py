"""Cold `pipeline-tasks validate` of a large, realistic pipeline, side by side for one or more checkouts.

    python bench/spec_validate.py --sizes 1000 10000 --repeat 5
    python bench/spec_validate.py --checkout ../before --checkout . --format json

The generated pipeline repeats blocks of ten stages: the demo's seven stage types wired as in
configs/demo.yaml (synthetic_video -> frame_extraction -> segmentation -> clustering ->
training_data_prep, evaluate, report) and three custom stages (a callable with args, a command with
params and an input file, a command reading an upstream stage's output folder), in YAML or JSON.
Each run is a fresh process with the spec cache disabled (`PIPELINE_TASKS_NO_CACHE=1`): it imports
the stage types, reads the file and validates every stage. Figures are CPU seconds (user + system)
of the whole command, best of --repeat, the checkouts' runs interleaved so that load on the machine
hits them alike; each checkout's package is put first on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STAGE_MODULE = '''
def make_manifest(output_dir, rate, names):
    return {"rate": rate, "names": names}
'''


def block(b: int) -> list[dict]:
    """Ten stages of block `b`; its first stage depends on the previous block's dataset stage."""
    p = f"b{b}_"
    out = f"work/{b}"
    return [
        {"id": p + "video", "type": "synthetic_video", **({"depends_on": [f"b{b - 1}_dataset"]} if b else {}),
         "config": {"output_dir": f"{out}/video", "duration": 24, "fps": 24, "width": 640, "height": 360,
                    "num_scenes": 8, "num_characters": 4, "seed": b}},
        {"id": p + "frames", "type": "frame_extraction", "depends_on": [p + "video"],
         "config": {"input_video": f"{{{p}video.output_dir}}/video.mp4", "output_dir": f"{out}/frames",
                    "mode": "hybrid", "interval": 0.25, "dedup_threshold": -1}},
        {"id": p + "segment", "type": "segmentation", "depends_on": [p + "frames"],
         "config": {"input_dir": f"{{{p}frames.output_dir}}", "output_dir": f"{out}/characters"}},
        {"id": p + "cluster", "type": "clustering", "depends_on": [p + "segment"],
         "config": {"input_dir": f"{{{p}segment.output_dir}}", "output_dir": f"{out}/clusters",
                    "min_cluster_size": 10}},
        {"id": p + "dataset", "type": "training_data_prep", "depends_on": [p + "cluster"],
         "config": {"input_dir": f"{{{p}cluster.output_dir}}",
                    "instances_jsonl": f"{{{p}segment.output_dir}}/instances.jsonl",
                    "output_dir": f"{out}/dataset", "target_size": 40, "resolution": 256,
                    "trigger_word": "toonchar"}},
        {"id": p + "evaluate", "type": "evaluate",
         "depends_on": [p + "video", p + "frames", p + "segment", p + "cluster"],
         "config": {"ground_truth": f"{{{p}video.output_dir}}/ground_truth.json",
                    "frames_dir": f"{{{p}frames.output_dir}}",
                    "instances": f"{{{p}segment.output_dir}}/instances.jsonl",
                    "clusters": f"{{{p}cluster.output_dir}}/clusters.jsonl", "output_dir": f"{out}/evaluation"}},
        {"id": p + "report", "type": "report", "depends_on": [p + "dataset", p + "evaluate"],
         "config": {"output_dir": f"{out}/report", "title": f"block {b}"}},
        {"id": p + "summary", "type": "custom", "depends_on": [p + "dataset"],
         "config": {"callable": "bench_spec_stage:make_manifest", "output_dir": f"{out}/summary",
                    "args": {"rate": 0.5, "names": ["a", "b", "c"]}}},
        {"id": p + "count", "type": "custom", "depends_on": [p + "frames"],
         "config": {"command": "ls {frames} | wc -l > {out}/count.txt", "output_dir": f"{out}/count",
                    "inputs": ["labels.txt"],
                    "params": {"frames": f"{{{p}frames.output_dir}}", "out": f"{out}/count"}}},
        {"id": p + "archive", "type": "custom", "depends_on": [p + "report"], "retry": {"max_retries": 2},
         "timeout": 600, "config": {"command": "tar cf {output_dir}/report.tar {src}", "output_dir": f"{out}/archive",
                                    "params": {"src": f"{{{p}report.output_dir}}"}}},
    ]


def write_pipeline(folder: Path, stages: int, fmt: str) -> Path:
    doc = {"pipeline": {"name": "bench-spec", "version": "1"}, "vars": {"size": 512},
           "stages": [stage for b in range(-(-stages // 10)) for stage in block(b)][:stages]}
    (folder / "bench_spec_stage.py").write_text(STAGE_MODULE)
    (folder / "labels.txt").write_text("a\nb\n")
    path = folder / f"p.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(doc, indent=2))
    else:
        import yaml
        path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120))
    return path


def cpu_seconds(cmd: list[str], cwd: Path, env: dict) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
    parser.add_argument("--checkout", action="append", default=None,
                        help="a checkout whose pipeline_tasks to run (repeatable; default: this one)")
    args = parser.parse_args(argv)
    checkouts = [Path(c).resolve() for c in (args.checkout or [ROOT])]
    print(f"| stages | {' | '.join(str(c) for c in checkouts)} | ratio to the first |")
    print(f"|---:|{'---:|' * len(checkouts)}---:|")
    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="bench-spec-"))
        path = write_pipeline(work, size, args.format)
        best = {c: float("inf") for c in checkouts}
        for _ in range(args.repeat):
            for checkout in checkouts:
                env = dict(os.environ, PIPELINE_TASKS_NO_CACHE="1",
                           PYTHONPATH=os.pathsep.join([str(checkout), str(work)]))
                cmd = [sys.executable, "-m", "pipeline_tasks", "validate", path.name]
                best[checkout] = min(best[checkout], cpu_seconds(cmd, work, env))
        first = best[checkouts[0]]
        cells = " | ".join(f"{best[c]:.3f}" for c in checkouts)
        ratios = " / ".join(f"{best[c] / first:.2f}" for c in checkouts)
        print(f"| {size} | {cells} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
