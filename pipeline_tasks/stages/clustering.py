"""`clustering`: group character crops by identity (embeddings + HDBSCAN).

Reads the segmentation output (`instances.jsonl` + `characters/`) or any folder of RGBA PNGs. See
docs/stages-characters.md for the embedders, the config and the output formats.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, is_partial, write_json
from ..errors import ModelWeightsError, PipelineError, StageConfigError, StageInputError
from ..executor import OutputFolder, StageExecutor
from ..models import StageResult
from ..weights.packages import FACE_DETECTORS, require, require_face_detector
from ..weights.store import catalogue_names, resolve_weights
from .characters import embedding_cache, identities
from .characters.formats import CLUSTERS, INSTANCES, ClusterRecord, read_instances, write_clusters
from .gathered import PATHS_SCHEMA, item_file_name, labelled

EMBED_CACHE = "embeddings.npz"
QUALITY = "quality.json"
FACENET = {"torch": "torch", "facenet_pytorch": "facenet-pytorch"}   # the `facenet` embedder's packages
AUTO_MAX_CLUSTER_SIZE = 10     # `min_cluster_size: null`: 10, or 1/AUTO_SHARE of the crops when fewer (at least 3)
AUTO_MIN_CLUSTER_SIZE = 3
AUTO_SHARE = 12


def auto_min_cluster_size(crops: int) -> int:
    """The default HDBSCAN min_cluster_size for this many crops: 10, but one twelfth of the crops
    (rounded, at least 3) below 120 crops, so a short video whose characters are each seen a handful of
    times still forms one cluster per character instead of calling them noise."""
    return max(AUTO_MIN_CLUSTER_SIZE, min(AUTO_MAX_CLUSTER_SIZE, round(crops / AUTO_SHARE)))


class ClusteringExecutor(StageExecutor):
    type_name = "clustering"
    version = "3"
    description = "Cluster character crops by identity (colour/face embeddings + HDBSCAN)"
    config_schema = {
        "input_dir": {**PATHS_SCHEMA, "required": True},     # a list: crops gathered from several items
        "output_dir": {"type": "string", "required": True, "empty": False},
        "min_cluster_size": {"type": "integer", "min": 2, "max": 1_000_000, "nullable": True, "default": None},
        "min_samples": {"type": "integer", "min": 1, "max": 1_000_000, "nullable": True, "default": None},
        "cluster_selection_epsilon": {"type": "number", "min": 0, "max": 10, "default": 0.0},
        "cluster_selection_method": {"type": "string", "allowed": ["eom", "leaf"], "default": "eom"},
        "use_face_detection": {"type": "boolean", "default": False},
        "face_detector": {"type": "string", "allowed": ["animeface", "mtcnn"], "default": "animeface"},
        "face_weight": {"type": "number", "min": 0, "max": 10, "default": 1.0},
        "embedder": {"type": "string", "allowed": ["colour", "facenet"], "default": "colour"},
        "embedder_weights": {"type": "string", "nullable": True, "empty": False, "default": None},
        "layout_weight": {"type": "number", "min": 0, "max": 10, "default": 0.5},
        "merge_similarity": {"type": "number", "min": 0, "max": 1, "default": 1.0},
        "reassign_noise": {"type": "boolean", "default": False},
        "reassign_similarity": {"type": "number", "min": 0, "max": 1, "default": 0.9},
        "device": {"type": "string", "allowed": ["cpu", "cuda", "mps"], "default": "cpu"},
        "batch_size": {"type": "integer", "min": 1, "max": 4096, "default": 64},
        "contact_sheet_max": {"type": "integer", "min": 1, "max": 1024, "default": 64},
        "junk_share": {"type": "number", "min": 0.01, "max": 1, "default": 0.5},
        "min_cohesion": {"type": "number", "min": 0, "max": 1, "default": 0.8},
        "min_whole": {"type": "integer", "min": 1, "max": 1_000_000, "default": 3},
        "min_whole_share": {"type": "number", "min": 0, "max": 1, "default": 0.35},
        "min_whole_scenes": {"type": "integer", "min": 1, "max": 1_000_000, "default": 2},
        "on_low_quality": {"type": "string", "allowed": ["warn", "fail"], "default": "warn"},
        "known_identities": {**PATHS_SCHEMA, "nullable": True, "default": None},
        "unmix_gain": {"type": "number", "min": 0, "max": 1, "default": 0.6},
    }

    def default_resources(self) -> dict[str, float | str]:
        """The torch models (facenet embedder, MTCNN faces) on `device: cuda` hold one GPU."""
        return {"cpu": 1, "gpu": 1} if self.settings.device == "cuda" else {"cpu": 1}

    def packages(self) -> list[str]:
        s = self.settings
        needs = dict(FACENET) if s.embedder == "facenet" else {}
        if s.use_face_detection:
            needs.update(FACE_DETECTORS[s.face_detector][0])
        return sorted(set(needs.values()))

    def validate_config(self) -> None:
        s = self.settings
        if s.embedder == "facenet":
            require(FACENET, "embedder 'facenet'", "ml", stage=self.stage_id, key="embedder")
            self._embedder_weights()
        elif s.embedder_weights:
            raise StageConfigError("the 'colour' embedder uses no weights; remove 'embedder_weights' or choose "
                                   "embedder 'facenet'", stage=self.stage_id, key="embedder_weights")
        if s.use_face_detection:
            require_face_detector(s.face_detector, stage=self.stage_id)
        if s.min_samples is not None and s.min_samples > (s.min_cluster_size or AUTO_MAX_CLUSTER_SIZE) * 10:
            raise StageConfigError("min_samples is far larger than min_cluster_size; HDBSCAN would call almost "
                                   "everything noise", stage=self.stage_id, key="min_samples")

    def _embedder_weights(self) -> str:
        """The facenet state_dict: `embedder_weights` as a path or a catalogue name, or the default
        catalogue entry; verified when it comes from the model cache."""
        path = resolve_weights(self.settings.embedder_weights, "facenet", stage=self.stage_id, key="embedder_weights")
        if not Path(path).is_file():
            raise ModelWeightsError(f"embedder weights not found: {path}; give an InceptionResnetV1 state_dict file "
                                    f"or a model catalogue name ({', '.join(catalogue_names('facenet'))}; see "
                                    "`pipeline-tasks models list`)", path=path, stage=self.stage_id,
                                    key="embedder_weights")
        return path

    def input_files(self) -> list[str]:
        known = [str(p) for _, p in labelled(self.settings.known_identities)]
        if self.settings.embedder != "facenet":
            return known
        try:
            return [self._embedder_weights(), *known]
        except PipelineError:
            return known

    # -- inputs -----------------------------------------------------------------------------------
    def _list_crops(self) -> tuple[list[Path], list[str], list[str], list[tuple[str, ...]], list[tuple[str, int]]]:
        """Every crop's path, its name in clusters.jsonl, its item, its quality flags and its scene
        (item, scene index): with several input folders (a gather over items) the item is the
        folder's label and the name starts with `<item>/`."""
        paths, files, items, flags, scenes = [], [], [], [], []
        for label, d in labelled(self.settings.input_dir):
            if not d.is_dir():
                raise StageInputError("input directory does not exist; run the segmentation stage first or fix "
                                      "input_dir", path=d, stage=self.stage_id)
            listing = d / INSTANCES
            if listing.exists():
                records = read_instances(listing, stage=self.stage_id)
                found = [r.file for r in records]
                flags += [r.flags for r in records]
                scenes += [(label, r.scene_index) for r in records]
            else:
                found = sorted(p.name for p in d.iterdir()
                               if p.suffix.lower() == ".png" and p.is_file() and not is_partial(p))
                flags += [()] * len(found)
                scenes += [(label, 0)] * len(found)
            paths += [d / f for f in found]
            files += [f"{label}/{f}" if label else f for f in found]
            items += [label] * len(found)
        if not files:
            raise StageInputError("no character crops to cluster (instances.jsonl is empty or the folder has no PNG); "
                                  "check the segmentation output", path=d, stage=self.stage_id)
        return paths, files, items, flags, scenes

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from .characters.embedders import check_rgba
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode != "RGBA" and "transparency" not in im.info:
                    return check_rgba(im, path, self.stage_id)
                return check_rgba(im.convert("RGBA"), path, self.stage_id)
        except FileNotFoundError as exc:
            raise StageInputError("crop listed in instances.jsonl is missing; rerun segmentation",
                                  path=path, stage=self.stage_id) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise StageInputError(f"cannot read image ({exc.__class__.__name__}: {exc}); the file is corrupt or not "
                                  "an image", path=path, stage=self.stage_id) from exc

    def _digest(self, path: Path) -> str:
        try:
            return embedding_cache.content_digest(path)
        except FileNotFoundError as exc:
            raise StageInputError("crop listed in instances.jsonl is missing; rerun segmentation",
                                  path=path, stage=self.stage_id) from exc
        except OSError as exc:
            raise StageInputError(f"cannot read crop: {exc.strerror or exc}", path=path,
                                  stage=self.stage_id) from exc

    def _embedders(self):
        from .characters.embedders import ColourEmbedder, TorchFaceEmbedder
        s = self.settings
        if s.embedder == "facenet":
            base = TorchFaceEmbedder(self._embedder_weights(), device=s.device, stage=self.stage_id)
        else:
            base = ColourEmbedder(layout_weight=s.layout_weight)
        face = None
        if s.use_face_detection:
            from .characters.faces import FaceFeatures
            face = FaceFeatures(s.face_detector, device=s.device, stage=self.stage_id)
        return base, face

    def _fingerprint(self) -> str:
        keys = ("embedder", "embedder_weights", "layout_weight", "use_face_detection", "face_detector", "face_weight")
        values = {k: getattr(self.settings, k) for k in keys}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    # -- the work ---------------------------------------------------------------------------------
    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        t0 = time.monotonic()
        paths, files, items, flags, scenes = self._list_crops()
        folder = self.output_folder()
        X, embedded, faces_found, digests = self._embed(folder, paths)
        from .characters.hdbscan_clusters import cluster_embeddings
        s = self.settings
        size = s.min_cluster_size or auto_min_cluster_size(len(files))
        labels, probs, reassigned = cluster_embeddings(
            X, min_cluster_size=size, min_samples=s.min_samples, epsilon=s.cluster_selection_epsilon,
            method=s.cluster_selection_method, reassign_noise=s.reassign_noise,
            reassign_similarity=s.reassign_similarity, merge_similarity=s.merge_similarity)
        labels, probs, reassigned, identity = self._identities(folder, X, labels, probs, reassigned, digests, size)
        names = {int(c): ("noise" if c == -1 else f"cluster_{identity[int(c)]}") for c in set(labels.tolist())}
        flags, quality = self._assess(folder, paths, X, labels, flags, scenes, names)
        self._copy_crops(folder, paths, items, labels, names)
        sizes = self._contact_sheets(folder, paths, labels, probs, names)
        text = self._write_listing(folder, files, items, labels, probs, reassigned, flags, identity)
        cluster_count = len([c for c in names if c != -1])
        noise = int((labels == -1).sum())
        out = folder.path
        self._judge(folder, quality)
        return self.result(
            outputs={"output_dir": str(out), "clusters_jsonl": str(out / CLUSTERS),
                     "cluster_count": cluster_count, "cluster_sizes": sizes, "noise_count": noise,
                     "crop_count": len(files), "contact_sheets_dir": str(out / "contact_sheets"),
                     "identities": str(out / identities.REGISTRY),
                     "quality_json": str(out / QUALITY), "quality_summary": quality["summary"],
                     "cluster_verdicts": {n: e["verdict"] for n, e in quality["clusters"].items()
                                          if e["verdict"] != "noise"},
                     "clusters_digest": hashlib.sha256(text.encode()).hexdigest()[:16]},
            metrics={"seconds": round(time.monotonic() - t0, 3), "embedded": embedded, "min_cluster_size": size,
                     "resumed": len(files) - embedded, "noise_fraction": round(noise / len(files), 4),
                     "reassigned": int(reassigned.sum()), "faces_found": faces_found,
                     "flagged": quality["flagged"]})

    def _assess(self, folder: OutputFolder, paths: list[Path], X: np.ndarray, labels: np.ndarray,
                flags: list[tuple[str, ...]], scenes: list[tuple[str, int]],
                names: dict[int, str]) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
        """Cluster quality (characters/cluster_quality.py): flags with colour `multi` added, the
        verdict of each cluster, and the stage's quality.json."""
        from .characters import cluster_quality
        if self.settings.embedder == "colour":      # its first 256 numbers are the square-rooted histogram
            hists = X[:, :256].astype(np.float64) ** 2
        else:
            hists = cluster_quality.colour_histograms([self._read(p) for p in paths])
        s = self.settings
        flags, clusters = cluster_quality.assess_clusters(
            X, labels, hists, flags, names,
            cluster_quality.ClusterThresholds(junk_share=s.junk_share, unmix_gain=s.unmix_gain,
                                              min_cohesion=s.min_cohesion, min_whole=s.min_whole,
                                              min_whole_share=s.min_whole_share,
                                              min_whole_scenes=s.min_whole_scenes),
            scenes=scenes)
        mostly_junk = cluster_quality.mostly_junk(clusters)
        summary = cluster_quality.summary_line(clusters)
        if mostly_junk:
            summary += f"; mostly junk (on_low_quality: {s.on_low_quality})"
        report = {"summary": summary, "mostly_junk": mostly_junk, "on_low_quality": s.on_low_quality,
                  "clusters": clusters, "flagged": sum(1 for f in flags if f)}
        write_json(folder.claim(QUALITY), report, indent=1)
        if any(e["verdict"] in ("junk", "multi") for e in clusters.values()):
            self.log.warning("quality: %s", report["summary"])
        return flags, report

    def _judge(self, folder: OutputFolder, quality: dict[str, Any]) -> None:
        """`on_low_quality: fail` stops the stage when most clusters are junk (its files, quality.json
        and contact sheets included, are written and kept for a look)."""
        if quality["mostly_junk"] and self.settings.on_low_quality == "fail":
            raise StageInputError(f"the clusters are mostly junk ({quality['summary']}); see quality.json and "
                                  "the contact sheets, or set on_low_quality: warn to go on with them",
                                  path=folder.path / QUALITY, stage=self.stage_id)

    def _identities(self, folder: OutputFolder, X: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                    reassigned: np.ndarray, digests: list[str], min_cluster_size: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """Clusters keyed by identity (characters/identities.py): named after the identities of this
        folder's earlier run and of `known_identities`, noise crops of a known identity assigned
        to it, numbered by size (ties by fingerprint); this run's identities.npz written. Returns
        labels, probabilities, reassigned and cluster -> fingerprint."""
        s = self.settings
        k = s.min_samples or min_cluster_size
        embedder = self._fingerprint()
        path = folder.claim(identities.REGISTRY)
        own = identities.Registry.none()
        if folder.wrote_before(identities.REGISTRY):
            try:
                own = identities.load(path, stage=self.stage_id)
            except StageInputError as exc:      # a damaged file of ours: the clusters get new fingerprints
                self.log.warning("earlier identities unreadable, not carried over: %s", exc)
        if own.embedder != embedder:
            own = identities.Registry.none()
        known = []
        for _, p in labelled(s.known_identities):
            reg = identities.load(p, stage=self.stage_id)
            if reg.embedder != embedder:
                raise StageInputError("these identities come from another embedder configuration (embedder, "
                                      "layout_weight, face features); they can only name clusters of the same one",
                                      path=p, stage=self.stage_id)
            known.append(reg)
        labels, fps, assigned = identities.carry_over(X, labels, digests, own, identities.merge(known) if known
                                                      else identities.Registry.none(), min_samples=k)
        probs = np.where(assigned, 0.5, probs)
        reassigned = reassigned | assigned
        order = sorted(fps, key=lambda c: (-int((labels == c).sum()), fps[c]))
        remap = {c: i for i, c in enumerate(order)}
        labels = np.array([remap.get(int(c), -1) for c in labels], int)
        fps = {remap[c]: fp for c, fp in fps.items()}
        probs = np.where(labels == -1, 0.0, probs)
        identities.save(path, identities.build(X, labels, probs, fps, min_samples=k, embedder=embedder))
        return labels, probs, reassigned, fps

    def _embed(self, folder: OutputFolder, paths: list[Path]) -> tuple[np.ndarray, int, int | None, list[str]]:
        """One embedding per crop, reusing those in the cache an earlier run left (item-level resume
        keyed by each crop's content). Returns the matrix, how many were computed and the number of
        faces found (None without face detection)."""
        digests = [self._digest(p) for p in paths]
        cache_path = folder.claim(EMBED_CACHE)
        fp = self._fingerprint()
        cached = embedding_cache.load(cache_path, fp) if folder.wrote_before(EMBED_CACHE) else {}
        todo = [i for i, d in enumerate(digests) if d not in cached]
        base, face = self._embedders() if todo else (None, None)
        bs = self.settings.batch_size
        vectors: dict[int, np.ndarray] = {i: cached[d] for i, d in enumerate(digests) if d in cached}
        done = len(vectors)
        for k in range(0, len(todo), bs):
            idx = todo[k:k + bs]
            crops = [self._read(paths[i]) for i in idx]
            emb = base.embed_batch(crops)
            if face is not None:
                emb = np.concatenate([emb, self.settings.face_weight * face.features(crops)], axis=1)
            for i, v in zip(idx, emb):
                vectors[i] = v
            done += len(idx)
            self.progress(done, len(paths), unit="crops")
        X = np.stack([vectors[i] for i in range(len(paths))]).astype(np.float32)
        embedding_cache.save(cache_path, fp, digests, X)
        return X, len(todo), int(face.found) if face is not None else None, digests

    def _copy_crops(self, folder: OutputFolder, paths: list[Path], items: list[str], labels: np.ndarray,
                    names: dict[int, str]) -> None:
        """A copy of every crop in its cluster's folder (`noise/` for noise), named with its item
        first when several items were gathered; copies an earlier run made are kept. Copies of
        crops that moved or left are not claimed: `result` removes them."""
        for i, path in enumerate(paths):
            rel = f"{names[int(labels[i])]}/{item_file_name(items[i], path.name)}"
            dest = folder.claim(rel)
            if not folder.wrote_before(rel) or dest.stat().st_size != path.stat().st_size:
                with atomic_path(dest) as tmp:
                    shutil.copyfile(path, tmp)

    def _contact_sheets(self, folder: OutputFolder, paths: list[Path], labels: np.ndarray,
                        probs: np.ndarray, names: dict[int, str]) -> dict[str, int]:
        """A contact sheet per cluster (its most confident members first); returns the cluster sizes."""
        from .characters.contact_sheet import contact_sheet

        folder.folder("contact_sheets")
        most = self.settings.contact_sheet_max
        sizes: dict[str, int] = {}
        for c, name in sorted(names.items()):
            members = [i for i in range(len(paths)) if int(labels[i]) == c]
            sizes[name] = len(members)
            if c == -1:
                continue
            members.sort(key=lambda i: -float(probs[i]))
            crops = [self._read(paths[i]) for i in members[:most]]
            contact_sheet(crops, folder.claim("contact_sheets", f"{name}.png"), max_items=most)
        return sizes

    def _write_listing(self, folder: OutputFolder, files: list[str], items: list[str], labels: np.ndarray,
                       probs: np.ndarray, reassigned: np.ndarray, flags: list[tuple[str, ...]],
                       identity: dict[int, str]) -> str:
        """clusters.jsonl: one record per crop, in input order. Returns its text."""
        records = [ClusterRecord(file=f, cluster=int(labels[i]), probability=round(float(probs[i]), 4),
                                 reassigned=bool(reassigned[i]), item=items[i], flags=flags[i],
                                 identity=identity.get(int(labels[i]), "")) for i, f in enumerate(files)]
        folder.claim(CLUSTERS)
        return write_clusters(folder.path / CLUSTERS, records)
