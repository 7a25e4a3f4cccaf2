"""`training_data_prep`: clustered character crops -> a LoRA training dataset.

Reads a clustering stage's output (`clusters.jsonl` + crops), or several (a list: a gather over a
batch of clustering items, whose clusters stay apart as concepts `<item>_character_<n>`), picks up
to `target_size` crops
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
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_json, write_text
from ..errors import StageConfigError, StageInputError
from ..executor import OutputFolder, StageExecutor, project_path
from ..models import StageResult
from ..weights.packages import FACE_DETECTORS, require_face_detector
from .characters import names as names_file
from .dataset import buckets, captions, dedup, gates, kohya, quality, resize, selection
from .dataset.candidates import Candidate, cluster_folder, load_candidates
from .dataset.formats import METADATA, SELECTION, MetadataRow, write_metadata, write_selection
from .gathered import PATHS_SCHEMA, as_list, item_file_name, labelled

CONCEPT_DIR = re.compile(r"^\d+_.+")
IMAGE_EXT = ".png"


class TrainingDataPrepExecutor(StageExecutor):
    type_name = "training_data_prep"
    _origin: dict[int, tuple[str, int]] = {}     # over several clustering outputs: cluster -> (item, its number)
    version = "3"
    description = "Select, resize and caption clustered crops into a kohya-ss / HF imagefolder dataset"
    config_schema = {
        "input_dir": {**PATHS_SCHEMA, "required": True},     # a list: one clustering output per gathered item
        "output_dir": {"type": "string", "required": True, "empty": False},
        "instances_jsonl": {**PATHS_SCHEMA, "nullable": True, "default": None},   # a list: one per gathered item
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
            "sharpness": {"type": "number", "min": 0, "default": 1.0},
            "size": {"type": "number", "min": 0, "default": 1.0},
            "face": {"type": "number", "min": 0, "default": 1.0},
            "probability": {"type": "number", "min": 0, "default": 0.5}}},
        "toml_name": {"type": "string", "regex": r"^[^/\\]+\.toml$", "default": "dataset.toml"},
        "exclude_flags": {"type": "list", "schema": {"type": "string", "allowed": list(gates.FLAG_REASONS)},
                          "default": list(gates.FLAG_REASONS)},
        "include_junk": {"type": "boolean", "default": False},
        "max_upscale": {"type": "number", "min": 1, "max": 64, "default": 2.0},
        "on_low_quality": {"type": "string", "allowed": ["warn", "fail"], "default": "fail"},
        "max_junk_share": {"type": "number", "min": 0, "max": 1, "default": 0.5},
        "names": {"type": "string", "nullable": True, "empty": False, "default": None},
    }

    # -- config ------------------------------------------------------------------------------------
    def _cluster_map(self, key: str) -> dict[int | str, str]:
        """Cluster number, fingerprint (`cluster_ab12`) or, over several clustering outputs, "item:number"
        -> value."""
        out: dict[int | str, str] = {}
        for k, v in getattr(self.settings, key).items():
            if isinstance(k, str) and re.fullmatch(r"(cluster_)?[0-9a-f]{4,64}", k.strip().lower()) \
                    and not k.strip().isdigit():
                out[names_file.key(k)] = str(v)
                continue
            item, colon, number = str(k).rpartition(":")
            try:
                out[f"{item}:{int(number)}" if colon else int(k)] = str(v)
            except (TypeError, ValueError):
                raise StageConfigError(f"{key} keys must be cluster numbers, fingerprints (cluster_ab12) or "
                                       f"\"item:number\" when input_dir lists several clustering outputs, not {k!r}",
                                       stage=self.stage_id, key=key) from None
        return out

    def _names(self) -> names_file.Names:
        return names_file.load(self.settings.names, stage=self.stage_id)

    def input_files(self) -> list[str]:
        return [self.settings.names] if self.settings.names else []

    def packages(self) -> list[str]:
        detector = self.settings.face_detector
        return sorted(FACE_DETECTORS[detector][0].values()) if detector else []

    def validate_config(self) -> None:
        if self.settings.face_detector:
            require_face_detector(self.settings.face_detector, stage=self.stage_id)
        try:
            captions.check_template(self.settings.caption_template)
        except ValueError as exc:
            raise StageConfigError(str(exc), stage=self.stage_id, key="caption_template") from None
        names = self._cluster_map("cluster_names")
        self._cluster_map("trigger_words")
        folded = [kohya.safe_name(n).lower() for n in [*names.values(), *self._names().names.values()]]
        if len(set(folded)) != len(folded):
            raise StageConfigError("cluster_names gives two clusters the same folder name", stage=self.stage_id,
                                   key="cluster_names")

    # -- the work ----------------------------------------------------------------------------------
    def _name(self, cluster: int, identity: str = "") -> str:
        """names.yaml's name of the identity, else cluster_names' (by fingerprint, then number)."""
        names = self._cluster_map("cluster_names")
        named = self._names().name(identity) or (names.get(names_file.key(identity)) if identity else None)
        if named:
            return named
        origin = self._origin.get(cluster)
        if origin is not None:                  # a cluster of one of several clustering outputs
            item, number = origin
            return names.get(f"{item}:{number}", names.get(cluster, f"{item}_character_{identity or number}"))
        return names.get(cluster, "noise" if cluster == -1 else f"character_{identity or cluster}")

    def _trigger(self, cluster: int, identity: str = "") -> str:
        words = self._cluster_map("trigger_words")
        if identity and names_file.key(identity) in words:
            return words[names_file.key(identity)]
        origin = self._origin.get(cluster)
        if origin is not None and f"{origin[0]}:{origin[1]}" in words:
            return words[f"{origin[0]}:{origin[1]}"]
        if cluster in words:
            return words[cluster]
        return self.settings.trigger_word or ""

    def _label(self, cluster: int) -> str:
        """How messages and outputs name a cluster: its number, or "item:number" over several outputs."""
        origin = self._origin.get(cluster)
        return f"{origin[0]}:{origin[1]}" if origin is not None else str(cluster)

    def _candidates(self) -> list[Candidate]:
        """The crops of one clustering output, or of several: then each (item, cluster) is a
        cluster of its own, numbered in input order (`_origin` maps the number back), and
        `instances_jsonl`, when a list as long, is paired with `input_dir` in order."""
        s = self.settings
        self._origin: dict[int, tuple[str, int]] = {}
        sources = labelled(s.input_dir)
        if len(sources) <= 1:
            return load_candidates(sources[0][1], s.instances_jsonl, stage=self.stage_id)
        instances = as_list(s.instances_jsonl)
        paired = len(instances) == len(sources)
        if instances and not paired and len(instances) != 1:
            raise StageConfigError(f"instances_jsonl lists {len(instances)} files for {len(sources)} input folders; "
                                   "they are paired in order", stage=self.stage_id, key="instances_jsonl")
        numbers: dict[tuple[str, int], int] = {}
        out = []
        for n, (label, folder) in enumerate(sources):
            listing = instances[n] if paired else (instances[0] if instances else None)
            for c in load_candidates(folder, listing, stage=self.stage_id):
                c.item = f"{label}-{c.item}" if c.item else label
                c.key = f"{label}/{c.key}"
                if c.cluster != -1:
                    number = numbers.setdefault((label, c.cluster), len(numbers))
                    self._origin[number] = (label, c.cluster)
                    c.cluster = number
                out.append(c)
        return out

    def _measure(self, cands: list[Candidate]) -> None:
        detector = self.settings.face_detector
        faces = quality.FacePresence(detector, self.stage_id) if detector else None
        for i, c in enumerate(cands, 1):
            rgba = quality.load_rgba(c.path)
            c.sharpness = quality.sharpness(rgba)
            c.area = quality.visible_area(rgba)
            c.dhash = dedup.crop_hash(rgba)
            c.face = faces(rgba) if faces else 0.0
            self.progress(i, len(cands), unit="crops", message="ranking")

    def _select(self, cands: list[Candidate]) -> tuple[dict[int, list[Candidate]], dict[str, Any]]:
        s = self.settings
        groups: dict[int, list[Candidate]] = {}
        for c in cands:
            if c.cluster == -1 and not s.include_noise:
                continue
            groups.setdefault(c.cluster, []).append(c)
        min_size = s.min_cluster_size
        skipped = {self._label(k): len(v) for k, v in sorted(groups.items()) if len(v) < min_size}
        groups = {k: v for k, v in groups.items() if len(v) >= min_size}
        gated = self._gate([c for g in groups.values() for c in g])
        pool = {k: len(v) for k, v in groups.items()}
        groups = {}
        for c in gated.kept:
            groups.setdefault(c.cluster, []).append(c)
        if not groups and pool:
            raise StageInputError(f"no crop passes the quality gates ({gated.summary()}); see quality.json, "
                                  "or relax exclude_flags / max_upscale / include_junk", path=s.input_dir,
                                  stage=self.stage_id)
        if not groups:
            found = ", ".join(f"cluster {k}: {n}" for k, n in skipped.items()) or "none apart from noise"
            raise StageInputError(f"no cluster has at least min_cluster_size={min_size} crops ({found}); lower "
                                  "min_cluster_size or check the clustering stage",
                                  path=", ".join(as_list(s.input_dir)), stage=self.stage_id)
        self._measure([c for g in groups.values() for c in g])
        weights = s.rank_weights.as_dict()
        ranked, duplicates = {}, 0
        for k, g in groups.items():
            kept, dropped = dedup.drop_near_duplicates(selection.score_cluster(g, weights), s.dedup_threshold)
            ranked[k] = kept
            duplicates += len(dropped)
        available = {k: len(v) for k, v in ranked.items()}
        target = s.target_size
        total = sum(available.values())
        if target > total:
            msg = (f"target_size={target} is larger than the {total} usable crops (after skipping small clusters "
                   f"and {duplicates} near-duplicates)")
            if s.on_shortfall == "error":
                raise StageInputError(msg + "; lower target_size or set on_shortfall: warn to use them all",
                                      path=", ".join(as_list(s.input_dir)), stage=self.stage_id)
            self.log.warning("%s; using all %d", msg, total)
        alloc = selection.allocate(available, target)
        chosen = {k: ranked[k][:n] for k, n in sorted(alloc.items()) if n > 0}
        info = {"skipped_clusters": skipped, "duplicates_removed": duplicates, "available": total,
                "shortfall": max(0, target - total), "gates": gated}
        return chosen, info

    def _verdicts(self) -> dict[str, str]:
        """Cluster folder -> verdict from the clustering outputs' quality.json ("item/folder" over several)."""
        sources = labelled(self.settings.input_dir)
        if len(sources) <= 1:
            return gates.read_verdicts(sources[0][1])
        return {f"{label}/{k}": v for label, folder in sources for k, v in gates.read_verdicts(folder).items()}

    def _folder_of(self, c: Candidate) -> str:
        origin = self._origin.get(c.cluster)
        if origin is None:
            return cluster_folder(c.cluster, c.identity)
        return f"{origin[0]}/{cluster_folder(origin[1], c.identity)}"

    def _gate(self, pool: list[Candidate]) -> gates.GateResult:
        """The quality gates (dataset/gates.py) over the pool; a pool that is mostly junk stops the
        stage (on_low_quality: fail) or is said in the log (warn)."""
        s = self.settings
        names = self._names()
        gated = gates.gate(pool, self._verdicts(), self._folder_of, excluded=names.excluded,
                           exclude_flags=s.exclude_flags, include_junk=s.include_junk, max_upscale=s.max_upscale,
                           resolution=s.resolution, mode=s.bucket_mode, step=s.bucket_step, margin=s.margin)
        if gated.junk_share > s.max_junk_share:
            msg = (f"the dataset would be mostly junk: {gated.left_out} of {gated.pool} crops fail the quality "
                   f"gates ({gated.summary()})")
            if s.on_low_quality == "fail":
                raise StageInputError(msg + "; check the segmentation and clustering quality.json, or set "
                                      "on_low_quality: warn to build a dataset of the rest", path=s.input_dir,
                                      stage=self.stage_id)
            self.log.warning("%s; going on with the rest (on_low_quality: warn)", msg)
        return gated

    def _params_key(self) -> str:
        keys = ("resolution", "bucket_mode", "bucket_step", "background", "margin")
        return json.dumps({k: getattr(self.settings, k) for k in keys}, sort_keys=True)

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        s = self.settings
        folder = self.output_folder()
        out = folder.path
        cands = self._candidates()
        chosen, info = self._select(cands)
        counts = {k: len(v) for k, v in chosen.items()}
        repeats = selection.balance_repeats(counts, s.base_repeats, s.balance_repeats)
        # images an earlier run made (item-level resume), wherever their concept folder was
        existing = {rel.partition("/")[2]: out / rel for rel in folder.previous_files
                    if rel.count("/") == 1 and rel.endswith(IMAGE_EXT) and CONCEPT_DIR.match(rel.partition("/")[0])
                    and folder.wrote_before(rel)}
        images = _Images(self, folder, existing)
        rows, picks, subsets, concepts = [], [], [], {}
        total = sum(counts.values())
        for cluster, items in chosen.items():
            identity = items[0].identity if items else ""
            name = self._name(cluster, identity)
            trigger = self._trigger(cluster, identity)
            concept = kohya.folder_name(repeats[cluster], name)
            folder.folder(concept)
            for c in items:
                fname, size = images.make(c, concept, name)
                number = self._origin.get(cluster, (None, cluster))[1]     # the clustering's own number
                fields = captions.caption_fields(trigger=trigger, name=name, cluster=number, instance=c.instance,
                                                 size=size)
                text = captions.render_caption(s.caption_template, fields) if s.generate_captions \
                    else f"{trigger} {name}".strip()
                if "multi" in c.flags:          # several characters: never captioned solo
                    text = captions.without_solo(text)
                if s.generate_captions:
                    caption = folder.claim(concept, Path(fname).stem + ".txt")
                    write_text(caption, text + "\n", fsync=False)
                rows.append(MetadataRow(f"{concept}/{fname}", text, name))
                picks.append({"file_name": f"{concept}/{fname}", "source": str(c.path), "key": c.key,
                              "cluster": number, "score": round(c.score, 4), "sharpness": round(c.sharpness, 2),
                              "area": c.area, "face": c.face, **({"item": c.item} if c.item else {})})
                self.progress(len(rows), total, unit="images")
            subsets.append(kohya.Subset(image_dir=project_path(out / concept), num_repeats=repeats[cluster],
                                        class_tokens=f"{trigger} {name}".strip()))
            item, number = self._origin.get(cluster, (None, cluster))
            concepts[name] = {"cluster": number, **({"item": item} if item else {}), "folder": concept,
                              "images": len(items), "repeats": repeats[cluster], "trigger": trigger,
                              **({"identity": identity} if identity else {})}
        gate_report = info["gates"].report(s.max_junk_share)
        for listing in (METADATA, SELECTION, s.toml_name, gates.QUALITY):
            folder.claim(listing)
        write_json(out / gates.QUALITY, gate_report, indent=1)
        write_metadata(out / METADATA, rows)
        write_selection(out / SELECTION, picks)
        toml_path = out / s.toml_name
        write_text(toml_path, kohya.dataset_toml(subsets, resolution=s.resolution,
                                                 enable_bucket=(s.bucket_mode == "aspect_buckets"),
                                                 bucket_step=s.bucket_step))
        return self.result(
            outputs={"output_dir": str(out), "dataset_size": total, "metadata_jsonl": str(out / METADATA),
                     "selection_jsonl": str(out / SELECTION),
                     "kohya_toml": str(toml_path), "concepts": concepts,
                     "skipped_clusters": info["skipped_clusters"], "shortfall": info["shortfall"],
                     "quality_json": str(out / gates.QUALITY), "quality_summary": gate_report["summary"]},
            metrics={"candidates": len(cands), "available": info["available"],
                     "duplicates_removed": info["duplicates_removed"], "written": images.made,
                     "reused": images.reused})


class _Images:
    """The dataset images of one run: each made once, then kept while the crop and the image
    settings stay the same (its name is a hash of both), also when its concept folder is renamed."""

    def __init__(self, stage: TrainingDataPrepExecutor, folder: OutputFolder, existing: dict[str, Path]):
        s = stage.settings
        self.folder = folder
        self.existing = existing
        self.params = stage._params_key()
        self.background = resize.parse_background(s.background)
        self.mode, self.resolution, self.step, self.margin = s.bucket_mode, s.resolution, s.bucket_step, s.margin
        self.made = self.reused = 0

    def make(self, c: Candidate, concept: str, name: str) -> tuple[str, tuple[int, int]]:
        """The image of crop `c` in folder `concept`: its file name and size."""
        from PIL import Image

        digest = hashlib.sha1((c.key + "|" + self.params).encode()).hexdigest()[:12]
        fname = f"{kohya.safe_name(name)}_{item_file_name(c.item, digest)}{IMAGE_EXT}"
        rel = f"{concept}/{fname}"
        dest = self.folder.claim(rel)
        with open(c.path, "rb") as fh:     # size known before writing, from the crop itself
            with Image.open(fh) as im:
                size = buckets.target_size(im.width, im.height, self.resolution, self.mode, self.step)
        if self.folder.wrote_before(rel):
            self.reused += 1
        elif fname in self.existing and self.existing[fname].exists():
            os.replace(self.existing[fname], dest)
            self.reused += 1
        else:
            img = resize.fit_on_background(quality.load_rgba(c.path), size, self.background, self.margin)
            with atomic_path(dest) as tmp:
                img.save(tmp)
            self.made += 1
        return fname, size
