"""`evaluate`: score a run against a synthetic video's ground truth.

- scene cuts (`frames_dir`: a frame_extraction output; predicted cuts = the start frames of
  `scenes.csv` after the first) -> precision / recall / F1 via `video.metrics.scene_cut_metrics`;
- instance masks (`instances`: a segmentation output dir or its instances.jsonl) -> mean IoU via
  `characters.metrics.instance_mask_iou`;
- identity clustering (`clusters`: a clustering output dir or its clusters.jsonl, plus `instances`)
  -> ARI / purity via `characters.metrics.clustering_scores`.
Every input is optional; a score whose inputs are not configured, or whose scorer cannot be
imported, is reported under `unavailable` with the reason. Writes `metrics.json`.
See docs/stages-dataset.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..errors import StageConfigError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult
from .characters.formats import CLUSTERS, INSTANCES
from .video.formats import SCENES, read_scenes


def _file_in(value: str, name: str) -> Path:
    p = Path(value)
    return p / name if p.is_dir() or not p.suffix else p


class EvaluateStage(StageExecutor):
    type_name = "evaluate"
    version = "1"
    description = "Score scene cuts, instance masks and identity clusters against the ground truth"
    config_schema = {
        "ground_truth": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "frames_dir": {"type": "string", "nullable": True, "empty": False, "default": None},
        "instances": {"type": "string", "nullable": True, "empty": False, "default": None},
        "masks_dir": {"type": "string", "nullable": True, "empty": False, "default": None},
        "clusters": {"type": "string", "nullable": True, "empty": False, "default": None},
        "cut_truth": {"type": "string", "allowed": ["cut_frames", "scene_starts"], "default": "cut_frames"},
        "cut_tolerance": {"type": "integer", "min": 0, "max": 1000, "default": 1},
    }

    def validate_config(self) -> None:
        if self.settings.clusters and not self.settings.instances:
            raise StageConfigError("scoring clusters needs 'instances' too (the identities come from the instance "
                                   "masks)", stage=self.stage_id, key="instances")

    def input_files(self) -> list[str]:
        return [self.settings.ground_truth]

    def _ground_truth(self) -> dict[str, Any]:
        path = Path(self.settings.ground_truth)
        cut_truth = self.settings.cut_truth
        try:
            with open(path, encoding="utf-8") as fh:
                gt = json.load(fh)
        except FileNotFoundError as exc:
            raise StageInputError("ground truth file not found; it is the synthetic_video stage's "
                                  "ground_truth.json", path=path, stage=self.stage_id) from exc
        except ValueError as exc:
            raise StageInputError(f"ground truth is not valid JSON ({exc})", path=path, stage=self.stage_id) from exc
        if not isinstance(gt, dict) or cut_truth not in gt:
            raise StageInputError(f"ground truth has no '{cut_truth}' list; is it a synthetic_video "
                                  "ground_truth.json?", path=path, stage=self.stage_id)
        return gt

    def _predicted_cuts(self) -> list[int]:
        scenes = _file_in(self.settings.frames_dir, SCENES)
        if not scenes.is_file():
            raise StageInputError("scenes.csv not found; frames_dir must be a frame_extraction output_dir",
                                  path=scenes, stage=self.stage_id)
        return sorted(row.start_frame for row in read_scenes(scenes, stage=self.stage_id))[1:]

    def _character_scorers(self):
        try:
            from .characters import metrics
        except ImportError as exc:
            return None, f"pipeline_tasks.stages.characters.metrics cannot be imported ({exc})"
        return metrics, None

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        s = self.settings
        gt = self._ground_truth()
        gt_path = s.ground_truth
        report: dict[str, Any] = {"ground_truth": gt_path, "unavailable": {}}
        outputs: dict[str, Any] = {}
        unavailable: dict[str, str] = report["unavailable"]
        # scene cuts
        if s.frames_dir:
            from .video.metrics import scene_cut_metrics
            m = scene_cut_metrics(self._predicted_cuts(), gt[s.cut_truth], s.cut_tolerance)
            report["scene_cuts"] = m
            outputs.update(scene_precision=m["precision"], scene_recall=m["recall"], scene_f1=m["f1"])
        else:
            unavailable["scene_cuts"] = "frames_dir not configured"
        # masks and clusters
        instances = _file_in(s.instances, INSTANCES) if s.instances else None
        clusters = _file_in(s.clusters, CLUSTERS) if s.clusters else None
        for p in (instances, clusters):
            if p is not None and not p.is_file():
                raise StageInputError("file not found; check the evaluate stage's instances / clusters paths",
                                      path=p, stage=self.stage_id)
        metrics_mod, why = self._character_scorers() if instances else (None, None)
        masks_dir = s.masks_dir
        if instances is None:
            unavailable["masks"] = "instances not configured"
        elif metrics_mod is None:
            unavailable["masks"] = why
        else:
            m = self._call(metrics_mod.instance_mask_iou, unavailable, "masks", instances, gt_path, masks_dir)
            if m is not None:
                report["masks"] = m
                outputs.update(mask_mean_iou=m["mean_iou"], mask_precision=m["precision"], mask_recall=m["recall"])
        if clusters is None:
            unavailable["clusters"] = "clusters not configured"
        elif metrics_mod is None:
            unavailable["clusters"] = why
        else:
            m = self._call(metrics_mod.clustering_scores, unavailable, "clusters", clusters, instances, gt_path,
                           masks_dir)
            if m is not None:
                report["clusters"] = m
                outputs.update(cluster_ari=m["ari"], cluster_purity=m["purity"],
                               cluster_noise_fraction=m["noise_fraction"])
        folder = self.output_folder()
        out = folder.path
        folder.claim("metrics.json")
        write_json(out / "metrics.json", report)
        for k, v in unavailable.items():
            self.log.warning("%s score unavailable: %s", k, v)
        outputs = {k: round(float(v), 6) for k, v in outputs.items()}
        return self.result(outputs={**outputs, "metrics_json": str(out / "metrics.json"),
                                    "unavailable": dict(sorted(unavailable.items()))},
                           metrics=outputs)

    def _call(self, fn, unavailable: dict[str, str], name: str, *args):
        try:
            return fn(*args)
        except ImportError as exc:               # e.g. scipy / scikit-learn not installed
            unavailable[name] = f"{fn.__name__} needs a missing package ({exc}); install pipeline-tasks[characters]"
            return None
        except StageInputError as exc:           # a bad line in a listing: it names the file and line
            exc.stage = exc.stage or self.stage_id
            raise
        except (KeyError, ValueError, OSError) as exc:
            raise StageInputError(f"cannot score {name}: {type(exc).__name__}: {exc}", path=args[0],
                                  stage=self.stage_id) from exc
