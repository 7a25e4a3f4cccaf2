"""Regions of a character's mask that are background carried along: an object the character
walks in front of, whose outline stays put in the shot's mosaic while the character moves.

The mask is cut along the image's edges into flat regions; an edge pixel is static when its patch
shows the same colours at its place in the mosaic in the shot's other frames (wherever no
character covers it); a region is static when enough of its outline is, and no other frame shows
that outline shifted (a slow character keeps its place for a few frames, then moves). The
background model (background_model.py) drops from a mask the pixels its colour step added in such
regions, and reports what is left of them (`Prediction.static`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

STATIC_COMPARED = 8        # frames of the shot each frame's pixels are compared with, in mosaic coordinates
EDGE_RANGE = 60            # a pixel is on an edge when its 3x3 neighbourhood spans this much (R + G + B)
PATCH_TOLERANCE = 40       # a 5x5 patch matches another frame's when no pixel differs more (R + G + B, +-1 px)
STATIC_PATCH = 0.3         # an edge pixel is static when its patch matches in this share of the compared frames
STATIC_OUTLINE = 0.3       # a region of the mask is static when this share of its outline's edge pixels is
MIN_STATIC_OUTLINE = 16    # pixels: a smaller static outline says nothing
UNCOVERED_CHANGE = 0.1     # an edge pixel whose patch changes, uncovered, in more of the compared frames moves
MOVE_SEARCH = 4            # pixels: how far a region's outline is looked for in the other frames
MOVED_GAIN = 0.5           # a shifted outline matching at most this share of the cost in place has moved


def static_persistence(img: np.ndarray, others: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """For each pixel of `img`, how far the 5x5 patch around it stays put in the mosaic: the share
    of the other frames of its shot in which the patch shows the same colours (each pixel within
    PATCH_TOLERANCE of a pixel at most 1 px away, for sub-pixel registration), 0 when in more than
    UNCOVERED_CHANGE of them it shows something else without a character covering it. `others`:
    each other frame's view of `img`'s place in the mosaic, where that view is covered, and where a
    character covers it (the frame's mask). A background object's edges keep their place whenever
    no character covers them; a character's edges move with it, and where they were, the other
    frames show the background."""
    import cv2
    k3 = np.ones((3, 3), np.uint8)
    k5 = np.ones((5, 5), np.uint8)
    ones = np.ones((1, 3), np.float32)
    same = np.zeros(img.shape[:2], np.uint8)
    changed = np.zeros(img.shape[:2], np.uint8)
    count = np.zeros(img.shape[:2], np.uint8)
    for view, covered, character in others:
        # how far each channel lies outside the range of the view's 3x3 neighbourhood (at most one
        # of the two differences is positive), summed over the channels (saturated at 255: only
        # whether it is under PATCH_TOLERANCE counts)
        off = cv2.add(cv2.subtract(img, cv2.dilate(view, k3)), cv2.subtract(cv2.erode(view, k3), img))
        match = cv2.dilate(cv2.transform(off, ones), k5) < PATCH_TOLERANCE
        covered = cv2.erode(covered.view(np.uint8), k5) > 0
        same += match & covered
        changed += ~match & covered & ~(cv2.dilate(character.view(np.uint8), k5) > 0)
        count += covered
    count = np.maximum(count, 1).astype(np.float32)
    return np.where(changed <= UNCOVERED_CHANGE * count, same / count, 0.0).astype(np.float32)


def edges(img: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood spans more than EDGE_RANGE (R + G + B): the outlines of the
    flat regions of a cartoon."""
    import cv2
    k3 = np.ones((3, 3), np.uint8)
    spread = cv2.transform(cv2.subtract(cv2.dilate(img, k3), cv2.erode(img, k3)), np.ones((1, 3), np.float32))
    return spread > EDGE_RANGE


def static_regions(img: np.ndarray, mask: np.ndarray, seeds: np.ndarray,
                   others: Callable[[tuple[int, int, int, int]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]],
                   ) -> np.ndarray:
    """The pixels of `mask` in regions fixed in the mosaic, of those holding pixels of `seeds`: the
    mask is cut along the image's edges into flat regions, and a region whose outline (the edge
    pixels along it, in the mask or just outside it: a colour step's addition often stops at an
    object's outline, which then lies beside the mask) is at least
    STATIC_OUTLINE static edge pixels (`static_persistence` at least STATIC_PATCH), and at least
    MIN_STATIC_OUTLINE of them, and that no other frame shows moved (`region_moved`), is background
    carried along (an object a character walks in front of), with its static outline pixels.
    `others(box)`: the other frames' views of the box (x0, y0, x1, y1) of `img`, as
    `static_persistence` takes them."""
    import cv2
    k3 = np.ones((3, 3), np.uint8)
    out = np.zeros(mask.shape, bool)
    if not seeds.any():
        return out
    # the mask's box (and a pixel around): all that is looked at
    bx, by, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    h, w = mask.shape
    mx0, my0, mx1, my1 = max(0, bx - 1), max(0, by - 1), min(w, bx + bw + 1), min(h, by + bh + 1)
    sub_mask, sub_seeds = mask[my0:my1, mx0:mx1], seeds[my0:my1, mx0:mx1]
    # the image's edges over the mask's box and the room the comparisons below take around it (at
    # the mask's pixels, those of a box of them would be the same: their 3x3 neighbourhoods lie inside)
    pad = MOVE_SEARCH + 3
    ex0, ey0 = max(0, mx0 - pad), max(0, my0 - pad)
    every_edge = edges(img[ey0:min(h, my1 + pad), ex0:min(w, mx1 + pad)])
    edge = every_edge[my0 - ey0:my1 - ey0, mx0 - ex0:mx1 - ex0]
    n, labels, stats, _ = cv2.connectedComponentsWithStats((sub_mask & ~edge).astype(np.uint8), connectivity=4)
    sh, sw = sub_mask.shape
    # each region's outline (the edge pixels next to it, 8-connected, in the mask or just outside
    # it) counted at once: the distinct regions around each edge pixel
    ys, xs = np.nonzero(edge)
    around = np.pad(labels, 1)
    near = np.sort([around[ys + 1 + dy, xs + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    first = np.ones(near.shape, bool)
    first[1:] = near[1:] != near[:-1]
    outline = np.bincount(near[first], minlength=n)
    candidates = []
    for r in np.unique(labels[sub_seeds & ~edge]):
        if r == 0 or outline[r] < MIN_STATIC_OUTLINE:
            continue
        x, y, bw, bh, _ = stats[r]
        x0, y0, x1, y1 = max(0, x - 1), max(0, y - 1), min(sw, x + bw + 1), min(sh, y + bh + 1)
        ring = (cv2.dilate((labels[y0:y1, x0:x1] == r).astype(np.uint8), k3) > 0) & edge[y0:y1, x0:x1]
        if np.count_nonzero(ring) >= MIN_STATIC_OUTLINE:
            candidates.append((r, (x0 + mx0, y0 + my0, x1 + mx0, y1 + my0), ring))
    if not candidates:
        return out
    # the other frames are compared over the candidates' boxes only, with room for the patches and the shifts
    cx0, cy0 = max(0, min(c[1][0] for c in candidates) - pad), max(0, min(c[1][1] for c in candidates) - pad)
    cx1, cy1 = min(w, max(c[1][2] for c in candidates) + pad), min(h, max(c[1][3] for c in candidates) + pad)
    views = others((cx0, cy0, cx1, cy1))
    part = img[cy0:cy1, cx0:cx1]
    static_edge = every_edge[cy0 - ey0:cy1 - ey0, cx0 - ex0:cx1 - ex0] \
        & (static_persistence(part, views) >= STATIC_PATCH)
    padded = None
    for r, (x0, y0, x1, y1), ring in candidates:
        near = static_edge[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] & ring
        if np.count_nonzero(near) < max(MIN_STATIC_OUTLINE, STATIC_OUTLINE * np.count_nonzero(ring)):
            continue
        if padded is None:
            m = MOVE_SEARCH
            padded = [(cv2.copyMakeBorder(view, m, m, m, m, cv2.BORDER_REPLICATE), covered)
                      for view, covered, _ in views]
        if region_moved(part, padded, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), near):
            continue
        out[y0:y1, x0:x1] |= (labels[y0 - my0:y1 - my0, x0 - mx0:x1 - mx0] == r) | near
    return out


def region_moved(img: np.ndarray, padded: list[tuple[np.ndarray, np.ndarray]], box: tuple[int, int, int, int],
                 ring: np.ndarray) -> bool:
    """Whether another frame shows the outline `ring` (of the box `box` of `img`) moved: shifted by
    2 to MOVE_SEARCH pixels, it matches that frame (each other frame's view, padded by
    MOVE_SEARCH, and where it is covered: a root mean square difference under a third of
    PATCH_TOLERANCE a channel), in place it does not, and shifted it is at most MOVED_GAIN times as
    far. A slow character's outline keeps its place for a few frames, then moves; a background
    object's never moves (where a character covers part of it, no shift makes it match)."""
    import cv2
    x0, y0, x1, y1 = box
    r = MOVE_SEARCH
    template = img[y0:y1, x0:x1].astype(np.float32)
    weights = np.repeat(ring[..., None], 3, axis=2).astype(np.float32)
    close = np.count_nonzero(ring) * 3 * (PATCH_TOLERANCE / 3) ** 2     # the shifted outline matches
    for view, covered in padded:
        if not covered[y0:y1, x0:x1][ring].all():
            continue
        window = view[y0:y1 + 2 * r, x0:x1 + 2 * r].astype(np.float32)
        cost = cv2.matchTemplate(window, template, cv2.TM_SQDIFF, mask=weights)
        at, best = float(cost[r, r]), float(cost.min())
        dy, dx = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if max(abs(dx - r), abs(dy - r)) >= 2 and best < min(MOVED_GAIN * at, close) and at > close:
            return True
    return False
