"""Quality of identity clusters: cohesion, flagged crops, several characters in one crop, junk.

- **Cohesion** of a cluster: the mean cosine similarity of its members' embeddings to their
  centroid (1.0: all alike).
- **Several characters in one crop**, by colour: a crop of two characters stuck together has the
  colours of both. Each crop's colour histogram (CIELAB, as the colour embedder's) is compared with
  its cluster's prototype (the mean histogram of the cluster's unflagged crops) and with every
  mixture `w·own + (1−w)·other` (w from 0.25 to 0.75) of its prototype and another cluster's; a crop
  that a mixture explains much better (Hellinger distance under `unmix_gain` × the distance to its
  own prototype, and at least `unmix_floor` from it) gets the `multi` flag. A whole cluster whose
  prototype is such a mixture of two other clusters' is a cluster of pairs.
- **Whole views**: a cluster's crops that carry no flag at all, and the scenes they come from. A
  `border` crop is a partial view of something, no sign that the cluster is not a character: a
  character entering and leaving the frame in camera pans has many. A cluster that is seen whole
  enough (at least `min_whole` unflagged crops, `min_whole_share` of its crops, from at least
  `min_whole_scenes` different scenes) is not judged by its `border` crops. Frames of one shot
  are near-copies of one view, so whole crops of debris in one shot (rock, sky, a wall during a
  pan) do not count as several views of a character.
- **Verdict** per cluster: `multi` when at least `junk_share` of its crops are flagged `multi` (or
  its prototype is a mixture of two others); `junk` when at least `junk_share` are flagged as
  not a whole, clean character (`JUNK_FLAGS`: small, border, fragment, blank, static_region; `border` left out
  of that count for a cluster seen whole enough), or when its cohesion is under `min_cohesion`
  (its members do not look alike: crops of one character, seen in any pose, have a cohesion of
  0.88 and more with the colour embedder, a set of crops of different characters about 0.64);
  else `ok`. `reasons` says why a cluster is not `ok`. training_data_prep leaves `junk` and
  `multi` clusters out of a dataset by default.
- **Mostly junk**: more than half of the clusters are `junk` or `multi`, or there is no cluster.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .quality import FLAGS

JUNK_FLAGS = ("small", "border", "fragment", "blank", "static_region")
VERDICTS = ("ok", "junk", "multi")
MIX_WEIGHTS = np.linspace(0.25, 0.75, 11)


@dataclass(frozen=True)
class ClusterThresholds:
    junk_share: float = 0.5           # share of a cluster's crops flagged for the cluster to be junk / multi
    unmix_gain: float = 0.6           # a mixture must be this much closer than the own prototype ...
    unmix_floor: float = 0.2          # ... and the crop at least this far (Hellinger) from its prototype
    min_cohesion: float = 0.8         # mean cosine similarity of the members to their centroid
    min_whole: int = 3                # unflagged crops a cluster needs for its border crops to be excused ...
    min_whole_share: float = 0.35     # ... making at least this share of its crops ...
    min_whole_scenes: int = 2         # ... from at least this many different scenes


def hellinger(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hellinger distance between histograms (rows of `p` against `q`, broadcast), 0..1."""
    return np.sqrt(np.maximum(0.0, 1.0 - (np.sqrt(p * q)).sum(axis=-1)))


def colour_histograms(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The joint CIELAB histogram (4 x 8 x 8 bins) of each RGBA crop's opaque pixels."""
    import cv2

    from .embedders import _lab_hist
    out = []
    for rgba in crops:
        lab = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2LAB)
        out.append(_lab_hist(lab[rgba[..., 3] >= 128]))
    return np.stack(out).astype(np.float64) if out else np.zeros((0, 256))


def _best_mix(h: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(distance, weight of a) of the mixture of a and b closest to h."""
    mixes = MIX_WEIGHTS[:, None] * a[None, :] + (1 - MIX_WEIGHTS)[:, None] * b[None, :]
    d = hellinger(mixes, h[None, :])
    k = int(np.argmin(d))
    return float(d[k]), float(MIX_WEIGHTS[k])


def assess_clusters(X: np.ndarray, labels: np.ndarray, hists: np.ndarray, flags: list[tuple[str, ...]],
                    names: dict[int, str], t: ClusterThresholds = ClusterThresholds(),
                    scenes: Sequence[Hashable] | None = None,
                    ) -> tuple[list[tuple[str, ...]], dict[str, dict[str, Any]]]:
    """(flags per crop with colour `multi` added, a report per cluster name). Noise is reported
    too (its verdict is always `noise`). `scenes` holds each crop's scene (any hashable key, e.g.
    (video, scene index)); without it all crops count as one scene."""
    flags = [tuple(f) for f in flags]
    ids = sorted(int(c) for c in set(labels.tolist()) if c != -1)
    protos: dict[int, np.ndarray] = {}
    for c in ids:
        members = np.flatnonzero(labels == c)
        clean = [i for i in members if not flags[i]]
        protos[c] = hists[clean if len(clean) >= max(1, len(members) // 4) else members].mean(axis=0)
    # clusters whose prototype is a mixture of two others
    mixtures: dict[int, list[int]] = {}
    for c in ids:
        others = [o for o in ids if o != c]
        if len(others) < 2:
            continue
        single = min(float(hellinger(protos[o], protos[c])) for o in others)
        best = min((_best_mix(protos[c], protos[a], protos[b])[0], a, b)
                   for i, a in enumerate(others) for b in others[i + 1:])
        if best[0] < t.unmix_gain * single and single >= t.unmix_floor:
            mixtures[c] = [best[1], best[2]]
    pure = [c for c in ids if c not in mixtures]

    def add_multi(i: int) -> None:
        flags[i] = tuple(f for f in FLAGS if f in {*flags[i], "multi"})
    # crops that hold another character too: in a pure cluster, a mixture of its prototype and
    # another; in noise, a mixture of any two prototypes; in a cluster of pairs, every crop
    for i in range(len(labels)):
        c = int(labels[i])
        if c in mixtures:
            add_multi(i)
            continue
        partners = [o for o in pure if o != c]
        if c == -1:
            if len(pure) < 2:
                continue
            own = min(float(hellinger(hists[i], protos[o])) for o in pure)
            pairs = [(a, b) for k, a in enumerate(pure) for b in pure[k + 1:]]
        else:
            own = float(hellinger(hists[i], protos[c]))
            pairs = [(c, o) for o in partners]
        if own < t.unmix_floor or not pairs:
            continue
        mixed = min(_best_mix(hists[i], protos[a], protos[b])[0] for a, b in pairs)
        if mixed < t.unmix_gain * own:
            add_multi(i)
    report: dict[str, dict[str, Any]] = {}
    for c in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == c)
        counts = Counter(f for i in members for f in flags[i])
        n = len(members)
        multi = sum(1 for i in members if "multi" in flags[i])
        whole = [i for i in members if not flags[i]]
        whole_scenes = len({scenes[i] for i in whole}) if scenes is not None else min(len(whole), 1)
        seen_whole = (len(whole) >= t.min_whole and len(whole) >= t.min_whole_share * n
                      and whole_scenes >= t.min_whole_scenes)
        counted = [f for f in JUNK_FLAGS if not (seen_whole and f == "border")]
        junk = sum(1 for i in members if any(f in counted for f in flags[i]))
        entry: dict[str, Any] = {"size": n, "flagged": sum(1 for i in members if flags[i]),
                                 "flags": {f: counts[f] for f in FLAGS if counts[f]},
                                 "whole": len(whole), "whole_scenes": whole_scenes}
        if c == -1:
            entry["verdict"] = "noise"
        else:
            unit = X[members] / np.maximum(np.linalg.norm(X[members], axis=1, keepdims=True), 1e-12)
            centre = unit.mean(axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            entry["cohesion"] = round(float((unit @ centre).mean()), 4)
            reasons = []
            if c in mixtures:
                reasons.append("mixture of two clusters")
            if multi >= t.junk_share * n:
                reasons.append("crops of several characters")
            if junk >= t.junk_share * n:
                reasons.append("flagged crops")
            if entry["cohesion"] < t.min_cohesion:
                reasons.append("low cohesion")
            entry["verdict"] = ("multi" if c in mixtures or multi >= t.junk_share * n
                                else "junk" if reasons else "ok")
            if reasons:
                entry["reasons"] = reasons
            if c in mixtures:
                entry["mixture_of"] = [names[o] for o in mixtures[c]]
        entry["flagged_share"] = round(entry["flagged"] / n, 4) if n else 0.0
        report[names[int(c)]] = entry
    return flags, report


def mostly_junk(report: dict[str, dict[str, Any]]) -> bool:
    """More than half of the clusters are junk or multi, or there is no cluster at all."""
    verdicts = [e["verdict"] for e in report.values() if e["verdict"] != "noise"]
    return not verdicts or sum(v in ("junk", "multi") for v in verdicts) > len(verdicts) / 2


def summary_line(report: dict[str, dict[str, Any]]) -> str:
    """One line: clusters by verdict and the crops flagged."""
    verdicts = Counter(e["verdict"] for name, e in report.items() if e["verdict"] != "noise")
    total = sum(verdicts.values())
    flagged = sum(e["flagged"] for e in report.values())
    crops = sum(e["size"] for e in report.values())
    bad = [f"{verdicts[v]} {v}" for v in ("junk", "multi") if verdicts[v]]
    head = f"{total} cluster(s)" + (f", {', '.join(bad)}" if bad else ", all ok")
    return f"{head}; {flagged} of {crops} crops flagged"
