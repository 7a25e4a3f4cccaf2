"""The files the character stages hand on: segmentation's `instances.jsonl` (one record per
character instance) and clustering's `clusters.jsonl` (one record per crop). One reader and one
writer each, for producers and consumers alike; a bad line is a `StageInputError` naming the file
and the line."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...jsonl import RecordError, fields, flag, integer, integers, number, read_listing, text, write_records

INSTANCES = "instances.jsonl"
CLUSTERS = "clusters.jsonl"


@dataclass(frozen=True)
class InstanceRecord:
    """One character instance. `file` (RGBA crop) and `mask` are relative to the segmentation
    output folder; `bbox` is the tight box and `crop_box` the padded box of the crop, both
    [x, y, w, h] in frame pixels; `frame_size` [w, h] is the frame's size; `static_share` is the
    share of the mask in regions that stay put on the background (the background model with context
    frames; absent otherwise); `flags` are the quality flags of the crop (`characters/quality.py`:
    small, border, fragment, multi, blank, static_region)."""
    file: str
    mask: str
    source_frame: str
    frame_index: int
    scene_index: int
    bbox: tuple[int, int, int, int]
    crop_box: tuple[int, int, int, int]
    area: int
    score: float
    frame_size: tuple[int, int] | None = None
    flags: tuple[str, ...] = ()
    static_share: float | None = None

    @classmethod
    def from_dict(cls, record: Any) -> InstanceRecord:
        d = fields(record)
        return cls(file=text(d, "file"), mask=text(d, "mask"), source_frame=text(d, "source_frame"),
                   frame_index=integer(d, "frame_index"), scene_index=integer(d, "scene_index"),
                   bbox=integers(d, "bbox", 4), crop_box=integers(d, "crop_box", 4), area=integer(d, "area"),
                   score=number(d, "score"), frame_size=integers(d, "frame_size", 2, None), flags=texts(d, "flags"),
                   static_share=number(d, "static_share", None))

    def to_dict(self) -> dict[str, Any]:
        d = {"file": self.file, "mask": self.mask, "source_frame": self.source_frame,
             "frame_index": self.frame_index, "scene_index": self.scene_index, "bbox": list(self.bbox),
             "crop_box": list(self.crop_box), "area": self.area, "score": self.score}
        if self.frame_size is not None:
            d["frame_size"] = list(self.frame_size)
        if self.static_share is not None:
            d["static_share"] = self.static_share
        if self.flags:
            d["flags"] = list(self.flags)
        return d


def texts(record: dict[str, Any], name: str) -> tuple[str, ...]:
    """An optional list of strings (quality flags); absent: empty."""
    value = record.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"field '{name}' must be a list of strings")
    return tuple(value)


def write_instances(path: str | os.PathLike, records: Iterable[InstanceRecord]) -> str:
    """Write `instances.jsonl` atomically (records in the order given); returns the text written."""
    return write_records(path, (r.to_dict() for r in records))


def read_instances(path: str | os.PathLike, *, stage: str | None = None) -> list[InstanceRecord]:
    return read_listing(path, InstanceRecord.from_dict, what="character instance", hint="rerun segmentation",
                        stage=stage)


@dataclass(frozen=True)
class ClusterRecord:
    """One crop's cluster. `file` is as in instances.jsonl (relative to the clustering input);
    `cluster` −1 is noise; `probability` is the HDBSCAN membership (0 for noise); `reassigned`
    marks a noise point moved to its nearest cluster. When clustering gathered several items'
    folders, `item` is the crop's item and `file` starts with `<item>/`. `flags` are the crop's
    quality flags (segmentation's, plus `multi` found by colour in clustering). `identity` is the
    cluster's fingerprint (its folder is `cluster_<identity>`; empty for noise): stable across runs,
    unlike the `cluster` number, which counts clusters by size in this run."""
    file: str
    cluster: int
    probability: float
    reassigned: bool = False
    item: str = ""
    flags: tuple[str, ...] = ()
    identity: str = ""

    @classmethod
    def from_dict(cls, record: Any) -> ClusterRecord:
        d = fields(record)
        return cls(file=text(d, "file"), cluster=integer(d, "cluster"), probability=number(d, "probability"),
                   reassigned=flag(d, "reassigned", False), item=text(d, "item", ""), flags=texts(d, "flags"),
                   identity=text(d, "identity", ""))

    def to_dict(self) -> dict[str, Any]:
        d = {"file": self.file, "cluster": self.cluster, "probability": self.probability}
        if self.reassigned:
            d["reassigned"] = True
        if self.item:
            d["item"] = self.item
        if self.flags:
            d["flags"] = list(self.flags)
        if self.identity:
            d["identity"] = self.identity
        return d


def write_clusters(path: str | os.PathLike, records: Iterable[ClusterRecord]) -> str:
    """Write `clusters.jsonl` atomically (records in the order given); returns the text written."""
    return write_records(path, (r.to_dict() for r in records))


def read_clusters(path: str | os.PathLike, *, stage: str | None = None) -> list[ClusterRecord]:
    return read_listing(path, ClusterRecord.from_dict, what="cluster", hint="rerun clustering", stage=stage)
