"""`evaluate`: score a run against a synthetic video's ground truth.

- scene cuts (`frames_dir`: a frame_extraction output; predicted cuts = the start frames of
  `scenes.csv` after the first) -> precision / recall / F1 via `video.metrics.scene_cut_metrics`;
- instance masks (`instances`: a segmentation output dir or its instances.jsonl) -> mean IoU via
  `characters.metrics.instance_mask_iou`;
- what reached a dataset (`dataset`: a training_data_prep output dir or its selection.jsonl, plus
  `instances`) -> crops whose mask is poor or holds several characters or none, via
  `characters.metrics.dataset_scores`;
- identity clustering (`clusters`: a clustering output dir or its clusters.jsonl, plus `instances`)
  -> ARI / purity via `characters.metrics.clustering_scores`.
Every input is optional; a score whose inputs are not configured, or whose scorer cannot be
imported, is reported under `unavailable` with the reason. Writes `metrics.json`.
Gathered over a batch stage's items, `ground_truth`, `frames_dir`, `instances` and `masks_dir` are
lists (paired in order): scene cuts and masks are scored per item and pooled (from the summed
counts); `clusters` is one clustering over every item (its files carry the item's label) or a list
of per-item clusterings, scored over the pooled instances (identities are the ground truth's
character ids, the same across items that share a cast).
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
from .dataset.formats import SELECTION, read_selection
from .gathered import PATHS_SCHEMA, as_list, labelled
from .video.formats import SCENES, read_scenes


def _file_in(value: str, name: str) -> Path:
    p = Path(value)
    return p / name if p.is_dir() or not p.suffix else p


class EvaluateExecutor(StageExecutor):
    type_name = "evaluate"
    version = "3"
    description = "Score scene cuts, instance masks, identity clusters and dataset crops against the ground truth"
    config_schema = {
        "ground_truth": {**PATHS_SCHEMA, "required": True},          # lists: one per gathered item
        "output_dir": {"type": "string", "required": True, "empty": False},
        "frames_dir": {**PATHS_SCHEMA, "nullable": True, "default": None},
        "instances": {**PATHS_SCHEMA, "nullable": True, "default": None},
        "masks_dir": {**PATHS_SCHEMA, "nullable": True, "default": None},
        "clusters": {**PATHS_SCHEMA, "nullable": True, "default": None},
        "dataset": {"type": "string", "nullable": True, "default": None, "empty": False},
        "cut_truth": {"type": "string", "allowed": ["cut_frames", "scene_starts"], "default": "cut_frames"},
        "cut_tolerance": {"type": "integer", "min": 0, "max": 1000, "default": 1},
    }

    def validate_config(self) -> None:
        s = self.settings
        if isinstance(s.ground_truth, tuple):
            for key in ("frames_dir", "instances", "masks_dir"):
                given = as_list(getattr(s, key))
                if given and len(given) != len(s.ground_truth):
                    raise StageConfigError(f"{key} lists {len(given)} paths for {len(s.ground_truth)} ground truths; "
                                           "they are paired in order", stage=self.stage_id, key=key)
            clusters = as_list(s.clusters)
            if len(clusters) > 1 and len(clusters) != len(s.ground_truth):
                raise StageConfigError(f"clusters lists {len(clusters)} paths for {len(s.ground_truth)} ground "
                                       "truths: give one clustering over every item, or one per item in order",
                                       stage=self.stage_id, key="clusters")
        else:
            for key in ("frames_dir", "instances", "masks_dir", "clusters"):
                if isinstance(getattr(s, key), tuple):
                    raise StageConfigError(f"{key} is a list but ground_truth is one file; lists are paired with "
                                           "a list of ground truths (a gather over a batch)", stage=self.stage_id,
                                           key=key)
        if s.dataset and (not s.instances or isinstance(s.ground_truth, tuple)):
            raise StageConfigError("scoring a dataset needs 'instances' (its crops are segmentation instances) and "
                                   "one ground truth", stage=self.stage_id, key="dataset")
        if s.clusters and not s.instances:
            raise StageConfigError("scoring clusters needs 'instances' too (the identities come from the instance "
                                   "masks)", stage=self.stage_id, key="instances")

    def input_files(self) -> list[str]:
        return as_list(self.settings.ground_truth)

    def _ground_truth(self, path: str | None = None) -> dict[str, Any]:
        path = Path(path or self.settings.ground_truth)
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

    def _predicted_cuts(self, frames_dir: str | None = None) -> list[int]:
        scenes = _file_in(frames_dir or self.settings.frames_dir, SCENES)
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

    def _gathered(self) -> StageResult:
        """Several items: each item's scene cut scores and pooled ones (from the summed counts), then
        masks and clusters (`_gathered_characters`)."""
        from .video.metrics import scene_cut_metrics
        s = self.settings
        truths = labelled(s.ground_truth)
        frames = as_list(s.frames_dir)
        report: dict[str, Any] = {"ground_truth": [str(p) for _, p in truths], "unavailable": {}}
        outputs: dict[str, Any] = {}
        if frames:
            by_item = {}
            for (label, truth), frames_dir in zip(truths, frames):
                gt = self._ground_truth(str(truth))
                by_item[label] = scene_cut_metrics(self._predicted_cuts(frames_dir), gt[s.cut_truth], s.cut_tolerance)
            tp, fp, fn = (sum(m[k] for m in by_item.values())
                          for k in ("true_positives", "false_positives", "false_negatives"))
            precision = tp / (tp + fp) if tp + fp else 1.0
            recall = tp / (tp + fn) if tp + fn else 1.0
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
            report["scene_cuts"] = {"precision": precision, "recall": recall, "f1": f1, "true_positives": tp,
                                    "false_positives": fp, "false_negatives": fn, "by_item": by_item}
            outputs.update(scene_precision=precision, scene_recall=recall, scene_f1=f1)
        else:
            report["unavailable"]["scene_cuts"] = "frames_dir not configured"
        self._gathered_characters(truths, report, outputs)
        folder = self.output_folder()
        folder.claim("metrics.json")
        write_json(folder.path / "metrics.json", report)
        outputs = {k: round(float(v), 6) for k, v in outputs.items()}
        return self.result(outputs={**outputs, "metrics_json": str(folder.path / "metrics.json"), "items": len(truths),
                                    "unavailable": dict(sorted(report["unavailable"].items()))}, metrics=outputs)

    def _gathered_characters(self, truths: list[tuple[str, Path]], report: dict[str, Any],
                             outputs: dict[str, Any]) -> None:
        """Masks and clusters of several items: masks scored per item and pooled from the summed
        counts; clusters over the pooled instances, each instance file prefixed by its item's label."""
        s = self.settings
        unavailable = report["unavailable"]
        instances = [_file_in(p, INSTANCES) for p in as_list(s.instances)]
        if not instances:
            unavailable["masks"] = unavailable["clusters"] = "instances not configured"
            return
        for p in instances:
            if not p.is_file():
                raise StageInputError("file not found; check the evaluate stage's instances paths", path=p,
                                      stage=self.stage_id)
        metrics_mod, why = self._character_scorers()
        if metrics_mod is None:
            unavailable["masks"] = unavailable["clusters"] = why
            return
        masks = as_list(s.masks_dir) or [None] * len(instances)
        labels = [label for label, _ in truths]
        by_item = {}
        for label, (_, truth), listing, masks_dir in zip(labels, truths, instances, masks):
            m = self._call(metrics_mod.instance_mask_iou, unavailable, "masks", listing, truth, masks_dir)
            if m is None:
                break
            by_item[label] = m
        else:
            report["masks"] = pooled = _pooled_masks(by_item)
            outputs.update(mask_mean_iou=pooled["mean_iou"], mask_precision=pooled["precision"],
                           mask_recall=pooled["recall"])
        clusters = [_file_in(p, CLUSTERS) for p in as_list(s.clusters)]
        if not clusters:
            unavailable["clusters"] = "clusters not configured"
            return
        for p in clusters:
            if not p.is_file():
                raise StageInputError("file not found; check the evaluate stage's clusters paths", path=p,
                                      stage=self.stage_id)
        truth_of: dict[str, int | None] = {}
        for label, (_, truth), listing, masks_dir in zip(labels, truths, instances, masks):
            found = self._call(metrics_mod.identity_labels, unavailable, "clusters", listing, truth, masks_dir)
            if found is None:
                return
            truth_of.update({f"{label}/{f}": t for f, t in found.items()})
        from .characters.formats import read_clusters
        assigned: dict[str, int] = {}
        if len(clusters) == 1:          # one clustering over every item: its files carry the item's label
            for r in read_clusters(clusters[0], stage=self.stage_id):
                assigned[r.file if r.item else f"{labels[0]}/{r.file}"] = r.cluster
        else:                           # one clustering per item: its clusters are its own
            numbers: dict[tuple[str, int], int] = {}
            for label, listing in zip(labels, clusters):
                for r in read_clusters(listing, stage=self.stage_id):
                    c = r.cluster if r.cluster == -1 else numbers.setdefault((label, r.cluster), len(numbers))
                    assigned[f"{label}/{r.file}"] = c
        m = self._call(metrics_mod.scores_of, unavailable, "clusters", truth_of, assigned)
        if m is not None:
            report["clusters"] = m
            outputs.update(cluster_ari=m["ari"], cluster_purity=m["purity"], cluster_noise_fraction=m["noise_fraction"])

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        s = self.settings
        if isinstance(s.ground_truth, tuple):
            return self._gathered()
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
                outputs.update(mask_mean_iou=m["mean_iou"], mask_precision=m["precision"], mask_recall=m["recall"],
                               mask_poor=m["poor"])
        if s.dataset and metrics_mod is not None:
            selection = _file_in(s.dataset, SELECTION)
            if not selection.is_file():
                raise StageInputError(f"{SELECTION} not found; dataset must be a training_data_prep output_dir",
                                      path=selection, stage=self.stage_id)
            picks = read_selection(selection, stage=self.stage_id)
            m = self._call(metrics_mod.dataset_scores, unavailable, "dataset", instances, gt_path, picks, masks_dir)
            if m is not None:
                report["dataset"] = m
                outputs.update(dataset_crops=m["crops"], dataset_bad=m["bad"], dataset_bad_share=m["bad_share"])
                if m["bad"]:
                    self.log.warning("%d of %d dataset crop(s) are not one whole character (poor mask %d, several "
                                     "characters %d, background %d)", m["bad"], m["crops"], m["poor"], m["multi"],
                                     m["background"])
        elif s.dataset:
            unavailable["dataset"] = why or "instances not configured"
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
                               cluster_noise_fraction=m["noise_fraction"], cluster_solo_purity=m["solo_purity"],
                               multi_crops=m["multi_crops"], multi_flagged=m["multi_flagged"],
                               clusters_mostly_multi=m["clusters_mostly_multi"],
                               junk_or_multi_clusters=len(m["junk_clusters"]) + len(m["multi_clusters"]))
                if m["multi_crops"] > m["multi_flagged"] or m["clusters_mostly_multi"]:
                    self.log.warning("%d crop(s) show several characters (%d flagged multi); %d cluster(s) are "
                                     "mostly such crops", m["multi_crops"], m["multi_flagged"],
                                     m["clusters_mostly_multi"])
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


def _pooled_masks(by_item: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mask scores of several items from their summed counts (IoUs weighted by matches), with each item's."""
    total = {k: sum(m[k] for m in by_item.values()) for k in ("matched", "missed", "false_positives", "frames",
                                                               "ignored_gt", "poor")}
    total["poor_share"] = total["poor"] / total["matched"] if total["matched"] else 0.0
    iou_sum = sum(m["mean_iou"] * m["matched"] for m in by_item.values())
    matched, gt = total["matched"], total["matched"] + total["missed"]
    return {**total, "mean_iou": iou_sum / matched if matched else 0.0, "mean_iou_all": iou_sum / gt if gt else 0.0,
            "precision": matched / (matched + total["false_positives"]) if matched + total["false_positives"] else 1.0,
            "recall": matched / gt if gt else 1.0, "by_item": by_item}
