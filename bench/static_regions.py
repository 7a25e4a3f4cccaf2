"""The background model's static regions step: its cost, and the `static_region` flag against ground truth.

    python bench/static_regions.py cpu WORK_DEMO          # e.g. work/demo after a demo run

`cpu`: CPU seconds of the background model (`predict_scene_with_context`, OpenCV on one thread) on
every scene of a frame_extraction output (WORK_DEMO/frames, its scenes.csv, and the source video
WORK_DEMO/video/video.mp4 for 24 context frames a scene, read once before timing), best of 3, with
the pipeline_tasks that Python imports: put a checkout first on PYTHONPATH to measure its code, and
compare two checkouts side by side.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path


def cpu(work: Path) -> dict:
    import cv2
    import numpy as np
    from PIL import Image

    from pipeline_tasks.stages.characters import background_model
    from pipeline_tasks.stages.characters.video_context import VideoContext
    frames = work / "frames"
    records = [json.loads(line) for line in (frames / "frames.jsonl").read_text().splitlines()]
    context = VideoContext(work / "video" / "video.mp4")
    scenes = []
    for row in csv.DictReader((frames / "scenes.csv").open()):
        kept = [r for r in records if r["scene_index"] == int(row["scene_index"])]
        if not kept:
            continue
        images = [np.asarray(Image.open(frames / r["file"]).convert("RGB")) for r in kept]
        size = background_model.BackgroundModelBackend().work_size(images[0].shape[1], images[0].shape[0])
        scenes.append((images, [r["frame_index"] for r in kept],
                       context.scene_frames(int(row["start_frame"]), int(row["end_frame"]), 24, size)))
    cv2.setNumThreads(1)
    runs = []
    for _ in range(3):
        backend = background_model.BackgroundModelBackend()
        t0 = time.process_time()
        for images, indices, extra in scenes:
            backend.predict_scene_with_context(images, indices, extra)
        runs.append(round(time.process_time() - t0, 3))
    return {"code": background_model.__file__, "scenes": len(scenes), "cpu_seconds": runs, "best": min(runs)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "cpu":
        print(json.dumps(cpu(Path(sys.argv[2]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
