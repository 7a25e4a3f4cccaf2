"""CPU of the weight-free backend's per-scene model within a segmentation run, and a digest of the outputs.

    PYTHONPATH=CHECKOUT python bench/scene_model_cpu.py --workdir WORKDIR [--frames frames_hybrid] [--name NAME]
        [--repeat 3]

Runs the segmentation stage with its defaults and `workers: 1` (the scenes modelled one after another
in the stage's own thread, OpenCV on one thread, while a second thread decodes the next scenes'
context frames) on the kept frames of a `bench/cartoon_chain.py` work folder (`--worker prepare`,
then `--worker frames --mode hybrid`), timing each scene's model (CPU time of the thread running
`scene_workers.model_scene`: registration, mosaic, scores, colour model, static regions, outlines at
full size); then models the same scenes again, alone in the process (no decoding thread beside
it), `--repeat` times, with a fresh backend each time. The code measured is the `pipeline_tasks` that
PYTHONPATH names, so one copy of this script measures any checkout side by side with another. Prints
one JSON line: scenes, the scene model's CPU seconds within the stage, alone (each repeat, process
time), the stage's CPU seconds (all its threads), and a digest of instances.jsonl and every mask
(equal digests: byte-identical outputs).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import time
from pathlib import Path


def outputs_digest(folder: Path) -> str:
    """sha256 over instances.jsonl and every mask file (names and bytes, in name order)."""
    h = hashlib.sha256((folder / "instances.jsonl").read_bytes())
    for path in sorted((folder / "masks").rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--frames", default="frames_hybrid")
    ap.add_argument("--name", default="scene_model")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from pipeline_tasks.stages.characters import scene_workers
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    scene_cpu: list[float] = []
    scenes: list[tuple] = []
    model_scene = scene_workers.model_scene

    def timed(backend, images, indices, context):
        c0 = time.thread_time()
        preds = model_scene(backend, images, indices, context)
        scene_cpu.append(time.thread_time() - c0)
        scenes.append((copy.deepcopy(backend), images, indices, context))
        return preds
    scene_workers.model_scene = timed
    w = Path(a.workdir)
    out = w / f"seg_{a.name}"
    shutil.rmtree(out, ignore_errors=True)
    c0 = time.process_time()
    SegmentationExecutor("seg", {"input_dir": str(w / a.frames), "output_dir": str(out), "workers": 1}).execute({})
    stage_cpu = time.process_time() - c0
    alone = []
    scene_workers.single_threaded_opencv()         # as the stage models scenes
    for _ in range(a.repeat):
        c0 = time.process_time()
        for backend, images, indices, context in scenes:
            model_scene(copy.deepcopy(backend), images, indices, context)
        alone.append(round(time.process_time() - c0, 3))
    print(json.dumps({"scenes": len(scene_cpu), "scene_model_cpu_s": round(sum(scene_cpu), 3),
                      "alone_cpu_s": alone, "stage_cpu_s": round(stage_cpu, 3),
                      "outputs_digest": outputs_digest(out)}))


if __name__ == "__main__":
    main()
