"""Which crops go into the dataset: ranking inside a cluster, a balanced share per cluster, and
kohya repeats that even out the concepts' weight in training."""
from __future__ import annotations

from collections.abc import Sequence


def percentile_ranks(values: Sequence[float]) -> list[float]:
    """Each value's rank in [0, 1] (ties share the mean rank); a single value ranks 1.0."""
    n = len(values)
    if n <= 1:
        return [1.0] * n
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        r = (i + j) / 2 / (n - 1)
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    return ranks


def score_cluster(cands: list, weights: dict[str, float]) -> list:
    """Set `score` on each candidate of one cluster and return them best first (ties: by key)."""
    sharp = percentile_ranks([c.sharpness for c in cands])
    size = percentile_ranks([float(c.area) for c in cands])
    for c, s, a in zip(cands, sharp, size):
        c.score = (weights.get("sharpness", 1.0) * s + weights.get("size", 1.0) * a
                   + weights.get("face", 0.0) * c.face + weights.get("probability", 0.0) * c.probability)
    return sorted(cands, key=lambda c: (-c.score, c.key))


def allocate(available: dict[int, int], total: int) -> dict[int, int]:
    """Split `total` picks across clusters as evenly as their sizes allow (water-filling: a cluster
    smaller than its fair share gives the rest to the others). Deterministic (by cluster id)."""
    alloc = {c: 0 for c in available}
    remaining = min(total, sum(available.values()))
    open_ = sorted(c for c, n in available.items() if n > 0)
    while remaining > 0 and open_:
        share = max(remaining // len(open_), 1)
        for c in list(open_):
            if remaining == 0:
                break
            take = min(share, available[c] - alloc[c], remaining)
            alloc[c] += take
            remaining -= take
            if alloc[c] >= available[c]:
                open_.remove(c)
    return alloc


def balance_repeats(counts: dict[int, int], base_repeats: int, balance: bool = True) -> dict[int, int]:
    """kohya repeats per concept: `base_repeats` for the largest, proportionally more for smaller
    ones so each concept is seen about as often per epoch (images x repeats roughly equal)."""
    if not counts:
        return {}
    if not balance:
        return {c: base_repeats for c in counts}
    largest = max(counts.values())
    return {c: max(1, round(base_repeats * largest / n)) if n else base_repeats for c, n in counts.items()}
