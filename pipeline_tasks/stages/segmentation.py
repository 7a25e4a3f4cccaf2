"""`segmentation`: character instances (RGBA crops + masks) from extracted frames.

Backends (`model`): `background` (weight-free per-scene background model, the default), `sam`
(segment-anything checkpoint), `sam2` (SAM 2 / 2.1 checkpoint), `isnet` / `u2net` (rembg-compatible
ONNX files). `weights` is a file or a model catalogue name; a backend given none uses its default
catalogue entry (docs/models.md). See docs/stages-characters.md for the method, the config and the
output formats.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..errors import ModelWeightsError, PipelineError, StageConfigError, StageInputError
from ..executor import OutputFolder, StageExecutor, project_path
from ..models import StageResult
from ..weights.packages import require
from ..weights.store import catalogue_names, resolve_weights
from .characters import quality as crop_quality
from .characters import scene_workers
from .characters.formats import INSTANCES, InstanceRecord, write_instances

# config keys whose change invalidates already written items
OUTPUT_KEYS = ("model", "weights", "alpha_threshold", "extract_characters", "min_area", "padding",
               "bg_threshold", "bg_min_frames", "bg_max_frames", "colour_model", "sam_mode", "sam_points_per_side",
               "group_distance", "sam_pred_iou_thresh", "sam_stability_thresh", "video_context", "context_frames",
               "work_width", "static_regions")      # not `workers`: scenes modelled in parallel give the same outputs

# the Python packages each backend needs (import name -> pip name), checked by validation
PACKAGES = {
    "sam": {"torch": "torch", "segment_anything": "segment-anything"},
    "sam2": {"torch": "torch", "sam2": "sam2"},
    "isnet": {"onnxruntime": "onnxruntime"},
    "u2net": {"onnxruntime": "onnxruntime"},
}
PACKAGE_EXTRA = {"sam": "ml", "sam2": "ml", "isnet": "characters", "u2net": "characters"}


class SegmentationExecutor(StageExecutor):
    type_name = "segmentation"
    version = "6"
    description = "Segment characters in frames into RGBA crops, masks and instances.jsonl"
    config_schema = {
        "input_dir": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "model": {"type": "string", "allowed": ["background", "sam", "sam2", "isnet", "u2net"],
                  "default": "background"},
        "weights": {"type": "string", "nullable": True, "empty": False, "default": None},
        "device": {"type": "string", "allowed": ["auto", "cpu", "cuda", "mps"], "default": "auto"},
        "alpha_threshold": {"type": "number", "min": 0.01, "max": 0.99, "default": 0.5},
        "extract_characters": {"type": "boolean", "default": True},
        "min_area": {"type": "integer", "min": 1, "max": 100_000_000, "default": 200},
        "padding": {"type": "integer", "min": 0, "max": 1024, "default": 8},
        "batch_size": {"type": "integer", "min": 1, "max": 1024, "default": 8},
        "bg_threshold": {"type": "number", "min": 1, "max": 441, "default": 50.0},
        "bg_min_frames": {"type": "integer", "min": 2, "max": 1000, "default": 3},
        "bg_max_frames": {"type": "integer", "min": 2, "max": 1000, "default": 16},
        "colour_model": {"type": "boolean", "default": True},
        "video_context": {"type": "boolean", "default": True},
        "context_frames": {"type": "integer", "min": 2, "max": 1000, "default": 24},
        "work_width": {"type": "integer", "min": 64, "max": 7680, "default": 384},
        "static_regions": {"type": "string", "allowed": ["drop", "keep"], "default": "drop"},
        "workers": {"type": "integer", "min": 0, "max": 64, "default": 0},
        "group_distance": {"type": "number", "min": 0, "max": 0.25, "default": 0.02},
        "sam_mode": {"type": "string", "allowed": ["auto", "boxes"], "default": "auto"},
        "sam_points_per_side": {"type": "integer", "min": 1, "max": 64, "default": 16},
        "sam_pred_iou_thresh": {"type": "number", "min": 0, "max": 1, "default": 0.88},
        "sam_stability_thresh": {"type": "number", "min": 0, "max": 1, "default": 0.95},
        "quality": crop_quality.SCHEMA,
        "on_low_quality": {"type": "string", "allowed": ["warn", "fail"], "default": "warn"},
    }


    # -- declarations -------------------------------------------------------------------------------
    def default_resources(self) -> dict[str, float | str]:
        """SAM and SAM 2 run on torch: one GPU on `device: cuda`, a free one if any on `auto`. The
        background model holds a core for each scene it models at once (`workers`)."""
        s = self.settings
        if s.model in ("sam", "sam2") and s.device in ("cuda", "auto"):
            return {"cpu": 1, "gpu": 1 if s.device == "cuda" else "auto"}
        if s.model == "background":
            return {"cpu": s.workers or scene_workers.usable_cores()}
        return {"cpu": 1}

    def _scene_workers(self) -> int:
        """Threads modelling scenes at once: `workers` (0: one a usable core, at most
        scene_workers.AUTO_MAX), never more than the cores the stage holds (its `resources: {cpu: N}`,
        or the fewer a run's capacity gave it)."""
        s = self.settings
        if s.model != "background":
            return 1
        n = s.workers or scene_workers.usable_cores()
        declared = self.context.resources.get("cpu")
        if declared:
            n = min(n, int(declared))
        return max(1, n)

    def validate_config(self) -> None:
        s = self.settings
        if s.model in PACKAGES:
            require(PACKAGES[s.model], f"model '{s.model}'", PACKAGE_EXTRA[s.model], stage=self.stage_id, key="model")
            self._weights()
        elif s.weights:
            raise StageConfigError("the 'background' model uses no weights; remove 'weights' or choose "
                                   "sam/sam2/isnet/u2net", stage=self.stage_id, key="weights")
        if s.bg_max_frames < s.bg_min_frames:
            raise StageConfigError("bg_max_frames must be at least bg_min_frames", stage=self.stage_id,
                                   key="bg_max_frames")

    def _weights(self) -> str:
        """The weights file: `weights` as a path or a catalogue name, or the backend's default
        catalogue entry; verified when it comes from the model cache."""
        s = self.settings
        path = resolve_weights(s.weights, s.model, stage=self.stage_id, key="weights")
        if not Path(path).is_file():
            names = ", ".join(catalogue_names(s.model))
            raise ModelWeightsError(f"weights file not found: {path}; give a {s.model} weights file or a model "
                                    f"catalogue name ({names}; see `pipeline-tasks models list`)",
                                    path=path, stage=self.stage_id, key="weights")
        return path

    def packages(self) -> list[str]:
        return sorted(PACKAGES.get(self.settings.model, {}).values())

    def input_files(self) -> list[str]:
        if self.settings.model not in PACKAGES:
            return []
        try:
            return [self._weights()]
        except PipelineError:
            return []

    # -- the work ----------------------------------------------------------------------------------
    def _backend(self):
        s = self.settings
        if s.model == "background":
            from .characters.background_model import BackgroundModelBackend
            return BackgroundModelBackend(threshold=s.bg_threshold, min_frames=s.bg_min_frames,
                                          max_frames=s.bg_max_frames, colour_model=s.colour_model,
                                          work_width=s.work_width, static_regions=s.static_regions)
        weights = self._weights()
        if s.model in ("sam", "sam2"):
            from .characters.background_model import BackgroundModelBackend
            if s.model == "sam":
                from .characters.sam_backend import SamBackend as Backend
            else:
                from .characters.sam2_backend import Sam2Backend as Backend
            return Backend(weights, device=s.device, mode=s.sam_mode, points_per_side=s.sam_points_per_side,
                           pred_iou_thresh=s.sam_pred_iou_thresh, stability_score_thresh=s.sam_stability_thresh,
                           stage=self.stage_id,
                           box_backend=BackgroundModelBackend(threshold=s.bg_threshold, min_frames=s.bg_min_frames),
                           min_area=s.min_area)
        from .characters.onnx_backend import OnnxBackend
        return OnnxBackend(weights, kind=s.model, batch_size=s.batch_size, stage=self.stage_id)

    def _video_context(self, frames):
        """The source video frames.jsonl names, opened for context frames (None: no video named,
        or `video_context: false`)."""
        from .characters.video_context import open_context
        s = self.settings
        videos = {f.video for f in frames}
        if not s.video_context or None in videos:
            return None
        if len(videos) > 1:
            raise StageInputError(f"frames.jsonl names {len(videos)} source videos; the background model reads "
                                  "one video's scenes: segment each video's frames on their own",
                                  path=Path(s.input_dir), stage=self.stage_id)
        return open_context(videos.pop(), stage=self.stage_id)

    def _scene_bounds(self) -> dict[int, tuple[int, int]]:
        """scene index -> [start, end) frames, from scenes.csv beside frames.jsonl (if there)."""
        from .video.formats import SCENES, read_scenes
        path = Path(self.settings.input_dir) / SCENES
        if not path.exists():
            return {}
        return {r.scene_index: (r.start_frame, r.end_frame) for r in read_scenes(path, stage=self.stage_id)}

    def _open_output(self) -> OutputFolder:
        """The output folder; items (one record per frame) stay valid while the input folder and
        the keys that change them stay the same."""
        s = self.settings
        folder = self.output_folder(resume={"input_dir": project_path(s.input_dir),
                                            **{k: getattr(s, k) for k in OUTPUT_KEYS}})
        for sub in ("characters", "masks", "records"):
            folder.folder(sub)
        return folder

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .characters.coco import COCO, write_coco
        from .characters.frames_input import image_size, list_frames

        s = self.settings
        frames = list_frames(s.input_dir, stage=self.stage_id)
        folder = self._open_output()
        out = folder.path
        todo = [f for f in frames if not folder.wrote_before("records", f"{f.path.stem}.json")]
        resumed = len(frames) - len(todo)
        backend = self._backend() if todo else None
        model = s.model
        # group into batches: the background model needs a whole scene; the others take batch_size
        groups: list[list] = []
        if model == "background" or (model in ("sam", "sam2") and s.sam_mode == "boxes"):
            scenes: dict[int, list] = defaultdict(list)
            for f in frames:
                scenes[f.scene_index].append(f)
            pending = {id(f) for f in todo}
            # a scene with any missing frame is recomputed from all its frames (the model needs them)
            groups = [sorted(fs, key=lambda f: f.frame_index) for _, fs in sorted(scenes.items())
                      if any(id(f) in pending for f in fs)]
        else:
            bs = s.batch_size
            groups = [todo[i:i + bs] for i in range(0, len(todo), bs)]
        context = self._video_context(frames) if groups and model == "background" else None
        t0 = time.monotonic()
        self.progress(resumed, len(frames), unit="images")
        measured: dict[str, Any] = {}       # crop file -> its quality measures, taken as it was written
        rles: dict[str, dict] = {}          # mask file -> its COCO RLE, encoded as it was written
        written, workers = self._segment(groups, backend, folder, context, resumed, len(frames), measured, rles)
        done = resumed + written
        # assemble instances.jsonl from the per-frame records (in frame order); crops of frames no
        # longer in the input are not claimed, so `result` removes them
        instances: list[InstanceRecord] = []
        frames_done = []
        for f in sorted(frames, key=lambda f: (f.frame_index, f.path.name)):
            instances += map(InstanceRecord.from_dict,
                             json.loads(folder.claim("records", f"{f.path.stem}.json").read_text()))
            frames_done.append(f.frame_index)
        for r in instances:
            folder.claim(r.file)
            folder.claim(r.mask)
        instances, quality = self._assess(folder, frames, instances, measured)
        folder.claim(INSTANCES)
        folder.claim("frames_done.json")
        text = write_instances(out / INSTANCES, instances)
        folder.claim(COCO)
        write_coco(out / COCO, [(os.path.relpath(f.path, s.input_dir).replace(os.sep, "/"), f.frame_index,
                                 image_size(f.path, self.stage_id))
                                for f in sorted(frames, key=lambda f: (f.frame_index, f.path.name))], instances, out,
                   rles)
        write_json(out / "frames_done.json", sorted(frames_done), indent=None)
        elapsed = time.monotonic() - t0
        metrics = {"seconds": round(elapsed, 3), "images": len(frames), "segmented": written, "resumed": resumed,
                   "images_per_second": round(written / elapsed, 3) if written and elapsed > 0 else None}
        if workers > 1:
            metrics["scene_workers"] = workers
        if context is not None:
            metrics["context_frames_read"] = context.stats.frames
            metrics["context_frames_decoded"] = context.stats.decoded
            metrics["context_frames_placed_by_motion_vectors"] = context.stats.placed
            context.close()
        if backend is not None and hasattr(backend, "fallback_frames"):
            metrics["frames_without_background_model"] = backend.fallback_frames
            if backend.fallback_frames:
                self.log.warning("%d of %d frames had too few frames of their scene for a background model "
                                 "(bg_min_frames %d) and were segmented by the slow, weak GrabCut fallback; %s",
                                 backend.fallback_frames, written, s.bg_min_frames,
                                 "keep more frames a scene (frame_extraction: hybrid, a smaller interval)"
                                 if context is None else "the scenes are too short")
                self.progress(done, len(frames), unit="images",
                              message=f"{backend.fallback_frames} frames segmented without a background model")
        metrics["flagged"] = quality["flagged"]
        if quality["mostly_junk"] and s.on_low_quality == "fail":
            raise StageInputError(f"the crops are mostly junk ({quality['summary']}); see quality.json, or set "
                                  "on_low_quality: warn to go on with them", path=out / crop_quality.QUALITY,
                                  stage=self.stage_id)
        return self.result(
            outputs={"output_dir": str(out), "instances_jsonl": str(out / INSTANCES),
                     "quality_json": str(out / crop_quality.QUALITY), "quality_summary": quality["summary"],
                     "characters_dir": str(out / "characters"), "masks_dir": str(out / "masks"),
                     "coco_json": str(out / COCO),
                     "character_count": len(instances), "frame_count": len(frames),
                     "instances_digest": hashlib.sha256(text.encode()).hexdigest()[:16]},
            metrics=metrics)

    def _segment(self, groups: list[list], backend, folder: OutputFolder, context, resumed: int,
                 total: int, measured: dict[str, Any], rles: dict[str, dict]) -> tuple[int, int]:
        """Segment the frame groups (scenes, or batches), writing each frame's crops, masks and
        record, and measuring each crop for the quality flags (into `measured`, by file) and
        encoding its mask for the COCO file (into `rles`, by mask file) while it is in memory;
        (frames written, scene worker threads used)."""
        from .characters.coco import frame_rle
        from .characters.frames_input import image_size, read_rgb
        from .characters.instances import split_instances, static_share, write_instance

        s = self.settings
        alpha, min_area, padding, extract = s.alpha_threshold, s.min_area, s.padding, s.extract_characters
        bounds = self._scene_bounds() if context is not None else {}
        written = 0
        workers = self._scene_workers() if len(groups) > 1 else 1
        # scenes are modelled by `workers` threads (scene_workers.py) while this thread reads
        # the frames, decodes the next scenes' context frames in a second thread (PyAV and swscale
        # release the GIL) and writes the finished scenes' instances, in scene order
        pool = scene_workers.ScenePool(backend, workers) if workers > 1 else None
        ahead = ThreadPoolExecutor(1, thread_name_prefix="context") if context is not None else None
        contexts: dict[int, Any] = {}

        def read_context(n: int) -> None:
            if n >= len(groups) or n in contexts:
                return
            group = groups[n]
            size = backend.work_size(*image_size(group[0].path, self.stage_id))
            start, end = bounds.get(group[0].scene_index, (group[0].frame_index, group[-1].frame_index + 1))
            contexts[n] = ahead.submit(context.scene_frames, start, end, s.context_frames, size)

        def write_scene(group, images, preds) -> None:
            nonlocal written
            for f, rgb, pred in zip(group, images, preds):
                if folder.wrote_before("records", f"{f.path.stem}.json"):
                    continue
                rec_path = folder.claim("records", f"{f.path.stem}.json")
                records = []
                group_px = int(round(s.group_distance * rgb.shape[0]))
                for k, inst in enumerate(split_instances(pred, alpha_threshold=alpha, min_area=min_area,
                                                         extract_characters=extract, group_px=group_px)):
                    name = f"{f.path.stem}_{k:02d}.png"
                    crop_path, mask_path = folder.claim("characters", name), folder.claim("masks", name)
                    box, rgba = write_instance(rgb, inst, padding, crop_path, mask_path)
                    records.append(InstanceRecord(
                        file=f"characters/{name}", mask=f"masks/{name}", source_frame=f.path.name,
                        frame_index=f.frame_index, scene_index=f.scene_index, bbox=tuple(inst.bbox),
                        crop_box=tuple(box), area=inst.area, score=round(inst.score, 4),
                        frame_size=(int(rgb.shape[1]), int(rgb.shape[0])),
                        static_share=static_share(inst, pred.static)))
                    measured[records[-1].file] = crop_quality.crop_measures(rgba, records[-1])
                    rles[records[-1].mask] = frame_rle(rgba[..., 3], box, records[-1].frame_size)
                write_json(rec_path, [r.to_dict() for r in records], indent=None)
                written += 1
                self.progress(resumed + written, total, unit="images")

        in_flight: deque = deque()          # (group, images, predictions or their future), scene order
        # OpenCV's thread pool on working-size images only adds hand-off cost (measured on the
        # registration: a third more CPU, half again the time under load); a core a scene instead
        cv2_threads = scene_workers.single_threaded_opencv() if s.model == "background" else None
        try:
            for n, group in enumerate(groups):
                images = [read_rgb(f.path, stage=self.stage_id) for f in group]
                shapes = {im.shape for im in images}
                if len(shapes) > 1 and s.model == "background":
                    raise StageInputError(f"frames of scene {group[0].scene_index} differ in size "
                                          f"({sorted(shapes)}); re-extract the frames with one size",
                                          path=group[0].path, stage=self.stage_id)
                extra = None
                if context is not None:
                    for m in range(n, n + workers + 2):      # the decoder runs ahead of the models
                        read_context(m)
                    extra = contexts.pop(n).result()
                indices = [f.frame_index for f in group]
                if pool is not None:
                    in_flight.append((group, images, pool.submit(images, indices, extra)))
                else:
                    in_flight.append((group, images, scene_workers.model_scene(backend, images, indices, extra)))
                # every worker busy and one scene queued while this thread writes the oldest one
                while len(in_flight) > (workers if pool is not None else 0):
                    g, ims, preds = in_flight.popleft()
                    write_scene(g, ims, pool.result(preds) if pool is not None else preds)
            while in_flight:
                g, ims, preds = in_flight.popleft()
                write_scene(g, ims, pool.result(preds) if pool is not None else preds)
        finally:
            if cv2_threads is not None:
                scene_workers.restore_opencv_threads(cv2_threads)
            if pool is not None:
                pool.close()
            if ahead is not None:
                ahead.shutdown(cancel_futures=True)
        return written, workers

    def _assess(self, folder: OutputFolder, frames: list, instances: list[InstanceRecord],
                measured: dict[str, Any]) -> tuple[list[InstanceRecord], dict[str, Any]]:
        """Quality flags of every instance (characters/quality.py) and the stage's quality.json;
        `measured`: the crops measured as they were written (the others, resumed, are read)."""
        from .characters.frames_input import read_rgb
        paths = {f.path.name: f.path for f in frames}
        flagged, report = crop_quality.assess_instances(
            folder.path, instances, lambda r: read_rgb(paths[r.source_frame], stage=self.stage_id),
            crop_quality.CropThresholds.from_mapping(self.settings.quality.as_dict()), measured=measured)
        report["mostly_junk"] = crop_quality.mostly_flagged(report)
        report["on_low_quality"] = self.settings.on_low_quality
        if report["mostly_junk"]:
            report["summary"] += f"; mostly junk (on_low_quality: {self.settings.on_low_quality})"
        write_json(folder.claim(crop_quality.QUALITY), report, indent=1)
        if report["flagged"]:
            self.log.warning("quality: %s", report["summary"])
        return flagged, report
