"""Camera motion between two frames of a shot, robust to the characters moving in front.

`estimate_motion(prev, cur)` returns a 2x3 motion (a scale and a translation) that maps a
pixel of `cur` to where the same background point is in `prev`. Two candidates are compared by a
robust cost (the mean absolute grey-level difference after warping, each pixel's truncated at 24,
so the moving characters, a minority of the pixels, cannot pull the estimate):
- a pure translation found by exhaustive search on a coarse pyramid level (up to a tenth of the
  width), refined per level (pans);
- from there, OpenCV's ECC image alignment (affine), reduced to a scale and a shift (zooms).
"""
from __future__ import annotations

import numpy as np

TRUNCATE = 24.0                   # grey levels: a pixel differing more counts as this much


def _cost(a: np.ndarray, b: np.ndarray) -> float:
    """Truncated mean absolute difference: pixels of moving characters count at most TRUNCATE, so
    the background, most of the picture, decides."""
    import cv2
    return float(cv2.mean(cv2.min(cv2.absdiff(a, b), TRUNCATE))[0])


def warp_cost(prev: np.ndarray, cur: np.ndarray, m: np.ndarray) -> float:
    """Robust difference between `cur` and `prev` warped onto it by `m` (cur -> prev coordinates)."""
    import cv2
    h, w = cur.shape
    warped = cv2.warpAffine(prev, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    valid = warped >= 0
    if valid.sum() < h * w // 3:
        return float("inf")
    return float(np.minimum(np.abs(warped[valid] - cur[valid]), TRUNCATE).mean())


def _shift_cost(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> float:
    """Cost of cur = a, prev = b with a(x, y) ~ b(x + dx, y + dy), over the overlap."""
    h, w = a.shape
    x0, x1 = max(0, -dx), min(w, w - dx)
    y0, y1 = max(0, -dy), min(h, h - dy)
    if x1 - x0 < w // 3 or y1 - y0 < h // 3:
        return float("inf")
    return _cost(a[y0:y1, x0:x1], b[y0 + dy:y1 + dy, x0 + dx:x1 + dx])


def translation(prev: np.ndarray, cur: np.ndarray, max_shift: float = 0.1, coarse_width: int = 48) -> tuple[int, int]:
    """Integer (dx, dy) with cur(x, y) ~ prev(x + dx, y + dy): exhaustive search on a pyramid level
    about `coarse_width` wide (up to `max_shift` of the width, half that vertically), refined by
    +-1 pixel per finer level."""
    import cv2
    levels = [(prev, cur)]
    while levels[-1][0].shape[1] > coarse_width * 2 and min(levels[-1][0].shape[:2]) >= 32:
        p, c = levels[-1]
        levels.append((cv2.pyrDown(p), cv2.pyrDown(c)))
    p, c = levels[-1]
    rx = max(2, int(round(p.shape[1] * max_shift)))
    ry = max(1, rx // 2)
    _, cx, cy = min((_shift_cost(c, p, dx, dy), dx, dy) for dy in range(-ry, ry + 1) for dx in range(-rx, rx + 1))
    for p, c in reversed(levels[:-1]):
        _, cx, cy = min((_shift_cost(c, p, 2 * cx + ex, 2 * cy + ey), 2 * cx + ex, 2 * cy + ey)
                        for ey in (-1, 0, 1) for ex in (-1, 0, 1))
    return cx, cy


def zoom_motion(prev: np.ndarray, cur: np.ndarray, start: np.ndarray, reduce: int = 2,
                agree: float = 12.0) -> np.ndarray | None:
    """A scale-and-shift motion: OpenCV's ECC (affine, on images `reduce` times smaller, started from
    `start`, on the pixels that `start` already aligns within `agree` grey levels) projected onto a
    similarity without rotation (the mean of the two scales, the image centre kept where ECC puts
    it). None when ECC does not converge."""
    import cv2
    a = cv2.resize(prev, None, fx=1 / reduce, fy=1 / reduce, interpolation=cv2.INTER_AREA)
    c = cv2.resize(cur, None, fx=1 / reduce, fy=1 / reduce, interpolation=cv2.INTER_AREA)
    warp = start.astype(np.float32).copy()
    warp[:, 2] /= reduce
    # only pixels that the start motion already explains: the background, not the characters
    aligned = cv2.warpAffine(a, warp, (c.shape[1], c.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    calm = (cv2.GaussianBlur(np.abs(aligned - c), (5, 5), 0) < agree).astype(np.uint8)
    if calm.sum() < calm.size // 4:
        calm = None
    try:
        # ECC finds W with input(W(x)) ~ template(x): template = cur, input = prev
        _, warp = cv2.findTransformECC(c, a, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-4), calm, 5)
    except cv2.error:
        return None
    m = warp.astype(np.float64)
    m[:, 2] *= reduce
    scale = (m[0, 0] + m[1, 1]) / 2
    if not 0.8 < scale < 1.25:
        return None
    h, w = cur.shape
    centre = np.array([w / 2, h / 2])
    moved = m[:, :2] @ centre + m[:, 2]
    return np.array([[scale, 0.0, moved[0] - scale * centre[0]], [0.0, scale, moved[1] - scale * centre[1]]])


def estimate_motion(prev: np.ndarray, cur: np.ndarray, max_shift: float = 0.1) -> tuple[np.ndarray, float]:
    """(2x3 float matrix mapping `cur` pixel coordinates to `prev` ones, its `warp_cost`) for grey
    float32 images; the translation search covers `max_shift` of the width (frames of one shot a
    few frames apart). ECC refines the shift below a pixel and finds the scale."""
    dx, dy = translation(prev, cur, max_shift)
    best = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    cost = warp_cost(prev, cur, best)
    start = best
    for _ in range(2):                 # the second time on the pixels that the first motion explains
        m = zoom_motion(prev, cur, start)
        if m is None:
            break
        other = warp_cost(prev, cur, m)
        if other < cost:
            best, cost = m, other
        start = m
    return best, cost


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine a(b(x))."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def chain(grays: list[np.ndarray], outlier: float = 3.0, floor: float = 4.0) -> tuple[list[np.ndarray], list[bool]]:
    """Per frame, the 2x3 matrix mapping its pixels to the first frame's coordinates, each frame
    registered to the last frame that registered well, and whether it did: a frame whose cost is
    over `outlier` times the median so far (and over `floor` grey levels) is no view of the
    background (a flash, a frame of another shot) and the next frames skip it."""
    out = [np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])]
    good = [True]
    costs: list[float] = []
    last = 0
    for k in range(1, len(grays)):
        m, cost = estimate_motion(grays[last], grays[k])
        ok = cost <= max(floor, outlier * float(np.median(costs))) if costs else True
        out.append(compose(out[last], m))
        good.append(ok)
        if ok:
            costs.append(cost)
            last = k
    return out, good
