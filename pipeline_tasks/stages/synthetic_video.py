"""`synthetic_video`: a deterministic cartoon (H.264 MP4) with exact ground truth beside it.

The embedded default input of the demo pipeline: no download, same bytes for the same config. See
docs/stages-video.md for the config and the ground-truth format.
"""
from __future__ import annotations

import time
from typing import Any

from ..atomic import atomic_path
from ..errors import StageConfigError
from ..executor import StageExecutor
from ..models import StageResult

PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]


class SyntheticVideoExecutor(StageExecutor):
    type_name = "synthetic_video"
    version = "1"
    description = "Render a seeded cartoon (scenes, characters, cuts) to H.264 MP4 with ground_truth.json"
    config_schema = {
        "output_dir": {"type": "string", "required": True, "empty": False},
        "duration": {"type": "number", "min": 0.5, "max": 36000, "default": 20.0},
        "fps": {"type": "number", "min": 1, "max": 120, "default": 24},
        "width": {"type": "integer", "min": 64, "max": 3840, "default": 640},
        "height": {"type": "integer", "min": 64, "max": 2160, "default": 360},
        "num_scenes": {"type": "integer", "min": 1, "max": 10000, "default": 6},
        "num_characters": {"type": "integer", "min": 1, "max": 12, "default": 4},
        "seed": {"type": "integer", "min": 0, "default": 0},
        "cast_seed": {"type": "integer", "min": 0, "nullable": True},    # same cast seed: same characters
        "transition": {"type": "string", "allowed": ["cut", "fade", "dissolve", "mixed"], "default": "cut"},
        "transition_frames": {"type": "integer", "min": 2, "max": 240, "default": 12},
        "pan": {"type": "boolean", "default": True},
        "zoom": {"type": "boolean", "default": False},
        "revisit": {"type": "number", "min": 0, "max": 1, "default": 0.0},
        "flashes": {"type": "integer", "min": 0, "max": 10000, "default": 0},
        "shared_colour": {"type": "boolean", "default": False},
        "in_front": {"type": "number", "min": 0, "max": 1, "default": 0.0},
        "crf": {"type": "integer", "min": 0, "max": 51, "default": 20},
        "preset": {"type": "string", "allowed": PRESETS, "default": "veryfast"},
        "keyframe_interval": {"type": "number", "min": 0.04, "max": 60, "default": 2.0},
    }

    def validate_config(self) -> None:
        s = self.settings
        for key in ("width", "height"):
            if getattr(s, key) % 2:
                raise StageConfigError(f"{key} must be even for yuv420p H.264, got {getattr(s, key)}",
                                       stage=self.stage_id, key=key)
        frames = round(s.duration * s.fps)
        per_scene = frames / s.num_scenes
        if per_scene < 8:
            raise StageConfigError(
                f"{s.num_scenes} scenes in {frames} frames leaves {per_scene:.1f} frames a scene; "
                "need at least 8 (lower num_scenes or raise duration/fps)", stage=self.stage_id, key="num_scenes")

    def estimate_duration(self) -> float | None:
        s = self.settings
        return s.duration * s.fps * 0.012 * (s.width * s.height / (1280 * 720))

    def plan(self):
        from .video.render import make_plan
        s = self.settings
        return make_plan(width=s.width, height=s.height, fps=s.fps, duration=s.duration, num_scenes=s.num_scenes,
                         num_characters=s.num_characters, seed=s.seed, transition=s.transition,
                         transition_frames=s.transition_frames, pan=s.pan, cast_seed=s.cast_seed, zoom=s.zoom,
                         revisit=s.revisit, flashes=s.flashes, shared_colour=s.shared_colour,
                         in_front=s.in_front)

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .video.encode import H264Writer
        from .video.ground_truth import GroundTruthWriter
        from .video.render import iter_frames

        s = self.settings
        folder = self.output_folder()
        out = folder.path
        plan = self.plan()
        video_path, gt_path = folder.claim("video.mp4"), folder.claim("ground_truth.json")
        gop = max(1, round(float(plan.fps) * s.keyframe_interval))
        t0 = time.monotonic()
        with atomic_path(video_path) as tmp_video, atomic_path(gt_path) as tmp_gt:
            writer = H264Writer(tmp_video, plan.width, plan.height, plan.fps, crf=s.crf, preset=s.preset,
                                keyframe_interval=gop)
            try:
                with open(tmp_gt, "w", encoding="utf-8") as fh:
                    gt = GroundTruthWriter(fh, plan)
                    for index, rgb, characters in iter_frames(plan):
                        writer.write(rgb)
                        gt.add(index, characters)
                        self.progress(index + 1, plan.frame_count, unit="frames")
                    gt.close()
                writer.close()
            except BaseException:
                writer.abort()
                raise
        elapsed = time.monotonic() - t0
        self.log.info("rendered %d frames in %.1f s", plan.frame_count, elapsed)
        return self.result(
            outputs={"video": str(video_path), "ground_truth": str(gt_path), "output_dir": str(out),
                     "frame_count": plan.frame_count, "fps": float(plan.fps), "width": plan.width,
                     "height": plan.height, "cut_frames": plan.cut_frames, "scene_starts": plan.scene_starts,
                     "flashes": plan.flashes,
                     "num_scenes": len(plan.scenes)},
            metrics={"render_seconds": round(elapsed, 3),
                     "render_fps": round(plan.frame_count / max(elapsed, 1e-9), 1)})
