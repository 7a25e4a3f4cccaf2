"""`training_data_prep`: clustered character crops -> a LoRA training dataset.

Reads a clustering stage's output (`clusters.jsonl` + crops), picks up to `target_size` crops
balanced across clusters (clusters below `min_cluster_size` and noise skipped; candidates ranked by
sharpness, visible size and optionally face presence; near-duplicates dropped), fits each into the
target resolution (square padding or aspect-ratio buckets) over a background fill, writes a caption
`.txt` beside each image, and lays the result out for kohya-ss (`<repeats>_<name>/` folders and a
dataset `.toml`) and Hugging Face `imagefolder` (`metadata.jsonl`). See docs/stages-dataset.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..atomic import PART_MARKER, atomic_path, write_text
from ..errors import StageConfigError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult
from .dataset import buckets, captions, dedup, kohya, quality, resize, selection
from .dataset.candidates import Candidate, load_candidates
from .dataset.formats import METADATA, MetadataRow, write_metadata

# ranking weights for the parts of `rank_weights` a config leaves out
RANK_WEIGHTS = {"sharpness": 1.0, "size": 1.0, "face": 1.0, "probability": 0.5}
CONCEPT_DIR = re.compile(r"^\d+_.+")
IMAGE_EXT = ".png"
SELECTION = "selection.jsonl"       # provenance: dataset image -> source crop and its ranking signals


class TrainingDataPrepStage(StageExecutor):
    type_name = "training_data_prep"
    version = "1"
    description = "Select, resize and caption clustered crops into a kohya-ss / HF imagefolder dataset"
    config_schema = {
        "input_dir": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "instances_jsonl": {"type": "string", "nullable": True, "empty": False, "default": None},
        "generate_captions": {"type": "boolean", "default": True},
        "target_size": {"type": "integer", "min": 1, "max": 10_000_000, "default": 100},
        "on_shortfall": {"type": "string", "allowed": ["warn", "error"], "default": "warn"},
        "resolution": {"type": "integer", "min": 64, "max": 8192, "default": 512},
        "bucket_mode": {"type": "string", "allowed": ["square_pad", "aspect_buckets"], "default": "square_pad"},
        "bucket_step": {"type": "integer", "min": 8, "max": 512, "default": 64},
        "background": {"type": "string", "regex": r"(?i)^(transparent|white|black|#[0-9a-f]{6})$",
                       "default": "white"},
        "margin": {"type": "number", "min": 0, "max": 0.4, "default": 0.0},
        "min_cluster_size": {"type": "integer", "min": 1, "max": 1_000_000, "default": 3},
        "include_noise": {"type": "boolean", "default": False},
        "cluster_names": {"type": "dict", "keysrules": {"type": ["integer", "string"]},
                          "valuesrules": {"type": "string", "empty": False}, "default": {}},
        "trigger_word": {"type": "string", "nullable": True, "default": None},
        "trigger_words": {"type": "dict", "keysrules": {"type": ["integer", "string"]},
                          "valuesrules": {"type": "string"}, "default": {}},
        "caption_template": {"type": "string", "empty": False, "default": captions.DEFAULT_TEMPLATE},
        "balance_repeats": {"type": "boolean", "default": True},
        "base_repeats": {"type": "integer", "min": 1, "max": 10_000, "default": 10},
        "dedup_threshold": {"type": "integer", "min": -1, "max": 64, "default": 4},
        "face_detector": {"type": "string", "nullable": True, "allowed": ["animeface", "mtcnn"], "default": None},
        "rank_weights": {"type": "dict", "schema": {
            "sharpness": {"type": "number", "min": 0}, "size": {"type": "number", "min": 0},
            "face": {"type": "number", "min": 0}, "probability": {"type": "number", "min": 0}}},
        "toml_name": {"type": "string", "regex": r"^[^/\\]+\.toml$", "default": "dataset.toml"},
    }


    # -- config ------------------------------------------------------------------------------------
    def _cluster_map(self, key: str) -> dict[int, str]:
        out = {}
        for k, v in (self.cfg(key) or {}).items():
            try:
                out[int(k)] = str(v)
            except (TypeError, ValueError):
                raise StageConfigError(f"{key} keys must be cluster numbers, not {k!r}", stage=self.stage_id,
                                       key=key) from None
        return out

    def validate_config(self) -> None:
        try:
            resize.parse_background(str(self.cfg("background")))
        except ValueError as exc:
            raise StageConfigError(str(exc), stage=self.stage_id, key="background") from None
        try:
            captions.check_template(str(self.cfg("caption_template")))
        except ValueError as exc:
            raise StageConfigError(str(exc), stage=self.stage_id, key="caption_template") from None
        names = self._cluster_map("cluster_names")
        self._cluster_map("trigger_words")
        folded = [kohya.safe_name(n).lower() for n in names.values()]
        if len(set(folded)) != len(folded):
            raise StageConfigError("cluster_names gives two clusters the same folder name", stage=self.stage_id,
                                   key="cluster_names")

    def input_files(self) -> list[str]:
        return []

    # -- the work ----------------------------------------------------------------------------------
    def _prepare_output(self) -> Path:
        out = Path(self.output_dir())
        try:
            out.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / ".write-test") as tmp:
                tmp.write_bytes(b"")
            (out / ".write-test").unlink()
        except OSError as exc:
            raise StageInputError(f"output directory is not writable ({exc.strerror or exc})", path=out,
                                  stage=self.stage_id) from exc
        for p in out.rglob(f"*{PART_MARKER}*"):
            p.unlink()
        return out

    def _name(self, cluster: int) -> str:
        names = self._cluster_map("cluster_names")
        return names.get(cluster, "noise" if cluster == -1 else f"character_{cluster}")

    def _trigger(self, cluster: int, name: str) -> str:
        words = self._cluster_map("trigger_words")
        if cluster in words:
            return words[cluster]
        return str(self.cfg("trigger_word") or "")

    def _measure(self, cands: list[Candidate]) -> None:
        faces = quality.FacePresence(self.cfg("face_detector"), self.stage_id) if self.cfg("face_detector") else None
        for i, c in enumerate(cands, 1):
            rgba = quality.load_rgba(c.path)
            c.sharpness = quality.sharpness(rgba)
            c.area = quality.visible_area(rgba)
            c.dhash = dedup.crop_hash(rgba)
            c.face = faces(rgba) if faces else 0.0
            self.progress(i, len(cands), unit="crops", message="ranking")

    def _select(self, cands: list[Candidate]) -> tuple[dict[int, list[Candidate]], dict[str, Any]]:
        groups: dict[int, list[Candidate]] = {}
        for c in cands:
            if c.cluster == -1 and not self.cfg("include_noise"):
                continue
            groups.setdefault(c.cluster, []).append(c)
        min_size = int(self.cfg("min_cluster_size"))
        skipped = {str(k): len(v) for k, v in sorted(groups.items()) if len(v) < min_size}
        groups = {k: v for k, v in groups.items() if len(v) >= min_size}
        if not groups:
            found = ", ".join(f"cluster {k}: {n}" for k, n in skipped.items()) or "none apart from noise"
            raise StageInputError(f"no cluster has at least min_cluster_size={min_size} crops ({found}); lower "
                                  "min_cluster_size or check the clustering stage", path=self.cfg("input_dir"),
                                  stage=self.stage_id)
        self._measure([c for g in groups.values() for c in g])
        weights = {**RANK_WEIGHTS, **(self.config.get("rank_weights") or {})}
        ranked, duplicates = {}, 0
        for k, g in groups.items():
            kept, dropped = dedup.drop_near_duplicates(selection.score_cluster(g, weights),
                                                       int(self.cfg("dedup_threshold")))
            ranked[k] = kept
            duplicates += len(dropped)
        available = {k: len(v) for k, v in ranked.items()}
        target = int(self.cfg("target_size"))
        total = sum(available.values())
        if target > total:
            msg = (f"target_size={target} is larger than the {total} usable crops (after skipping small clusters "
                   f"and {duplicates} near-duplicates)")
            if self.cfg("on_shortfall") == "error":
                raise StageInputError(msg + "; lower target_size or set on_shortfall: warn to use them all",
                                      path=self.cfg("input_dir"), stage=self.stage_id)
            self.log.warning("%s; using all %d", msg, total)
        alloc = selection.allocate(available, target)
        chosen = {k: ranked[k][:n] for k, n in sorted(alloc.items()) if n > 0}
        info = {"skipped_clusters": skipped, "duplicates_removed": duplicates, "available": total,
                "shortfall": max(0, target - total)}
        return chosen, info

    def _params_key(self) -> str:
        keys = ("resolution", "bucket_mode", "bucket_step", "background", "margin")
        return json.dumps({k: self.cfg(k) for k in keys}, sort_keys=True)

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        out = self._prepare_output()
        cands = load_candidates(self.cfg("input_dir"), self.config.get("instances_jsonl"), stage=self.stage_id)
        chosen, info = self._select(cands)
        counts = {k: len(v) for k, v in chosen.items()}
        repeats = selection.balance_repeats(counts, int(self.cfg("base_repeats")), bool(self.cfg("balance_repeats")))
        background = resize.parse_background(str(self.cfg("background")))
        mode, res, step = self.cfg("bucket_mode"), int(self.cfg("resolution")), int(self.cfg("bucket_step"))
        template = str(self.cfg("caption_template"))
        params = self._params_key()
        # images already made by an earlier run (item-level resume), wherever their folder was
        existing = {p.name: p for d in out.iterdir() if d.is_dir() and CONCEPT_DIR.match(d.name)
                    for p in d.iterdir() if p.suffix == IMAGE_EXT}
        wanted: dict[str, set[str]] = {}
        rows, picks, subsets, concepts = [], [], [], {}
        made = reused = 0
        total = sum(counts.values())
        done = 0
        for cluster, items in chosen.items():
            name = self._name(cluster)
            trigger = self._trigger(cluster, name)
            folder = kohya.folder_name(repeats[cluster], name)
            fdir = out / folder
            fdir.mkdir(exist_ok=True)
            wanted[folder] = set()
            for c in items:
                digest = hashlib.sha1((c.key + "|" + params).encode()).hexdigest()[:12]
                fname = f"{kohya.safe_name(name)}_{digest}{IMAGE_EXT}"
                dest = fdir / fname
                with open(c.path, "rb") as fh:     # size known before writing, from the crop itself
                    from PIL import Image
                    with Image.open(fh) as im:
                        size = buckets.target_size(im.width, im.height, res, mode, step)
                if dest.exists():
                    reused += 1
                elif fname in existing and existing[fname].exists():
                    os.replace(existing[fname], dest)
                    reused += 1
                else:
                    img = resize.fit_on_background(quality.load_rgba(c.path), size, background,
                                                   float(self.cfg("margin")))
                    with atomic_path(dest) as tmp:
                        img.save(tmp)
                    made += 1
                fields = captions.caption_fields(trigger=trigger, name=name, cluster=cluster, instance=c.instance,
                                                 size=size)
                text = (captions.render_caption(template, fields) if self.cfg("generate_captions")
                        else f"{trigger} {name}".strip())
                wanted[folder].add(fname)
                if self.cfg("generate_captions"):
                    write_text(dest.with_suffix(".txt"), text + "\n", fsync=False)
                    wanted[folder].add(dest.with_suffix(".txt").name)
                rows.append(MetadataRow(f"{folder}/{fname}", text))
                picks.append({"file_name": f"{folder}/{fname}", "source": str(c.path), "key": c.key,
                              "cluster": cluster, "score": round(c.score, 4), "sharpness": round(c.sharpness, 2),
                              "area": c.area, "face": c.face})
                done += 1
                self.progress(done, total, unit="images")
            subsets.append(kohya.Subset(image_dir=str(fdir.resolve()), num_repeats=repeats[cluster],
                                        class_tokens=f"{trigger} {name}".strip()))
            concepts[name] = {"cluster": cluster, "folder": folder, "images": len(items),
                              "repeats": repeats[cluster], "trigger": trigger}
        # remove what an earlier run made that this one does not want
        for d in list(out.iterdir()):
            if d.is_dir() and CONCEPT_DIR.match(d.name):
                if d.name not in wanted:
                    shutil.rmtree(d)
                    continue
                for p in d.iterdir():
                    if p.name not in wanted[d.name]:
                        p.unlink()
        write_metadata(out / METADATA, rows)
        write_text(out / SELECTION, "".join(json.dumps(p, sort_keys=True) + "\n"
                                            for p in sorted(picks, key=lambda p: p["file_name"])))
        toml_path = out / str(self.cfg("toml_name"))
        write_text(toml_path, kohya.dataset_toml(subsets, resolution=res, enable_bucket=(mode == "aspect_buckets"),
                                                 bucket_step=step))
        return self.result(
            outputs={"output_dir": str(out), "dataset_size": total, "metadata_jsonl": str(out / METADATA),
                     "selection_jsonl": str(out / SELECTION),
                     "kohya_toml": str(toml_path), "concepts": concepts,
                     "skipped_clusters": info["skipped_clusters"], "shortfall": info["shortfall"]},
            metrics={"candidates": len(cands), "available": info["available"],
                     "duplicates_removed": info["duplicates_removed"], "written": made, "reused": reused})
