"""How well segmentation's `multi` flag finds crops of several characters, against ground truth.

    python bench/multi_flags.py SEGMENTATION_DIR GROUND_TRUTH_JSON

Every crop of the segmentation output gets its true kind (`metrics.instance_truth`: `multi` when two
or more true characters each cover at least 20 % of its mask, `single` when one covers half) and its
crop flags recomputed from the written crop (`quality.measure_crop`, `crop_flags`), with the default
thresholds and with the palette rule off (the pieces rule alone), side by side: of the crops of
several characters, how many are flagged `multi` (recall), and how many crops of one character or
of none are (false positives). Prints one JSON object.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from pipeline_tasks.stages.characters.formats import read_instances
    from pipeline_tasks.stages.characters.metrics import instance_truth
    from pipeline_tasks.stages.characters.quality import CropThresholds, crop_flags, measure_crop
    seg, gt = Path(sys.argv[1]), sys.argv[2]
    kinds = instance_truth(seg / "instances.jsonl", gt)
    rules = {"pieces_only": CropThresholds(multi_palette_split=2.0), "pieces_and_palette": CropThresholds()}
    out: dict = {name: {"multi_crops": 0, "multi_flagged": 0, "multi_flagged_not_border": 0,
                        "single_crops": 0, "single_flagged_multi": 0, "background_flagged_multi": 0}
                 for name in rules}
    top_single = 0.0
    for rec in read_instances(seg / "instances.jsonl"):
        with Image.open(seg / rec.file) as im:
            m = measure_crop(np.asarray(im.convert("RGBA")), rec)
        kind = kinds[rec.file][1]
        if kind == "single":
            top_single = max(top_single, m["palette_split"])
        for name, t in rules.items():
            flags = crop_flags(m, t)
            row = out[name]
            if kind == "multi":
                row["multi_crops"] += 1
                row["multi_flagged"] += "multi" in flags
                row["multi_flagged_not_border"] += "multi" in flags and "border" not in flags
            elif kind == "single":
                row["single_crops"] += 1
                row["single_flagged_multi"] += "multi" in flags
            else:
                row["background_flagged_multi"] += "multi" in flags
    out["highest_palette_split_of_a_single"] = round(top_single, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
