"""`ground_truth.json` of a synthetic video: written streaming, read back with mask decoding.

Layout (see docs/stages-video.md)::

    {"format": "pipeline_tasks.synthetic_video.ground_truth/1",
     "video": {"width", "height", "fps", "frame_count"},
     "mask_encoding": "...",
     "characters": [{"id", "name", "body_shape", "head_shape", "body_color", "head_color"}],
     "scenes": [{"index", "start_frame", "end_frame" (exclusive), "transition_in", "place", "zoom",
                 "characters"}],
     "cut_frames": [...],          # first frame of each scene that starts with a hard cut
     "scene_starts": [...],        # first frame of every scene but the first
     "transitions": [{"kind", "start_frame", "end_frame" (exclusive), "from_scene", "to_scene"}],
     "flashes": [{"start_frame", "end_frame" (exclusive)}],   # near-white frames inside a shot
     "frames": [{"frame", "scene", "transition", "flash", "characters": [
          {"id", "name", "scene", "z", "opacity", "bbox": [x, y, w, h], "mask": [counts],
           "area", "visible_fraction"}]}]}

The frames array is written one line per frame while the video renders, so memory stays flat.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import rle
from .render import FLASH_FRAMES, Plan

FORMAT = "pipeline_tasks.synthetic_video.ground_truth/1"
MASK_ENCODING = ("RLE inside bbox: alternating run lengths of 0s and 1s over the bbox pixels in "
                 "row-major order, starting with a 0-run; sums to w*h")


def header(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "video": {"width": plan.width, "height": plan.height, "fps": float(plan.fps),
                  "fps_fraction": f"{plan.fps.numerator}/{plan.fps.denominator}", "frame_count": plan.frame_count},
        "seed": plan.seed,
        "mask_encoding": MASK_ENCODING,
        "characters": [{k: v for k, v in asdict(c).items()} for c in plan.characters],
        "scenes": [{"index": s.index, "start_frame": s.start_frame, "end_frame": s.end_frame,
                    "transition_in": s.transition_in, "background": s.background_kind,
                    "pan_speed": round(s.pan_speed, 4), "place": s.place if s.place >= 0 else s.index,
                    "zoom": list(s.zoom),
                    "characters": [a.character for a in sorted(s.actors, key=lambda a: a.z)]}
                   for s in plan.scenes],
        "cut_frames": plan.cut_frames,
        "scene_starts": plan.scene_starts,
        "transitions": [asdict(t) for t in plan.transitions],
        "flashes": [{"start_frame": f, "end_frame": f + FLASH_FRAMES} for f in plan.flashes],
    }


class GroundTruthWriter:
    """Writes the header, then one frame record per `add` call, then closes the JSON document."""

    def __init__(self, fh: IO[str], plan: Plan):
        self.fh = fh
        self.plan = plan
        head = json.dumps(header(plan), sort_keys=True)
        fh.write(head[:-1] + ', "frames": [\n')
        self.count = 0

    def add(self, frame_index: int, characters: list[dict]) -> None:
        tr = self.plan.transition_at(frame_index)
        rec = {"frame": frame_index, "scene": self.plan.scene_at(frame_index).index,
               "transition": tr.kind if tr else None, "flash": self.plan.flash_at(frame_index),
               "characters": characters}
        self.fh.write(("" if self.count == 0 else ",\n") + json.dumps(rec, sort_keys=True, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        self.fh.write("\n]}\n")


def load(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def decode_mask(entry: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The full-frame boolean mask of one character entry of a frame record."""
    x, y, w, h = entry["bbox"]
    out = np.zeros((height, width), dtype=bool)
    out[y:y + h, x:x + w] = rle.decode(entry["mask"], (h, w))
    return out
