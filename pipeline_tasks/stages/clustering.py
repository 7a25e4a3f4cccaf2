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

from ..atomic import PART_MARKER, atomic_path, is_partial
from ..errors import ModelWeightsError, StageConfigError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult
from .characters import embedding_cache
from .characters.formats import CLUSTERS, INSTANCES, ClusterRecord, read_instances, write_clusters

EMBED_CACHE = "embeddings.npz"


class ClusteringStage(StageExecutor):
    type_name = "clustering"
    version = "1"
    description = "Cluster character crops by identity (colour/face embeddings + HDBSCAN)"
    config_schema = {
        "input_dir": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "min_cluster_size": {"type": "integer", "min": 2, "max": 1_000_000, "default": 10},
        "min_samples": {"type": "integer", "min": 1, "max": 1_000_000, "nullable": True, "default": None},
        "cluster_selection_epsilon": {"type": "number", "min": 0, "max": 10, "default": 0.0},
        "cluster_selection_method": {"type": "string", "allowed": ["eom", "leaf"], "default": "eom"},
        "use_face_detection": {"type": "boolean", "default": False},
        "face_detector": {"type": "string", "allowed": ["animeface", "mtcnn"], "default": "animeface"},
        "face_weight": {"type": "number", "min": 0, "max": 10, "default": 1.0},
        "embedder": {"type": "string", "allowed": ["colour", "facenet"], "default": "colour"},
        "embedder_weights": {"type": "string", "nullable": True, "empty": False, "default": None},
        "layout_weight": {"type": "number", "min": 0, "max": 10, "default": 0.5},
        "reassign_noise": {"type": "boolean", "default": False},
        "reassign_similarity": {"type": "number", "min": 0, "max": 1, "default": 0.9},
        "device": {"type": "string", "allowed": ["cpu", "cuda", "mps"], "default": "cpu"},
        "batch_size": {"type": "integer", "min": 1, "max": 4096, "default": 64},
        "contact_sheet_max": {"type": "integer", "min": 1, "max": 1024, "default": 64},
    }


    def validate_config(self) -> None:
        if self.cfg("embedder") == "facenet":
            w = self.config.get("embedder_weights")
            if not w:
                raise StageConfigError("embedder 'facenet' needs 'embedder_weights' (an InceptionResnetV1 state_dict "
                                       "from the facenet-pytorch project releases)", stage=self.stage_id,
                                       key="embedder_weights")
            if not Path(w).is_file():
                raise ModelWeightsError(f"embedder weights not found: {w}; InceptionResnetV1 state_dicts "
                                        "(vggface2 / casia-webface) come from the facenet-pytorch project releases",
                                        path=w, stage=self.stage_id, key="embedder_weights")
        ms = self.config.get("min_samples")
        if ms is not None and int(ms) > int(self.cfg("min_cluster_size")) * 10:
            raise StageConfigError("min_samples is far larger than min_cluster_size; HDBSCAN would call almost "
                                   "everything noise", stage=self.stage_id, key="min_samples")

    def input_files(self) -> list[str]:
        w = self.config.get("embedder_weights")
        return [str(w)] if w else []

    # -- inputs -----------------------------------------------------------------------------------
    def _list_crops(self) -> tuple[Path, list[str]]:
        d = Path(self.cfg("input_dir"))
        if not d.is_dir():
            raise StageInputError("input directory does not exist; run the segmentation stage first or fix input_dir",
                                  path=d, stage=self.stage_id)
        listing = d / INSTANCES
        if listing.exists():
            files = [r.file for r in read_instances(listing, stage=self.stage_id)]
        else:
            files = sorted(p.name for p in d.iterdir()
                           if p.suffix.lower() == ".png" and p.is_file() and not is_partial(p))
        if not files:
            raise StageInputError("no character crops to cluster (instances.jsonl is empty or the folder has no PNG); "
                                  "check the segmentation output", path=d, stage=self.stage_id)
        return d, files

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
        if self.cfg("embedder") == "facenet":
            base = TorchFaceEmbedder(str(self.config["embedder_weights"]), device=self.cfg("device"),
                                     stage=self.stage_id)
        else:
            base = ColourEmbedder(layout_weight=float(self.cfg("layout_weight")))
        face = None
        if self.cfg("use_face_detection"):
            from .characters.faces import FaceFeatures
            face = FaceFeatures(self.cfg("face_detector"), device=self.cfg("device"), stage=self.stage_id)
        return base, face

    def _fingerprint(self) -> str:
        keys = ("embedder", "embedder_weights", "layout_weight", "use_face_detection", "face_detector", "face_weight")
        return hashlib.sha256(json.dumps({k: self.cfg(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:16]

    # -- the work ---------------------------------------------------------------------------------
    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .characters.contact_sheet import contact_sheet
        from .characters.hdbscan_clusters import cluster_embeddings

        out = Path(self.cfg("output_dir"))
        src, files = self._list_crops()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StageInputError(f"output directory is not writable: {exc.strerror or exc}", path=out,
                                  stage=self.stage_id) from exc
        for p in out.rglob(f"*{PART_MARKER}*"):
            p.unlink()
        t0 = time.monotonic()
        # embedding cache: item-level resume keyed by each crop's content
        digests = [self._digest(src / f) for f in files]
        fp = self._fingerprint()
        cached = embedding_cache.load(out / EMBED_CACHE, fp)
        todo = [i for i, d in enumerate(digests) if d not in cached]
        base, face = self._embedders() if todo else (None, None)
        bs = int(self.cfg("batch_size"))
        vectors: dict[int, np.ndarray] = {i: cached[d] for i, d in enumerate(digests) if d in cached}
        done = len(vectors)
        for k in range(0, len(todo), bs):
            idx = todo[k:k + bs]
            crops = [self._read(src / files[i]) for i in idx]
            emb = base.embed_batch(crops)
            if face is not None:
                emb = np.concatenate([emb, float(self.cfg("face_weight")) * face.features(crops)], axis=1)
            for i, v in zip(idx, emb):
                vectors[i] = v
            done += len(idx)
            self.progress(done, len(files), unit="crops")
        X = np.stack([vectors[i] for i in range(len(files))]).astype(np.float32)
        embedding_cache.save(out / EMBED_CACHE, fp, digests, X)
        labels, probs, reassigned = cluster_embeddings(
            X, min_cluster_size=int(self.cfg("min_cluster_size")), min_samples=self.config.get("min_samples"),
            epsilon=float(self.cfg("cluster_selection_epsilon")), method=self.cfg("cluster_selection_method"),
            reassign_noise=bool(self.cfg("reassign_noise")), reassign_similarity=float(self.cfg("reassign_similarity")))
        # outputs: clusters.jsonl, one folder per cluster + noise/, contact sheets
        names = {int(c): ("noise" if c == -1 else f"cluster_{int(c):03d}") for c in set(labels.tolist())}
        wanted: dict[str, set[str]] = {n: set() for n in names.values()}
        records = []
        for i, f in enumerate(files):
            c = int(labels[i])
            dest_name = Path(f).name
            wanted[names[c]].add(dest_name)
            records.append(ClusterRecord(file=f, cluster=c, probability=round(float(probs[i]), 4),
                                         reassigned=bool(reassigned[i])))
            dest = out / names[c] / dest_name
            if not dest.exists() or dest.stat().st_size != (src / f).stat().st_size:
                dest.parent.mkdir(exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(src / f, tmp)
        # remove folders / files of an earlier clustering that no longer apply
        for d in out.iterdir():
            if d.is_dir() and (d.name == "noise" or d.name.startswith("cluster_")):
                if d.name not in wanted:
                    shutil.rmtree(d)
                    continue
                for p in d.iterdir():
                    if p.name not in wanted[d.name]:
                        p.unlink()
        sheets_dir = out / "contact_sheets"
        sheets_dir.mkdir(exist_ok=True)
        for p in sheets_dir.iterdir():
            p.unlink()
        sizes: dict[str, int] = {}
        for c, name in sorted(names.items()):
            members = [files[i] for i in range(len(files)) if int(labels[i]) == c]
            sizes[name] = len(members)
            if c == -1:
                continue
            # the most confident members first
            members.sort(key=lambda f: -float(probs[files.index(f)]))
            crops = [self._read(src / f) for f in members[:int(self.cfg("contact_sheet_max"))]]
            contact_sheet(crops, sheets_dir / f"{name}.png", max_items=int(self.cfg("contact_sheet_max")))
        text = write_clusters(out / CLUSTERS, records)
        cluster_count = len([c for c in names if c != -1])
        noise = int((labels == -1).sum())
        elapsed = time.monotonic() - t0
        return self.result(
            outputs={"output_dir": str(out), "clusters_jsonl": str(out / CLUSTERS),
                     "cluster_count": cluster_count, "cluster_sizes": sizes, "noise_count": noise,
                     "crop_count": len(files), "contact_sheets_dir": str(sheets_dir),
                     "clusters_digest": hashlib.sha256(text.encode()).hexdigest()[:16]},
            metrics={"seconds": round(elapsed, 3), "embedded": len(todo), "resumed": len(files) - len(todo),
                     "noise_fraction": round(noise / len(files), 4), "reassigned": int(reassigned.sum()),
                     "faces_found": int(face.found) if face is not None else None})
