"""Quality gates of a dataset: which candidate crops may become training images, and whether what
is left is a dataset or mostly junk.

A candidate is left out when
- its cluster's verdict (the clustering stage's `quality.json`) is `junk` or `multi`, unless
  `include_junk`, or names.yaml excludes its identity (`excluded`);
- it has a quality flag listed in `exclude_flags` (segmentation's and clustering's flags:
  small, border, fragment, multi, blank, static_region);
- fitting it into its target (square or bucket) would scale it up by more than `max_upscale`
  (`low_resolution`): an upscaled crop teaches blur.

The pool is the non-noise crops of clusters of at least `min_cluster_size`. When more than
`max_junk_share` of it is left out, the dataset "would be mostly junk": `on_low_quality: fail` (the
default) stops the stage with the reasons, `warn` goes on with what is left.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..characters.quality import FLAGS
from . import buckets
from .candidates import Candidate

QUALITY = "quality.json"
FLAG_REASONS = FLAGS        # each crop quality flag is a reason to leave the crop out
REASONS = ("junk_cluster", "multi_cluster", "excluded", *FLAG_REASONS, "low_resolution")


@dataclass
class GateResult:
    kept: list[Candidate]
    excluded: dict[str, int]                       # reason -> crops
    clusters_out: dict[str, str] = field(default_factory=dict)   # cluster folder -> verdict, left out
    pool: int = 0
    max_upscale_used: float = 0.0

    @property
    def left_out(self) -> int:
        return self.pool - len(self.kept)

    @property
    def junk_share(self) -> float:
        return self.left_out / self.pool if self.pool else 0.0

    def report(self, max_junk_share: float) -> dict[str, Any]:
        return {"pool": self.pool, "kept": len(self.kept), "left_out": self.left_out,
                "left_out_share": round(self.junk_share, 4), "max_junk_share": max_junk_share,
                "mostly_junk": self.junk_share > max_junk_share,
                "excluded": {r: self.excluded[r] for r in REASONS if self.excluded.get(r)},
                "clusters_left_out": dict(sorted(self.clusters_out.items())),
                "max_upscale_used": round(self.max_upscale_used, 3), "summary": self.summary()}

    def summary(self) -> str:
        detail = ", ".join(f"{r.replace('_', ' ')} {self.excluded[r]}" for r in REASONS if self.excluded.get(r))
        return (f"{len(self.kept)} of {self.pool} crops usable" + (f"; left out: {detail}" if detail else "")
                + (f"; {len(self.clusters_out)} cluster(s) left out" if self.clusters_out else ""))


def upscale(width: int, height: int, *, resolution: int, mode: str, step: int, margin: float) -> float:
    """The scale `resize.fit_on_background` applies to a crop of this size."""
    tw, th = buckets.target_size(width, height, resolution, mode, step)
    return min(max(1, int(tw * (1 - 2 * margin))) / width, max(1, int(th * (1 - 2 * margin))) / height)


def crop_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def gate(cands: Iterable[Candidate], verdicts: Mapping[str, str], folder_of, *, excluded=lambda identity: False,
         exclude_flags: Iterable[str],
         include_junk: bool, max_upscale: float, resolution: int, mode: str, step: int, margin: float) -> GateResult:
    """Split `cands` (the pool) into kept crops and counts of left-out ones by their first reason.
    `folder_of(candidate)` names its cluster's folder, the key of `verdicts`."""
    cands = list(cands)
    counts: Counter = Counter()
    clusters_out: dict[str, str] = {}
    kept: list[Candidate] = []
    worst = 0.0
    exclude = set(exclude_flags)
    for c in cands:
        verdict = verdicts.get(folder_of(c), "ok")
        if verdict in ("junk", "multi") and not include_junk:
            counts[f"{verdict}_cluster"] += 1
            clusters_out[folder_of(c)] = verdict
            continue
        if excluded(c.identity):
            counts["excluded"] += 1
            clusters_out[folder_of(c)] = "excluded"
            continue
        bad = [f for f in c.flags if f in exclude]
        if bad:
            counts[bad[0]] += 1
            continue
        w, h = crop_size(c.path)
        scale = upscale(w, h, resolution=resolution, mode=mode, step=step, margin=margin)
        if scale > max_upscale:
            counts["low_resolution"] += 1
            continue
        worst = max(worst, scale)
        kept.append(c)
    return GateResult(kept, dict(counts), clusters_out, pool=len(cands), max_upscale_used=worst)


def read_verdicts(clusters_dir: Path) -> dict[str, str]:
    """Cluster folder -> verdict from a clustering output's quality.json ({} when it has none)."""
    import json
    try:
        data = json.loads((Path(clusters_dir) / QUALITY).read_text(encoding="utf-8"))
        return {str(k): str(v["verdict"]) for k, v in data["clusters"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
