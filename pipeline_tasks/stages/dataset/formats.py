"""The files training_data_prep hands on, one reader and one writer each, for the producer and its
consumers (the report, evaluate) alike:

- Hugging Face `imagefolder` metadata, `metadata.jsonl` at the dataset root, one `{"file_name":
  <path relative to the root, posix>, "text": <caption>, "concept": <character name>}` per image,
  so `load_dataset("imagefolder", data_dir=root)` yields image, text and concept columns;
- its provenance, `selection.jsonl`: one object per image with its `file_name` and the `key` of
  the segmentation instance it was cut from (`characters/<crop>.png`), plus the crop's source and
  ranking signals."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...jsonl import fields, read_listing, text, write_records

METADATA = "metadata.jsonl"
SELECTION = "selection.jsonl"


@dataclass(frozen=True)
class MetadataRow:
    file_name: str          # the image, relative to the dataset root (posix separators)
    text: str               # its caption
    concept: str | None = None      # the character (concept) it shows; optional in a hand-made listing

    @classmethod
    def from_dict(cls, record: Any) -> MetadataRow:
        d = fields(record)
        return cls(file_name=text(d, "file_name"), text=text(d, "text"), concept=text(d, "concept", None))

    def to_dict(self) -> dict[str, Any]:
        d = {"file_name": self.file_name, "text": self.text}
        if self.concept is not None:
            d["concept"] = self.concept
        return d


def write_metadata(path: str | os.PathLike, rows: Iterable[MetadataRow]) -> str:
    """Write `metadata.jsonl` atomically, sorted by file name, captions as UTF-8; returns the text."""
    return write_records(path, (r.to_dict() for r in sorted(rows, key=lambda r: r.file_name)),
                         ensure_ascii=False)


def read_metadata(path: str | os.PathLike, *, stage: str | None = None) -> list[MetadataRow]:
    return read_listing(path, MetadataRow.from_dict, what="dataset metadata", hint="rerun training_data_prep",
                        stage=stage)


def _selection_row(record: Any) -> dict[str, Any]:
    d = fields(record)
    text(d, "file_name")
    text(d, "key")
    return d


def write_selection(path: str | os.PathLike, picks: Iterable[dict[str, Any]]) -> str:
    """Write `selection.jsonl` atomically, sorted by file name; returns the text."""
    return write_records(path, sorted(picks, key=lambda p: p["file_name"]))


def read_selection(path: str | os.PathLike, *, stage: str | None = None) -> list[dict[str, Any]]:
    return read_listing(path, _selection_row, what="dataset selection", hint="rerun training_data_prep",
                        stage=stage)
