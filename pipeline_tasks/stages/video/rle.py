"""Run-length encoding of binary masks, as stored in `ground_truth.json`.

Format (documented in docs/stages-video.md): a mask is stored relative to its bounding box
``[x, y, w, h]`` as ``counts``: alternating run lengths of 0s and 1s over the box's pixels in
row-major (C) order, always starting with a run of 0s (which may be 0). The counts sum to ``w * h``.
"""
from __future__ import annotations

import numpy as np


def encode(mask: np.ndarray) -> list[int]:
    """Counts of a 2-D boolean/0-1 array (row-major, starting with a 0-run)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    # positions where the value changes
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def decode(counts: list[int], shape: tuple[int, int]) -> np.ndarray:
    """The boolean array of `shape` described by `counts`."""
    total = int(shape[0]) * int(shape[1])
    if sum(counts) != total:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected {total} for shape {shape}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(shape)
