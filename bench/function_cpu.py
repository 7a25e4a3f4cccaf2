"""Where a segmentation run's CPU goes, function by function: the stage runs once in this process
(its defaults, or `--set key=value`) with each `--time MODULE:NAME` wrapped to add up the CPU time
of the thread calling it (`time.thread_time`) and its calls. For the checkout on PYTHONPATH:

    PYTHONPATH=CHECKOUT python bench/function_cpu.py --workdir /tmp/cc --time cv2:findTransformECC \\
        --time pipeline_tasks.stages.characters.static_regions:static_regions

WORKDIR holds the frames of `bench/cartoon_chain.py --worker frames --mode hybrid` (frames_hybrid).
A function imported by name into another module (`from .x import f`) is wrapped there too when
that module is named as well (`--time pipeline_tasks.stages.characters.background_model:static_regions`).
Nested wrapped functions count in both. Generators count only the call that creates them.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path


def wrap(target: str, totals: dict) -> None:
    module, _, name = target.partition(":")
    owner = importlib.import_module(module)
    *path, attr = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, attr)
    lock = threading.Lock()

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - t0
            with lock:
                totals[target][0] += 1
                totals[target][1] += spent
    setattr(owner, attr, timed)


def main() -> None:
    import yaml
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--frames", default="frames_hybrid")
    ap.add_argument("--time", action="append", default=[], help="MODULE:NAME to time (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="a stage setting other than the default, key=value")
    a = ap.parse_args()
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for target in a.time:
        wrap(target, totals)
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    w = Path(a.workdir)
    out = w / "seg_function_cpu"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"input_dir": str(w / a.frames), "output_dir": str(out)}
    for item in a.set:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    t0, c0 = time.perf_counter(), time.process_time()
    SegmentationExecutor("seg", cfg).execute({})
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(time.process_time() - c0, 3),
                      "functions": {k: {"calls": n, "cpu_seconds": round(t, 3)} for k, (n, t) in totals.items()}}))


if __name__ == "__main__":
    main()
