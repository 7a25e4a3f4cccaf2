"""Crops to choose from: the clustering stage's `clusters.jsonl`, with paths resolved and, when an
`instances.jsonl` is given, the segmentation metadata (source frame, scene, frame index, bbox)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import StageInputError
from ..characters.formats import CLUSTERS, InstanceRecord, read_clusters, read_instances
from ..gathered import item_file_name, labelled


@dataclass
class Candidate:
    path: Path                      # the RGBA crop on disk
    key: str                        # the `file` value of clusters.jsonl (stable identity)
    cluster: int
    probability: float = 1.0
    instance: InstanceRecord | None = None      # its instances.jsonl record, when one is given
    item: str = ""                  # the batch item the crop came from, when clustering gathered several
    flags: tuple[str, ...] = ()     # quality flags (characters/quality.py, characters/cluster_quality.py)
    identity: str = ""              # the cluster's fingerprint (characters/identities.py), when it has one
    # ranking signals, filled by `quality`
    sharpness: float = 0.0
    area: int = 0
    face: float = 0.0
    dhash: int = 0
    score: float = 0.0


def cluster_folder(cluster: int, identity: str = "") -> str:
    """The folder the clustering stage copies a cluster's crops into: `cluster_<fingerprint>`
    (`cluster_NNN` for listings without identities)."""
    if cluster == -1:
        return "noise"
    return f"cluster_{identity}" if identity else f"cluster_{cluster:03d}"


def resolve_crop(file: str, cluster: int, clusters_dir: Path, item: str = "", identity: str = "") -> Path | None:
    """A crop path from clusters.jsonl: absolute, relative to the clustering output dir, or (as the
    clustering stage writes it, relative to its input) found through the cluster's folder copy."""
    p = Path(file)
    tries = [p] if p.is_absolute() else [clusters_dir / p]
    tries.append(clusters_dir / cluster_folder(cluster, identity) / item_file_name(item, p.name))
    for t in tries:
        if t.is_file():
            return t
    return None


def load_candidates(clusters_dir: str | Path, instances_jsonl: str | Path | list | None = None, *,
                    stage: str | None = None) -> list[Candidate]:
    """`instances_jsonl` is one listing, or one per item when clustering gathered several items
    (labelled like clustering's input folders, so `ep01/characters/x.png` finds ep01's record)."""
    clusters_dir = Path(clusters_dir)
    listing = clusters_dir / CLUSTERS
    if not clusters_dir.is_dir():
        raise StageInputError("input directory does not exist; run the clustering stage first or fix input_dir",
                              path=clusters_dir, stage=stage)
    if not listing.is_file():
        raise StageInputError("no clusters.jsonl in the input directory; input_dir must be a clustering stage's "
                              "output_dir", path=listing, stage=stage)
    instances: dict[str, InstanceRecord] = {}
    for label, ipath in labelled(instances_jsonl):
        if not ipath.is_file():
            raise StageInputError("instances_jsonl not found; point it at the segmentation stage's instances.jsonl",
                                  path=ipath, stage=stage)
        prefix = f"{label}/" if label else ""
        for inst in read_instances(ipath, stage=stage):
            instances[prefix + inst.file] = inst
            instances.setdefault(prefix + Path(inst.file).name, inst)
    out = []
    for n, rec in enumerate(read_clusters(listing, stage=stage), 1):
        path = resolve_crop(rec.file, rec.cluster, clusters_dir, rec.item, rec.identity)
        if path is None:
            raise StageInputError(f"crop '{rec.file}' listed in clusters.jsonl (line {n}) is missing; rerun "
                                  "clustering", path=clusters_dir / rec.file, stage=stage)
        name = f"{rec.item}/{Path(rec.file).name}" if rec.item else Path(rec.file).name
        out.append(Candidate(path=path, key=rec.file, cluster=rec.cluster, probability=rec.probability,
                             instance=instances.get(rec.file) or instances.get(name), item=rec.item,
                             flags=rec.flags, identity=rec.identity))
    return out
