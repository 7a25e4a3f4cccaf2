"""How well segmentation's `multi` flag finds crops of several characters, against ground truth.

    python bench/multi_flags.py SEGMENTATION_DIR [GROUND_TRUTH_JSON]

Every crop of the segmentation output gets its true kind (`metrics.instance_truth`: `multi` when two
or more true characters each cover at least 20 % of its mask, `single` when one covers half) and its
crop flags recomputed from the written crops (`quality.measure_crop`, `flag_crops`; no blank-frame
check), with the default thresholds and with rules turned off, side by side: the pieces rule alone,
pieces and `palette_split`, and all three (`known_pair` too). Of the crops of several characters,
how many are flagged `multi` (recall), and how many crops of one character or of none are (false
positives). Without ground truth (real footage): how many crops each rule set flags `multi`, and
how many of them carry no other flag. Prints one JSON object.
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
    from pipeline_tasks.stages.characters.quality import CropThresholds, crop_palette, flag_crops, measure_crop
    seg = Path(sys.argv[1])
    records = read_instances(seg / "instances.jsonl")
    kinds = ({f: k for f, (_, k) in instance_truth(seg / "instances.jsonl", sys.argv[2]).items()}
             if len(sys.argv) > 2 else {r.file: "unknown" for r in records})
    measures, palettes = [], []
    for rec in records:
        with Image.open(seg / rec.file) as im:
            rgba = np.asarray(im.convert("RGBA"))
        measures.append(measure_crop(rgba, rec))
        palettes.append(crop_palette(rgba))
    rules = {"pieces_only": CropThresholds(multi_palette_split=2.0, multi_known_pair=2.0),
             "pieces_and_palette": CropThresholds(multi_known_pair=2.0),
             "pieces_palette_and_known_pair": CropThresholds()}
    out: dict = {}
    for name, t in rules.items():
        flags, _ = flag_crops([dict(m) for m in measures], palettes, t)
        row = {"multi_crops": 0, "multi_flagged": 0, "multi_flagged_not_border": 0, "single_crops": 0,
               "single_flagged_multi": 0, "background_flagged_multi": 0, "flagged_multi": 0,
               "flagged_multi_only": 0}
        for rec, f in zip(records, flags):
            kind, multi = kinds[rec.file], "multi" in f
            row["flagged_multi"] += multi
            row["flagged_multi_only"] += f == ["multi"]
            if kind == "multi":
                row["multi_crops"] += 1
                row["multi_flagged"] += multi
                row["multi_flagged_not_border"] += multi and "border" not in f
            elif kind == "single":
                row["single_crops"] += 1
                row["single_flagged_multi"] += multi
            elif kind == "background":
                row["background_flagged_multi"] += multi
        out[name] = row
    flag_crops(measures, palettes, CropThresholds())       # sets each crop's known_pair
    singles = [m for rec, m in zip(records, measures) if kinds[rec.file] == "single"]
    out["highest_palette_split_of_a_single"] = round(max((m["palette_split"] for m in singles), default=0.0), 3)
    out["highest_known_pair_of_a_single"] = round(max((m["known_pair"] for m in singles), default=0.0), 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
