"""Camera motion over a shot, robust to the characters moving in front and to zoom.

Each frame's ORB features (OpenCV) are matched to those of an anchor frame, and a similarity (scale,
rotation, shift) is fitted by RANSAC (`cv2.estimateAffinePartial2D`): the characters, a minority of
the matched features, are outliers, and the scale comes from features spread over the whole
frame, so zooms are measured as precisely as pans. Frames are registered to an anchor directly,
not frame to frame, so errors do not accumulate along a shot: the anchor changes only when a pan
has moved it mostly out of view (then the last well-registered frame, already placed, becomes it).
A frame that matches badly, or whose background differs from the anchor's more than the shot's
other frames do (a flash, a frame of another shot), is no view of the background: it is marked and
skipped as an anchor. When the decoder's motion vectors already place a frame (motion_vectors.py)
and that placement explains the frame as well as the shot's other frames are explained, the image
search is skipped: it runs only for the frames the vectors miss or misplace.
"""
from __future__ import annotations

import numpy as np

TRUNCATE = 24.0                   # grey levels: a pixel differing more counts as this much
ECC_ITERATIONS = 20               # ECC's most iterations: it starts from a candidate within a pixel or so
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def warp_cost(ref: np.ndarray, cur: np.ndarray, m: np.ndarray) -> float:
    """Robust difference between `cur` and `ref` warped onto it by `m` (cur -> ref coordinates):
    the mean absolute grey-level difference over the overlap, each pixel's truncated at TRUNCATE,
    so pixels of moving characters cannot dominate it."""
    import cv2
    h, w = cur.shape
    if m[0, 0] == 1 and m[1, 1] == 1 and m[0, 1] == 0 and m[1, 0] == 0 \
            and float(m[0, 2]).is_integer() and float(m[1, 2]).is_integer():
        # a whole-pixel shift (a pan): the overlap, without resampling
        dx, dy = int(m[0, 2]), int(m[1, 2])
        rh, rw = ref.shape
        x0, x1, y0, y1 = max(0, -dx), min(w, rw - dx), max(0, -dy), min(h, rh - dy)
        if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < h * w // 3:
            return float("inf")
        return _cost(ref[y0 + dy:y1 + dy, x0 + dx:x1 + dx], cur[y0:y1, x0:x1])
    warped = cv2.warpAffine(ref, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    valid = cv2.compare(warped, 0, cv2.CMP_GE)
    if cv2.countNonZero(valid) < h * w // 3:
        return float("inf")
    return float(cv2.mean(cv2.min(cv2.absdiff(warped, cur), TRUNCATE), mask=valid)[0])


def _cost(a: np.ndarray, b: np.ndarray) -> float:
    """Truncated mean absolute difference: pixels of moving characters count at most TRUNCATE, so
    the background, most of the picture, decides."""
    import cv2
    return float(cv2.mean(cv2.min(cv2.absdiff(a, b), TRUNCATE))[0])


def _shift_cost(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> float:
    """Cost of cur = a, prev = b with a(x, y) ~ b(x + dx, y + dy), over the overlap."""
    h, w = a.shape
    x0, x1 = max(0, -dx), min(w, w - dx)
    y0, y1 = max(0, -dy), min(h, h - dy)
    if x1 - x0 < w // 3 or y1 - y0 < h // 3:
        return float("inf")
    return _cost(a[y0:y1, x0:x1], b[y0 + dy:y1 + dy, x0 + dx:x1 + dx])


def translation(prev: np.ndarray, cur: np.ndarray, max_shift: float = 0.1, coarse_width: int = 24) -> tuple[int, int]:
    """Integer (dx, dy) with cur(x, y) ~ prev(x + dx, y + dy): exhaustive search on the first pyramid
    level at most twice `coarse_width` wide (up to `max_shift` of the width, half that vertically),
    refined by +-1 pixel per finer level."""
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
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4), calm, 5)
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


class Features:
    """ORB keypoints (x, y) and descriptors of one grey frame."""

    def __init__(self, gray: np.ndarray, count: int = 800):
        import cv2
        img = np.clip(gray, 0, 255).astype(np.uint8) if gray.dtype != np.uint8 else gray
        orb = cv2.ORB_create(nfeatures=count, scaleFactor=1.2, nlevels=4, edgeThreshold=15, patchSize=15,
                             fastThreshold=8)
        kp, des = orb.detectAndCompute(img, None)
        self.size = (img.shape[1], img.shape[0])
        self.points = np.array([k.pt for k in kp], np.float32).reshape(-1, 2)
        self.descriptors = des


def similarity(ref: Features, cur: Features, threshold: float = 1.5) -> tuple[np.ndarray | None, int]:
    """(2x3 similarity mapping `cur` pixel coordinates to `ref` ones, RANSAC inlier count), or
    (None, 0) when too few features match."""
    import cv2
    if ref.descriptors is None or cur.descriptors is None or len(ref.points) < 8 or len(cur.points) < 8:
        return None, 0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(cur.descriptors, ref.descriptors)
    if len(matches) < 8:
        return None, 0
    src = cur.points[[m.queryIdx for m in matches]]
    dst = ref.points[[m.trainIdx for m in matches]]
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                             maxIters=2000, confidence=0.995, refineIters=20)
    if m is None:
        return None, 0
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if not 0.7 < scale < 1.4 or abs(m[1, 0]) > 0.05 * scale:     # a camera zooms and pans; it does not spin
        return None, 0
    return _no_rotation(m.astype(np.float64), cur.size), int(inliers.sum())


def _no_rotation(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`m` as a scale and a shift (the rotation dropped), the frame centre kept where `m` puts it."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    centre = np.array([size[0] / 2, size[1] / 2])
    moved = m[:, :2] @ centre + m[:, 2]
    return np.array([[scale, 0.0, moved[0] - scale * centre[0]], [0.0, scale, moved[1] - scale * centre[1]]])


def _power(m: np.ndarray, r: float) -> np.ndarray:
    """A scale-and-shift motion applied `r` times (r may be fractional)."""
    s = float(m[0, 0])
    if abs(s - 1) < 1e-9:
        return np.array([[1.0, 0.0, m[0, 2] * r], [0.0, 1.0, m[1, 2] * r]])
    sr = s ** r
    t = m[:, 2] * (sr - 1) / (s - 1)            # the fixed point stays fixed
    return np.array([[sr, 0.0, t[0]], [0.0, sr, t[1]]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine a(b(x))."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def inverse(m: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.invertAffineTransform(m)


def chain(grays: list[np.ndarray], min_inliers: int = 12, outlier: float = 3.0, floor: float = 4.0,
          reach: float = 0.3, placements: list[tuple[int, np.ndarray] | None] | None = None,
          trust: float = 1.5, precise: set[int] | frozenset[int] = frozenset()) -> tuple[list[np.ndarray], list[bool]]:
    """Per frame (grey float32, one shot, time order), the 2x3 matrix mapping its pixels to the
    first frame's coordinates, and whether it registered well.

    Each frame is registered to the anchor (at first the first frame). With `placements` (per
    frame, ``(segment, m)`` from the encoder's motion vectors, motion_vectors.py, or None), a frame
    placed in the same segment as the last good frame is carried over by the vectors' motion; the
    best of that (for a pan, also the whole-pixel shifts around it), a still camera and a steadily
    moving one is kept without any image search when its `warp_cost` against the anchor is at most
    `trust` times the shot's median so far (never for the shot's first frame). The frames `precise`
    (those whose masks are wanted) always get the image search, the vectors' motion one more of
    its candidates. Otherwise (and without placements) the candidates are: the last good
    frame's motion carried over (a still camera), the shift to the last good frame found by
    exhaustive search (`translation`, a pan), the ORB similarity to the anchor (zooms, on textured
    backgrounds) and the vectors' motion; the one with the lowest `warp_cost` against the anchor
    is refined by ECC against the anchor (`zoom_motion`, at quarter size), kept if that lowers the
    cost. When a frame has moved more than `reach` of the width (or 15 % in scale) from the anchor,
    the last good frame becomes the anchor. A frame whose cost is over `outlier` times the shot's
    median (and over `floor` grey levels) is no view of the background (a flash, a frame of
    another shot)."""
    h, w = grays[0].shape
    feats: dict[int, Features] = {}

    def feat(i: int) -> Features:
        if i not in feats:
            feats[i] = Features(grays[i])
        return feats[i]

    out = [IDENTITY.copy()]
    good = [True]
    costs: list[float] = []
    anchor, last = 0, 0
    to_anchor_last = IDENTITY.copy()         # the last good frame's pixels -> the anchor's
    step, step_len = IDENTITY.copy(), 1       # the last good frame's motion to the good frame before it
    for k in range(1, len(grays)):
        ref, cur = grays[anchor], grays[k]
        carried = None
        if placements is not None and placements[k] is not None and placements[last] is not None \
                and placements[k][0] == placements[last][0]:
            # the vectors' motion from frame k to the last good frame, composed with that one's to the anchor
            carried = compose(to_anchor_last, compose(inverse(placements[last][1]), placements[k][1]))
        best, cost = None, float("inf")
        if carried is not None and k not in precise:
            # the vectors' motion; for a pan, the whole-pixel shifts around it (a digital camera's pan
            # often is one: no resampling blur); a still or steadily moving camera: whichever
            # explains the frame best
            cheap = [carried, to_anchor_last, compose(to_anchor_last, _power(step, (k - last) / step_len))]
            if abs(carried[0, 0] - 1) < 2e-3:        # a pan: also the whole-pixel shifts around it
                xs = {float(np.floor(carried[0, 2])), float(np.ceil(carried[0, 2]))}
                ys = {float(np.floor(carried[1, 2])), float(np.ceil(carried[1, 2]))}
                cheap += [np.array([[1.0, 0, x], [0, 1.0, y]]) for x in sorted(xs) for y in sorted(ys)]
            cost, j = min((warp_cost(ref, cur, c), j) for j, c in enumerate(cheap))
            # not for a shot's first frames: the shot's typical cost is not known yet
            if costs and cost <= trust * float(np.median(costs)):
                best = cheap[j]
        if best is None:
            best, cost = _search(grays, anchor, last, k, to_anchor_last, step, step_len, feat, min_inliers,
                                 [] if carried is None else [carried])
        ok = cost <= max(floor, outlier * float(np.median(costs))) if costs else cost < float("inf")
        out.append(compose(out[anchor], best))
        good.append(ok)
        if not ok:
            continue
        costs.append(cost)
        step, step_len = compose(inverse(to_anchor_last), best), k - last
        last, to_anchor_last = k, best
        scale = float(np.hypot(best[0, 0], best[1, 0]))
        centre = best[:, :2] @ np.array([w / 2, h / 2]) + best[:, 2]
        if abs(scale - 1) > 0.15 or np.abs(centre - [w / 2, h / 2]).max() > reach * w:
            anchor, to_anchor_last = k, IDENTITY.copy()
    return out, good


def _search(grays, anchor, last, k, to_anchor_last, step, step_len, feat, min_inliers, extra):
    """(the motion of frame k to the anchor, its `warp_cost`) from the image-based candidates and
    `extra` ones, the best refined by ECC."""
    ref, cur = grays[anchor], grays[k]
    dx, dy = translation(grays[last], cur)
    candidates = [to_anchor_last, compose(to_anchor_last, np.array([[1.0, 0, dx], [0, 1.0, dy]])),
                  compose(to_anchor_last, _power(step, (k - last) / step_len))]     # the camera keeps moving
    m, n = similarity(feat(anchor), feat(k))
    if m is not None and n >= min_inliers:
        candidates.append(m)
    candidates += extra
    # a still or steadily moving camera makes candidates alike: each distinct one is scored once
    distinct = [j for j, c in enumerate(candidates) if not any(np.array_equal(c, d) for d in candidates[:j])]
    scored = [(warp_cost(ref, cur, candidates[j]), j) for j in distinct]
    cost, j = min(scored)
    return _refine(ref, cur, candidates[j], cost)


def _refine(ref: np.ndarray, cur: np.ndarray, m: np.ndarray, cost: float) -> tuple[np.ndarray, float]:
    """`m` (cur -> ref, of `warp_cost` `cost`) refined by ECC, if that lowers the cost."""
    refined = zoom_motion(ref, cur, m, reduce=max(1, cur.shape[1] // 160))
    if refined is not None:
        other = warp_cost(ref, cur, refined)
        if other < cost:
            return refined, other
    return m, cost
