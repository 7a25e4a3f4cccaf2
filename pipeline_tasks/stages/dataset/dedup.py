"""Near-duplicate detection: a difference hash (dHash) of each crop composited on grey."""
from __future__ import annotations

import numpy as np


def dhash(rgba: np.ndarray, size: int = 8) -> int:
    """64-bit dHash of the crop over a mid-grey background (so the silhouette counts)."""
    from PIL import Image
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 128.0 * (1.0 - alpha)
    grey = Image.fromarray(rgb.astype(np.uint8)).convert("L").resize((size + 1, size), Image.BILINEAR)
    a = np.asarray(grey, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def drop_near_duplicates(items: list, threshold: int, key=lambda c: c.dhash) -> tuple[list, list]:
    """Walk `items` in order (best first) and keep each one unless it is within `threshold` bits of
    one already kept. Returns (kept, dropped). A negative threshold keeps everything."""
    if threshold < 0:
        return list(items), []
    kept, dropped, hashes = [], [], []
    for item in items:
        h = key(item)
        if any(hamming(h, k) <= threshold for k in hashes):
            dropped.append(item)
        else:
            kept.append(item)
            hashes.append(h)
    return kept, dropped
