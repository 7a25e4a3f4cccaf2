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

from ... import atomic
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
        # the work is done in the foreground's box (grown by `group_px`): nothing outside it is
        # foreground, nor within `group_px` of it
        rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
        if rows.size == 0:
            return out
        y0, x0 = max(0, int(rows[0]) - group_px), max(0, int(cols[0]) - group_px)
        y1, x1 = int(rows[-1]) + 1 + group_px, int(cols[-1]) + 1 + group_px
        sub = fg[y0:y1, x0:x1]
        grouping = sub.view(np.uint8)
        if group_px > 0:   # parts a few pixels apart (a limb lost at a thin joint) stay one character
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * group_px + 1, 2 * group_px + 1))
            grouping = cv2.dilate(grouping, k)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grouping, connectivity=8)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < min_area:       # a group holds at least its foreground
                continue
            bx, by, bw, bh = (int(v) for v in stats[i, :4])
            box = (slice(by, by + bh), slice(bx, bx + bw))
            part = (labels[box] == i) & sub[box]
            area = int(np.count_nonzero(part))
            if area < min_area:
                continue
            m = np.zeros(fg.shape, bool)
            whole = (slice(y0 + by, y0 + by + bh), slice(x0 + bx, x0 + bx + bw))
            m[whole] = part
            bbox = _bbox(part)
            bbox[0] += x0 + bx
            bbox[1] += y0 + by
            out.append(Instance(m, bbox, area, float(pred.foreground[whole][part].mean())))
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


def write_instance(rgb: np.ndarray, inst: Instance, padding: int, crop_path: Path,
                   mask_path: Path) -> tuple[list[int], np.ndarray]:
    """Write the RGBA crop and the mask PNG atomically; return the crop box [x, y, w, h] and the
    RGBA crop written. PNGs by the frames' encoder (`video/png.py`: ISA-L deflate, a quarter of
    libpng's time at level 1)."""
    from ..video.png import encode_png
    h, w = inst.mask.shape
    box = crop_box(inst.bbox, padding, w, h)
    x, y, bw, bh = box
    m = inst.mask[y:y + bh, x:x + bw]
    alpha = (m * 255).astype(np.uint8)
    rgba = np.dstack([rgb[y:y + bh, x:x + bw], alpha])
    atomic.write_bytes(crop_path, encode_png(rgba))
    atomic.write_bytes(mask_path, encode_png(alpha))
    return box, rgba
