"""`synthetic_video`: a deterministic cartoon (H.264 MP4) with exact ground truth beside it.

The embedded default input of the demo pipeline: no download, same bytes for the same config. See
docs/stages-video.md for the config and the ground-truth format.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import StageConfigError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult

PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]

DEFAULTS: dict[str, Any] = {
    "duration": 20.0, "fps": 24, "width": 640, "height": 360, "num_scenes": 6, "num_characters": 4,
    "seed": 0, "transition": "cut", "transition_frames": 12, "pan": True, "crf": 20,
    "preset": "veryfast", "keyframe_interval": 2.0,
}


class SyntheticVideoStage(StageExecutor):
    type_name = "synthetic_video"
    version = "1"
    description = "Render a seeded cartoon (scenes, characters, cuts) to H.264 MP4 with ground_truth.json"
    config_schema = {
        "output_dir": {"type": "string", "required": True, "empty": False},
        "duration": {"type": "number", "min": 0.5, "max": 36000, "default": DEFAULTS["duration"]},
        "fps": {"type": "number", "min": 1, "max": 120, "default": DEFAULTS["fps"]},
        "width": {"type": "integer", "min": 64, "max": 3840, "default": DEFAULTS["width"]},
        "height": {"type": "integer", "min": 64, "max": 2160, "default": DEFAULTS["height"]},
        "num_scenes": {"type": "integer", "min": 1, "max": 10000, "default": DEFAULTS["num_scenes"]},
        "num_characters": {"type": "integer", "min": 1, "max": 12, "default": DEFAULTS["num_characters"]},
        "seed": {"type": "integer", "min": 0, "default": DEFAULTS["seed"]},
        "transition": {"type": "string", "allowed": ["cut", "fade", "dissolve", "mixed"],
                       "default": DEFAULTS["transition"]},
        "transition_frames": {"type": "integer", "min": 2, "max": 240, "default": DEFAULTS["transition_frames"]},
        "pan": {"type": "boolean", "default": DEFAULTS["pan"]},
        "crf": {"type": "integer", "min": 0, "max": 51, "default": DEFAULTS["crf"]},
        "preset": {"type": "string", "allowed": PRESETS, "default": DEFAULTS["preset"]},
        "keyframe_interval": {"type": "number", "min": 0.04, "max": 60, "default": DEFAULTS["keyframe_interval"]},
    }


    def validate_config(self) -> None:
        for key in ("width", "height"):
            if int(self.cfg(key)) % 2:
                raise StageConfigError(f"{key} must be even for yuv420p H.264, got {self.cfg(key)}",
                                       stage=self.stage_id, key=key)
        frames = round(float(self.cfg("duration")) * float(self.cfg("fps")))
        per_scene = frames / int(self.cfg("num_scenes"))
        if per_scene < 8:
            raise StageConfigError(
                f"{self.cfg('num_scenes')} scenes in {frames} frames leaves {per_scene:.1f} frames a scene; "
                "need at least 8 (lower num_scenes or raise duration/fps)", stage=self.stage_id, key="num_scenes")

    def estimate_duration(self) -> float | None:
        frames = float(self.cfg("duration")) * float(self.cfg("fps"))
        return frames * 0.012 * (int(self.cfg("width")) * int(self.cfg("height")) / (1280 * 720))

    def plan(self):
        from .video.render import make_plan
        return make_plan(width=int(self.cfg("width")), height=int(self.cfg("height")), fps=self.cfg("fps"),
                         duration=float(self.cfg("duration")), num_scenes=int(self.cfg("num_scenes")),
                         num_characters=int(self.cfg("num_characters")), seed=int(self.cfg("seed")),
                         transition=self.cfg("transition"), transition_frames=int(self.cfg("transition_frames")),
                         pan=bool(self.cfg("pan")))

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .video.encode import H264Writer
        from .video.ground_truth import GroundTruthWriter
        from .video.render import iter_frames

        out = Path(self.cfg("output_dir"))
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StageInputError(f"output directory is not writable: {exc.strerror or exc}; "
                                  "choose another output_dir or fix its permissions",
                                  path=out, stage=self.stage_id) from exc
        for stale in out.glob("*.part-*"):
            stale.unlink()
        plan = self.plan()
        video_path, gt_path = out / "video.mp4", out / "ground_truth.json"
        gop = max(1, round(float(plan.fps) * float(self.cfg("keyframe_interval"))))
        t0 = time.monotonic()
        with atomic_path(video_path) as tmp_video, atomic_path(gt_path) as tmp_gt:
            writer = H264Writer(tmp_video, plan.width, plan.height, plan.fps, crf=int(self.cfg("crf")),
                                preset=self.cfg("preset"), keyframe_interval=gop)
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
                     "num_scenes": len(plan.scenes)},
            metrics={"render_seconds": round(elapsed, 3),
                     "render_fps": round(plan.frame_count / max(elapsed, 1e-9), 1)})
