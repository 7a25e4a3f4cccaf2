"""The background model's static regions step: its cost, and the `static_region` flag against ground truth.

    python bench/static_regions.py cpu WORK_DEMO          # e.g. work/demo after a demo run
    python bench/static_regions.py flags SEGMENTATION_DIR GROUND_TRUTH_JSON [BAD_CROP ...]

`cpu`: CPU seconds of the background model (`predict_scene_with_context`, OpenCV on one thread) on
every scene of a frame_extraction output (WORK_DEMO/frames, its scenes.csv, and the source video
WORK_DEMO/video/video.mp4 for 24 context frames a scene, read once before timing), best of 3, with
the pipeline_tasks that Python imports: put a checkout first on PYTHONPATH to measure its code, and
compare two checkouts side by side.

`flags`: every crop of a segmentation output scored against the ground truth as `evaluate` scores a
dataset's (`metrics.dataset_scores` over all crops: `poor` under mask IoU 0.75, `multi`,
`background`; the others good), with its `static_share` and flags (from instances.jsonl): how many
bad crops the `static_region` flag catches (of them, how many carry no other flag, those a dataset
would otherwise take), how many good crops it flags, and the same for the crops named (BAD_CROP:
`characters/frame_0000137_00.png` ..., e.g. those `evaluate` found bad in a dataset). Without
ground truth (GROUND_TRUTH_JSON `-`, real footage): how many crops it flags, and how many of them
carry no other flag.
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


def flags(seg: Path, truth: str, named: list[str]) -> dict:
    from pipeline_tasks.stages.characters.formats import read_instances
    from pipeline_tasks.stages.characters.metrics import dataset_scores
    records = read_instances(seg / "instances.jsonl")
    flagged = [r for r in records if "static_region" in r.flags]
    out: dict = {"crops": len(records), "measured": sum(r.static_share is not None for r in records),
                 "flagged": len(flagged), "flagged_only_flag": sum(r.flags == ("static_region",) for r in flagged),
                 "static_shares_flagged": sorted(r.static_share for r in flagged)}
    if truth != "-":
        scores = dataset_scores(seg / "instances.jsonl", truth, [{"key": r.file} for r in records])
        bad = {b["crop"]: b["kind"] for b in scores["bad_crops"]}
        out.update({"bad": len(bad), "bad_flagged": sum(r.file in bad for r in flagged),
                    "bad_with_no_other_flag": sum(1 for r in records if r.file in bad
                                                  and not set(r.flags) - {"static_region"}),
                    "bad_with_no_other_flag_flagged": sum(1 for r in flagged if r.file in bad
                                                          and r.flags == ("static_region",)),
                    "good_flagged": [r.file for r in flagged if r.file not in bad],
                    "good_highest_share": max((r.static_share or 0.0 for r in records if r.file not in bad),
                                              default=0.0)})
    if named:
        by_file = {r.file: r for r in records}
        out["named"] = {f: {"static_share": by_file[f].static_share, "flags": list(by_file[f].flags)}
                        for f in named if f in by_file}
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "cpu":
        print(json.dumps(cpu(Path(sys.argv[2]))))
    elif len(sys.argv) >= 4 and sys.argv[1] == "flags":
        print(json.dumps(flags(Path(sys.argv[2]), sys.argv[3], sys.argv[4:]), indent=1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
