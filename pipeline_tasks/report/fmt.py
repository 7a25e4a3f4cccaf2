"""Formatting of values shown in the report (durations, numbers, key outputs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

# outputs that are plumbing (paths, digests), not results a person wants on the DAG
# outputs shown first: the scores and sizes a run is judged by
_HEADLINE = ("_f1", "mean_iou", "_ari", "dataset_size", "_count")
_HIDDEN_SUFFIXES = ("_dir", "_jsonl", "_csv", "_json", "_toml", "_digest", "digest", "video", "ground_truth")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def number(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def key_outputs(outputs: dict[str, Any], limit: int = 3) -> list[tuple[str, str]]:
    """The first few scalar outputs (numbers, short strings), not paths or digests."""
    out = []
    for k in sorted(outputs, key=lambda k: (not k.endswith(_HEADLINE), k)):
        v = outputs[k]
        if k.endswith(_HIDDEN_SUFFIXES) or k == "output_dir":
            continue
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 24 and "/" not in v):
            out.append((k, number(v)))
        if len(out) >= limit:
            break
    return out


def href(path: str | os.PathLike, base: str | os.PathLike | None) -> str:
    """A link to a local file: relative to the report's folder `base` (the report keeps working
    when the project moves with it), a file:// URI without one."""
    absolute = os.path.abspath(path)
    if base is None:
        return Path(absolute).as_uri()
    return quote(os.path.relpath(absolute, os.path.abspath(base)).replace(os.sep, "/"))
