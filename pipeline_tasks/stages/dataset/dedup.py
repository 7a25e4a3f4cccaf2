"""Near-duplicate crops: the shared dHash (`video.phash`) of each crop composited on mid-grey, so
the silhouette counts, and a best-first walk that drops a crop close to one already kept."""
from __future__ import annotations

import numpy as np

from ..video.phash import DuplicateFilter, dhash


def crop_hash(rgba: np.ndarray) -> int:
    """64-bit dHash of an RGBA crop over a mid-grey background."""
    import cv2
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 128.0 * (1.0 - alpha)
    return dhash(cv2.cvtColor(rgb.round().astype(np.uint8), cv2.COLOR_RGB2GRAY))


def drop_near_duplicates(items: list, threshold: int, key=lambda c: c.dhash) -> tuple[list, list]:
    """Walk `items` in order (best first) and keep each one unless it is within `threshold` bits of
    one already kept. Returns (kept, dropped). A negative threshold keeps everything."""
    kept_hashes = DuplicateFilter(threshold)
    kept, dropped = [], []
    for item in items:
        (dropped if kept_hashes.check_and_add(key(item)) else kept).append(item)
    return kept, dropped
