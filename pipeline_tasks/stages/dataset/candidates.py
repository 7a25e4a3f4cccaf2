"""Crops to choose from: the clustering stage's `clusters.jsonl`, with paths resolved and, when an
`instances.jsonl` is given, the segmentation metadata (source frame, scene, frame index, bbox)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import StageInputError


@dataclass
class Candidate:
    path: Path                      # the RGBA crop on disk
    key: str                        # the `file` value of clusters.jsonl (stable identity)
    cluster: int
    probability: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)   # instances.jsonl record, when known
    # ranking signals, filled by `quality`
    sharpness: float = 0.0
    area: int = 0
    face: float = 0.0
    dhash: int = 0
    score: float = 0.0


def cluster_folder(cluster: int) -> str:
    """The folder the clustering stage copies a cluster's crops into."""
    return "noise" if cluster == -1 else f"cluster_{cluster:03d}"


def resolve_crop(file: str, cluster: int, clusters_dir: Path) -> Path | None:
    """A crop path from clusters.jsonl: absolute, relative to the clustering output dir, or (as the
    clustering stage writes it, relative to its input) found through the cluster's folder copy."""
    p = Path(file)
    tries = [p] if p.is_absolute() else [clusters_dir / p]
    tries.append(clusters_dir / cluster_folder(cluster) / p.name)
    for t in tries:
        if t.is_file():
            return t
    return None


def _read_jsonl(path: Path, what: str, stage: str | None) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise StageInputError(f"{what} line {n} is not JSON ({exc})", path=path, stage=stage) from exc
            if not isinstance(rec, dict):
                raise StageInputError(f"{what} line {n} is not a JSON object", path=path, stage=stage)
            records.append(rec)
    return records


def load_candidates(clusters_dir: str | Path, instances_jsonl: str | Path | None = None, *,
                    stage: str | None = None) -> list[Candidate]:
    clusters_dir = Path(clusters_dir)
    listing = clusters_dir / "clusters.jsonl"
    if not clusters_dir.is_dir():
        raise StageInputError("input directory does not exist; run the clustering stage first or fix input_dir",
                              path=clusters_dir, stage=stage)
    if not listing.is_file():
        raise StageInputError("no clusters.jsonl in the input directory; input_dir must be a clustering stage's "
                              "output_dir", path=listing, stage=stage)
    meta: dict[str, dict[str, Any]] = {}
    if instances_jsonl:
        ipath = Path(instances_jsonl)
        if not ipath.is_file():
            raise StageInputError("instances_jsonl not found; point it at the segmentation stage's instances.jsonl",
                                  path=ipath, stage=stage)
        for rec in _read_jsonl(ipath, "instances.jsonl", stage):
            if "file" in rec:
                meta[str(rec["file"])] = rec
                meta.setdefault(Path(str(rec["file"])).name, rec)
    out = []
    for n, rec in enumerate(_read_jsonl(listing, "clusters.jsonl", stage), 1):
        try:
            file, cluster = str(rec["file"]), int(rec["cluster"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StageInputError(f"clusters.jsonl line {n} lacks 'file' or an integer 'cluster'",
                                  path=listing, stage=stage) from exc
        path = resolve_crop(file, cluster, clusters_dir)
        if path is None:
            raise StageInputError(f"crop '{file}' listed in clusters.jsonl (line {n}) is missing; rerun clustering",
                                  path=clusters_dir / file, stage=stage)
        m = meta.get(file) or meta.get(Path(file).name) or {}
        out.append(Candidate(path=path, key=file, cluster=cluster,
                             probability=float(rec.get("probability", 1.0) or 0.0), meta=m))
    return out
