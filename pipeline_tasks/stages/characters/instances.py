"""From a backend's prediction to character instances, and from instances to files.

`split_instances` thresholds a soft foreground map at `alpha_threshold` and splits it into
8-connected components of at least `min_area` pixels (or keeps the whole foreground as one instance
when `extract_characters` is false); SAM-style predictions already hold instances. `write_instance`
saves a padded RGBA crop (alpha = the binary mask) and its mask (8-bit PNG of the same box).
`static_share` measures how much of an instance is background carried along.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from .backend_base import Prediction


@dataclass
class Instance:
    mask: np.ndarray          # HxW bool, the full frame
    bbox: list[int]           # tight [x, y, w, h]
    area: int
    score: float


def _bbox(mask: np.ndarray) -> list[int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def split_instances(pred: Prediction, *, alpha_threshold: float, min_area: int,
                    extract_characters: bool = True, group_px: int = 0) -> list[Instance]:
    import cv2
    out: list[Instance] = []
    if pred.instances:
        for soft, score in pred.instances:
            m = soft >= alpha_threshold
            area = int(m.sum())
            if area >= min_area:
                out.append(Instance(m, _bbox(m), area, float(score)))
    elif pred.foreground is not None:
        fg = pred.foreground >= alpha_threshold
        if not extract_characters:
            area = int(fg.sum())
            if area >= min_area:
                out.append(Instance(fg, _bbox(fg), area, float(pred.foreground[fg].mean())))
            return out
        grouping = fg
        if group_px > 0:   # parts a few pixels apart (a limb lost at a thin joint) stay one character
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * group_px + 1, 2 * group_px + 1))
            grouping = cv2.dilate(fg.astype(np.uint8), k).astype(bool)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grouping.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            m = (labels == i) & fg
            area = int(np.count_nonzero(m))
            if area < min_area:
                continue
            out.append(Instance(m, _bbox(m), area, float(pred.foreground[m].mean())))
    # deterministic order: left to right, then top to bottom
    out.sort(key=lambda inst: (inst.bbox[0], inst.bbox[1], -inst.area))
    return out


def static_share(inst: Instance, static: np.ndarray | None) -> float | None:
    """The share of the instance's mask in regions that stay put on the background (the
    prediction's `static` map); None when the backend gives no such map."""
    if static is None:
        return None
    return round(np.count_nonzero(inst.mask & static) / max(1, inst.area), 4)


def crop_box(bbox: list[int], padding: int, width: int, height: int) -> list[int]:
    x, y, w, h = bbox
    x0, y0 = max(0, x - padding), max(0, y - padding)
    x1, y1 = min(width, x + w + padding), min(height, y + h + padding)
    return [x0, y0, x1 - x0, y1 - y0]


def write_instance(rgb: np.ndarray, inst: Instance, padding: int, crop_path: Path, mask_path: Path) -> list[int]:
    """Write the RGBA crop and the mask PNG atomically; return the crop box [x, y, w, h]."""
    from PIL import Image
    h, w = inst.mask.shape
    box = crop_box(inst.bbox, padding, w, h)
    x, y, bw, bh = box
    m = inst.mask[y:y + bh, x:x + bw]
    alpha = (m * 255).astype(np.uint8)
    rgba = np.dstack([rgb[y:y + bh, x:x + bw], alpha])
    with atomic_path(crop_path) as tmp:
        Image.fromarray(rgba, "RGBA").save(tmp, compress_level=1)
    with atomic_path(mask_path) as tmp:
        Image.fromarray(alpha, "L").save(tmp, compress_level=1)
    return box
