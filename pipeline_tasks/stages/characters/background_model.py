"""Weight-free segmentation: a per-scene background model, and colour distance to it.

Flat-colour cartoons have a static (or panning) background and characters that move. For each scene:
1. frames are aligned to the first one by shifts (camera pans are translations) found by a robust
   search (the background, most of the pixels, decides), chained frame to frame; with context frames
   from the source video the alignment is a similarity to an anchor frame (registration.py);
2. the background mosaic is the per-pixel median of the aligned frames (pixels a frame does not
   cover are left out); it is re-estimated once with each frame's foreground excluded, so a
   character standing in the same place in up to most of the frames does not leak into it;
3. a frame's foreground score is its Euclidean RGB distance to its window of the mosaic, mapped
   to [0, 1] by a logistic around `threshold` (0.5 at the threshold), then cleaned by a small
   morphological opening and closing and by filling small holes.
A scene with fewer than `min_frames` frames has no usable background model: its frames fall back
to a border model (the background is whatever colour dominates the frame border, refined by GrabCut),
which is much weaker; the stage reports how many frames needed it.
"""
from __future__ import annotations

import functools

import numpy as np

from .backend_base import Prediction, SegmentationBackend
from .static_regions import STATIC_COMPARED, static_regions


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _robust_cost(a: np.ndarray, b: np.ndarray, dx: int, dy: int, keep: float = 0.5) -> float:
    """Mean of the smallest `keep` share of |a(x, y) - b(x - dx, y - dy)| over the overlap: moving
    characters (a minority of pixels) do not pull the estimate, the background does."""
    h, w = a.shape
    ax0, ax1 = max(0, dx), min(w, w + dx)
    ay0, ay1 = max(0, dy), min(h, h + dy)
    if ax1 - ax0 < w // 3 or ay1 - ay0 < h // 3:
        return float("inf")
    da = a[ay0:ay1, ax0:ax1]
    db = b[ay0 - dy:ay1 - dy, ax0 - dx:ax1 - dx]
    d = np.abs(da - db).ravel()
    k = max(1, int(d.size * keep))
    return float(np.partition(d, k - 1)[:k].mean())


def _search(a, b, cx, cy, radius, radius_y=None):
    best = (float("inf"), cx, cy)
    ry = radius if radius_y is None else radius_y
    for dy in range(cy - ry, cy + ry + 1):
        for dx in range(cx - radius, cx + radius + 1):
            c = _robust_cost(a, b, dx, dy)
            if c < best[0]:
                best = (c, dx, dy)
    return best[1], best[2]


def estimate_shift(prev: np.ndarray, cur: np.ndarray, coarse_width: int = 64, max_shift: float = 0.2,
                   max_shift_y: float = 0.1) -> tuple[int, int]:
    """Integer (dx, dy) with cur(x, y) ~ prev(x + dx, y + dy): an exhaustive search of a robust cost
    on a pyramid level about `coarse_width` wide (up to `max_shift` of the width), then refined
    by +-1 pixel at each finer level (factor 2) down to full resolution."""
    import cv2
    levels = [(prev, cur)]
    while levels[-1][0].shape[1] > coarse_width * 2 and min(levels[-1][0].shape[:2]) >= 32:
        p, c = levels[-1]
        levels.append((cv2.pyrDown(p), cv2.pyrDown(c)))
    pa, ca = levels[-1]
    radius = max(2, int(round(pa.shape[1] * max_shift)))
    radius_y = max(2, int(round(pa.shape[0] * max_shift_y)))
    cx, cy = _search(pa, ca, 0, 0, radius, radius_y)
    for p, c in reversed(levels[:-1]):
        cx, cy = _search(p, c, 2 * cx, 2 * cy, 1)
    return cx, cy


def estimate_shifts(images: list[np.ndarray]) -> list[tuple[int, int]]:
    """Integer (dx, dy) of each image relative to the first (image i's pixel (x, y) shows what image
    0 shows at (x + dx, y + dy)), chained frame to frame."""
    shifts = [(0, 0)]
    grays = [_gray(img) for img in images]
    for prev, cur in zip(grays, grays[1:]):
        # cur(x, y) ~ prev(x + sx, y + sy)  with the cost defined on a = cur, b = prev
        sx, sy = estimate_shift(prev, cur)
        dx, dy = shifts[-1]
        shifts.append((dx + sx, dy + sy))
    return shifts


def _sorting_network(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort for `n` values: those of the next
    power of two that touch only the first `n` (the missing values count as larger than any)."""
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []

    def merge(lo: int, count: int, r: int) -> None:
        step = 2 * r
        if step < count:
            merge(lo, count, step)
            merge(lo + r, count, step)
            pairs.extend((i, i + r) for i in range(lo + r, lo + count - r, step))
        else:
            pairs.append((lo, lo + r))

    def sort(lo: int, count: int) -> None:
        if count > 1:
            sort(lo, count // 2)
            sort(lo + count // 2, count // 2)
            merge(lo, count, 1)
    sort(0, size)
    return [(i, j) for i, j in pairs if j < n]


def _nanmedian_strips(stack: np.ndarray, valid: np.ndarray, budget: int = 1 << 16) -> np.ndarray:
    """Per-pixel median over axis 0 of uint8 `stack` (N,H,W,3), using only `valid` (N,H,W) entries
    (of an even count, the mean of the middle two, rounded up). Pixels with no valid entry get the
    plain median. Invalid entries become 255, so they sort last (tied with any valid 255, an equal
    value): the first `count` sorted values are the valid ones. The N values are sorted by a sorting
    network of OpenCV min/max calls over whole rows, in row strips of about `budget` values a frame."""
    import cv2
    n, h, w, c = stack.shape
    out = np.empty((h, w, c), np.uint8)
    network = _sorting_network(n)
    rows = max(1, budget // (w * c))
    for y0 in range(0, h, rows):
        v = valid[:, y0:y0 + rows]
        count = np.count_nonzero(v, axis=0)                    # valid entries per pixel
        none = count == 0
        count[none] = n
        invalid = np.negative((~(v | none)).view(np.uint8))    # 255 where invalid
        invalid = cv2.cvtColor(invalid.reshape(-1, w), cv2.COLOR_GRAY2RGB).reshape(invalid.shape + (c,))
        planes = list(np.bitwise_or(stack[:, y0:y0 + rows], invalid))
        spare = np.empty_like(planes[0])
        for i, j in network:
            cv2.min(planes[i], planes[j], dst=spare)
            cv2.max(planes[i], planes[j], dst=planes[j])
            planes[i], spare = spare, planes[i]
        lo, hi = np.empty_like(planes[0]), np.empty_like(planes[0])
        for rank, picked in (((count - 1) // 2, lo), (count // 2, hi)):
            for r in range(int(rank.max()) + 1):
                cv2.copyTo(planes[r], (rank == r).view(np.uint8), picked)
        d = hi - lo
        out[y0:y0 + rows] = lo + (d >> 1) + (d & 1)
    return out


def _inpaint(img: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """`img` with the pixels of bool `mask` inpainted (OpenCV's Telea method, `radius`), run over the
    mask's box and `radius` + 2 pixels around it: all that the method reads for them."""
    import cv2
    h, w = mask.shape
    x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    r = radius + 2
    box = np.s_[max(0, y - r):min(h, y + bh + r), max(0, x - r):min(w, x + bw + r)]
    out = img.copy()
    out[box] = cv2.inpaint(img[box], mask[box].view(np.uint8), radius, cv2.INPAINT_TELEA)
    return out


@functools.lru_cache(maxsize=8)
def _logistic_table(threshold: float, softness: float) -> np.ndarray:
    """`soft_foreground`'s score for each sum of squared RGB differences (0 to 3 * 255 ** 2)."""
    import cv2
    dist = cv2.sqrt(np.arange(3 * 255 ** 2 + 1, dtype=np.float32)[None])
    z = cv2.exp((threshold - dist) * np.float32(1.0 / max(softness, 1e-3)))
    return (1.0 / (1.0 + z)).astype(np.float32)[0]


def soft_foreground(img: np.ndarray, bg: np.ndarray, threshold: float, softness: float) -> np.ndarray:
    """Logistic of the Euclidean RGB distance of uint8 `img` to `bg`: 0.5 at `threshold`. The sum of
    the squared differences, a whole number up to 3 * 255 ** 2, indexes a table of the scores."""
    import cv2
    diff = cv2.absdiff(img, bg)
    squares = cv2.transform(cv2.multiply(diff, diff, dtype=cv2.CV_32F), np.ones((1, 3), np.float32))
    return _logistic_table(float(threshold), float(softness))[squares.astype(np.int32)]


def clean_mask(mask: np.ndarray, open_px: int, max_hole: int) -> np.ndarray:
    """Opening removes specks, closing joins hairline gaps, holes under `max_hole` pixels fill."""
    import cv2
    m = mask.astype(np.uint8)
    if open_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * open_px + 1, 2 * open_px + 1))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    if max_hole > 0:
        # a hole lies inside the mask's bounding box, off its edges (background on an edge joins the
        # background outside the box, which reaches the frame's border): the box is all that is searched
        bx, by, bw, bh = cv2.boundingRect(m)
        box = m[by:by + bh, bx:bx + bw]
        if box.size:
            n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - box, connectivity=4)
            x, y, cw, ch, area = stats.T
            fill = ~((x == 0) | (y == 0) | (x + cw == bw) | (y + ch == bh)) & (area <= max_hole)
            fill[0] = False
            if fill.any():
                box[fill[labels]] = 1
    return m.astype(bool)


class BackgroundModelBackend(SegmentationBackend):
    name = "background"

    def __init__(self, threshold: float = 50.0, softness: float = 4.0, min_frames: int = 3,
                 max_frames: int = 16, open_px: int = 1, max_hole: int = 400, refine_iterations: int = 2,
                 colour_model: bool = True, bins: int = 16, margin: float = 0.06,
                 veto: float = 0.3, work_width: int = 384, context_refine_iterations: int = 1,
                 static_regions: str = "drop"):
        self.threshold = threshold
        self.softness = softness
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.open_px = open_px
        self.max_hole = max_hole
        self.refine_iterations = refine_iterations
        # with context frames the first median already sees most of the background: one
        # re-estimation without the foreground gives the same instances as two, a third cheaper
        self.context_refine_iterations = context_refine_iterations
        self.colour_model = colour_model
        self.bins = bins
        self.margin = margin
        self.veto = veto
        self.work_width = work_width
        # "drop": the pixels the colour model added in regions fixed on the background are made
        # background again; "keep": they stay (either way the regions left are reported per frame)
        self.static_regions = static_regions
        self.fallback_frames = 0

    # -- the mosaic -------------------------------------------------------------------------------
    def _layout(self, images):
        shifts = estimate_shifts(images)
        h, w = images[0].shape[:2]
        xs = [s[0] for s in shifts]
        ys = [s[1] for s in shifts]
        ox, oy = -min(xs), -min(ys)
        size = (h + max(ys) - min(ys), w + max(xs) - min(xs))
        return [(dx + ox, dy + oy) for dx, dy in shifts], size

    def _median(self, images, origins, size, idx, masks=None):
        """Masked temporal median of the aligned frames `idx`; pixels no frame shows as background
        are inpainted from their surroundings."""
        import cv2
        h, w = images[0].shape[:2]
        mh, mw = size
        stack = np.zeros((len(idx), mh, mw, 3), np.uint8)
        valid = np.zeros((len(idx), mh, mw), bool)
        for j, i in enumerate(idx):
            x, y = origins[i]
            stack[j, y:y + h, x:x + w] = images[i]
            valid[j, y:y + h, x:x + w] = True if masks is None else ~masks[i]
        mosaic = _nanmedian_strips(stack, valid)
        unseen = ~valid.any(axis=0)
        if masks is not None and unseen.any():
            mosaic = cv2.inpaint(mosaic, unseen.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        return mosaic, unseen

    def background_mosaic(self, images: list[np.ndarray]):
        """(mosaic, origins, softs): `origins[i]` is the (x, y) of image i's top-left corner in the
        mosaic; `softs` the foreground scores against the final mosaic."""
        import cv2
        origins, size = self._layout(images)
        h, w = images[0].shape[:2]
        idx = np.unique(np.linspace(0, len(images) - 1, min(len(images), self.max_frames)).round().astype(int))
        mosaic, unseen = self._median(images, origins, size, idx)
        unseen[:] = False
        grow = np.ones((5, 5), np.uint8)
        for it in range(self.refine_iterations + 1):
            softs = [soft_foreground(img, mosaic[y:y + h, x:x + w], self.threshold, self.softness)
                     for img, (x, y) in zip(images, origins)]
            if self.colour_model:
                hidden = [unseen[y:y + h, x:x + w] for x, y in origins]
                softs = colour_model_recover(images, softs, self.bins, self.margin, self.veto, hidden)
            if it == self.refine_iterations:
                break
            # re-estimate with each frame's foreground (grown a little: blurred edges) left out
            masks = [cv2.dilate(clean_mask(s >= 0.5, self.open_px, self.max_hole).astype(np.uint8), grow).astype(bool)
                     for s in softs]
            mosaic, unseen = self._median(images, origins, size, idx, masks)
        return mosaic, origins, softs

    def predict_scene(self, images: list[np.ndarray]) -> list[Prediction]:
        if not images:
            return []
        if len(images) < self.min_frames:
            self.fallback_frames += len(images)
            return [Prediction(foreground=border_model_foreground(img)) for img in images]
        _, _, softs = self.background_mosaic(images)
        preds = []
        for soft in softs:
            keep = clean_mask(soft >= 0.5, self.open_px, self.max_hole)
            # pixels removed by cleaning lose their score; filled holes get a confident one
            soft = np.where(keep, np.maximum(soft, 0.5 + 1e-3), np.minimum(soft, 0.5 - 1e-3)).astype(np.float32)
            preds.append(Prediction(foreground=soft))
        return preds


    # -- with context frames from the source video ---------------------------------------------------
    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) the model runs at: at most `work_width` wide."""
        scale = min(1.0, self.work_width / width)
        return max(16, int(round(width * scale))), max(16, int(round(height * scale)))

    def predict_scene_with_context(self, images: list[np.ndarray], indices: list[int],
                                   context: list[tuple[int, np.ndarray]]) -> list[Prediction]:
        """Predictions for `images` (frame indices `indices`) from a model of their scene built at
        the working size together with `context`: ``(frame_index, rgb)`` frames of the same scene
        already at `work_size`. Camera motion may include zoom (similarity registration); the soft
        maps are computed at the working size and resized to the frames' size."""
        import cv2

        from .motion_vectors import fill_between
        if not images:
            return []
        h, w = images[0].shape[:2]
        size = self.work_size(w, h)
        own = {i for i in indices}
        placed = {i: p for i, _, p in context}
        frames = [(i, k, cv2.resize(im, size, interpolation=cv2.INTER_AREA) if (w, h) != size else im)
                  for k, (i, im) in enumerate(zip(indices, images))]
        frames += [(i, -1, im) for i, im, _ in context if i not in own]
        frames.sort(key=lambda f: (f[0], f[1]))
        if len(frames) < self.min_frames:
            self.fallback_frames += len(images)
            return [Prediction(foreground=border_model_foreground(img)) for img in images]
        softs, background, statics = self._registered_softs([f[2] for f in frames],
                                                   [j for j, f in enumerate(frames) if f[1] >= 0],
                                                   fill_between([f[0] for f in frames],
                                                                [placed.get(f[0]) for f in frames]))
        preds: list[Prediction | None] = [None] * len(images)
        for j, ((_, k, _), soft) in enumerate(zip(frames, softs)):
            if k < 0:
                continue
            keep = clean_mask(soft >= 0.5, self.open_px, self.max_hole)
            soft = np.where(keep, np.maximum(soft, 0.5 + 1e-3), np.minimum(soft, 0.5 - 1e-3)).astype(np.float32)
            static = statics.get(j)
            if (w, h) != size:
                soft = self._full_size_edges(images[k], soft, background(j))
                if static is not None:
                    static = cv2.resize(static.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            preds[k] = Prediction(foreground=soft, static=static)
        return preds

    def _full_size_edges(self, img: np.ndarray, soft: np.ndarray, bg: np.ndarray) -> np.ndarray:
        """The working-size soft map of `img` at `img`'s size: resized, then, in a band about a
        working pixel wide on each side of its edge, scored again at full size against the background
        (resized alike), so the mask's outline follows the frame's own pixels, not the working grid."""
        import cv2
        h, w = img.shape[:2]
        up = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
        r = max(1, int(round(w / soft.shape[1])))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        inside = (up >= 0.5).view(np.uint8)
        # all of the band, and all that can score 0.5 or more, lies within the mask's box grown by r
        bx, by, bw, bh = cv2.boundingRect(inside)
        if bw == 0:
            return up
        x0, y0, x1, y1 = max(0, bx - r), max(0, by - r), min(w, bx + bw + r), min(h, by + bh + r)
        box = np.s_[y0:y1, x0:x1]
        fine = soft_foreground(img[box], cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)[box],
                               self.threshold, self.softness)
        core = cv2.erode(inside[box], k) > 0
        band = (cv2.dilate(inside[box], k) > 0) & ~core
        part = np.where(band, fine, up[box]).astype(np.float32)
        # the band reshapes outlines; it adds no specks of its own (parts not touching a core)
        n, labels = cv2.connectedComponents((part >= 0.5).view(np.uint8), connectivity=8)
        kept = np.zeros(n, bool)
        kept[np.unique(labels[core])] = True
        kept[0] = False
        up[box] = np.where(kept[labels] | (part < 0.5), part, np.minimum(part, 0.5 - 1e-3))
        return up

    def _registered_softs(self, images: list[np.ndarray], wanted_out: list[int] | None = None,
                          placements: list | None = None):
        """Foreground scores of `images` (one shot, time order) against a background mosaic built
        from them, each frame placed by its similarity to the first (registration.chain; `placements`:
        the frames' placements from the motion vectors, its candidates), a function giving frame
        i's view of the mosaic, and the static regions left in the final masks (frame -> HxW bool).
        Only the scores of the frames `wanted_out` (all when None) are final; the others are left as
        they are (or None)."""
        import cv2

        from .registration import chain, compose
        h, w = images[0].shape[:2]
        to_first, good = chain([_gray(img) for img in images], placements=placements,
                               precise=frozenset(range(len(images)) if wanted_out is None else wanted_out))
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
        pts = np.concatenate([corners @ g[:, :2].T + g[:, 2] for g in to_first])
        x0, y0 = np.floor(pts.min(axis=0))
        x1, y1 = np.ceil(pts.max(axis=0))
        x0, y0 = max(x0, -3 * w), max(y0, -h)                 # a registration gone astray stays bounded
        cw, ch = int(min(x1, 4 * w) - x0), int(min(y1, 2 * h) - y0)
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
        place = [compose(shift, g) for g in to_first]
        usable = np.flatnonzero(good)
        idx = usable[np.unique(np.linspace(0, len(usable) - 1, min(len(usable), self.max_frames)).round().astype(int))]
        ones = np.ones((h, w), np.uint8)
        edge = np.ones((3, 3), np.uint8)

        # colour images are resampled as RGBA (OpenCV's 4-channel resampling is over twice as fast as
        # its 3-channel one, with the same values), then made RGB again
        def rgb(im):
            return cv2.cvtColor(im, cv2.COLOR_RGBA2RGB)

        def rgba(im):
            return cv2.cvtColor(im, cv2.COLOR_RGB2RGBA)
        warped = [cv2.warpAffine(rgba(images[i]), place[i], (cw, ch), flags=cv2.INTER_LINEAR) for i in idx]
        stack = np.stack([rgb(im) for im in warped])
        covered = np.stack([cv2.erode(cv2.warpAffine(ones, place[i], (cw, ch), flags=cv2.INTER_NEAREST), edge) > 0
                            for i in idx])

        def median(masks=None):
            """The median of the stack, leaving out what `masks` (frame -> HxW bool) cover."""
            valid = covered
            if masks is not None:
                valid = covered & np.stack([cv2.erode(cv2.warpAffine((~masks[i]).view(np.uint8), place[i], (cw, ch),
                                                                     flags=cv2.INTER_NEAREST), edge) > 0 for i in idx])
            mosaic = _nanmedian_strips(stack, valid)
            unseen = ~valid.any(axis=0)
            if masks is not None and unseen.any():
                mosaic = _inpaint(mosaic, unseen, 5)
            return mosaic, unseen

        def view(arr, i, flags=cv2.INTER_LINEAR):
            return cv2.warpAffine(arr, place[i], (w, h), flags=flags | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)

        mosaic, unseen = median()
        mosaic_rgba = rgba(mosaic)
        unseen[:] = False
        grow = np.ones((5, 5), np.uint8)
        compared = np.unique(np.linspace(0, len(idx) - 1, min(len(idx), STATIC_COMPARED)).round().astype(int))

        def without_static(i: int, softs: list, distance: np.ndarray, covers: tuple[list[int], np.ndarray],
                           every_region: bool) -> tuple[np.ndarray, np.ndarray]:
            """Frame i's scores with the pixels that the colour model added (`distance`: the
            scores before it) in regions of its mask that stay put in the mosaic made background,
            and what is left of the mask's static regions (`covers`: compared frames, and where
            each covers the mosaic and where its mask does, two channels a frame): of every region
            when `every_region`, else of those holding added pixels."""
            soft = softs[i]
            mask = soft >= 0.5
            added = mask & (distance < 0.5)

            def others(box):
                x0, y0, x1, y1 = box
                m = place[i].copy()
                m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)

                def crop(arr, flags=cv2.INTER_NEAREST):
                    return cv2.warpAffine(arr, m, (x1 - x0, y1 - y0), flags=flags | cv2.WARP_INVERSE_MAP,
                                          borderMode=cv2.BORDER_REPLICATE)
                ks, layers = covers
                if not ks:
                    return []
                # the masks of all compared frames in one warp (OpenCV's nearest-neighbour warp of
                # many channels costs little more than of one), as planes
                planes = np.moveaxis(crop(layers).reshape(y1 - y0, x1 - x0, -1) > 0, -1, 0).copy()
                return [(rgb(crop(warped[k], cv2.INTER_LINEAR)), planes[2 * n], planes[2 * n + 1])
                        for n, k in enumerate(ks) if idx[k] != i]
            static = static_regions(images[i], mask, mask if every_region else added, others)
            drop = static & added if self.static_regions == "drop" else np.zeros_like(static)
            return np.where(drop, np.minimum(soft, 0.5 - 1e-3), soft).astype(np.float32), static & ~drop
        quants: dict[int, np.ndarray] = {}          # colour bins of the usable frames, by position in `usable`
        statics: dict[int, np.ndarray] = {}
        for it in range(self.context_refine_iterations + 1):
            last = it == self.context_refine_iterations
            # the scores wanted: the median frames' (their masks) and, at the end, the asked-for frames'
            if not last:
                wanted = set(idx.tolist())
            else:
                wanted = set(range(len(images)) if wanted_out is None else wanted_out)
            scored = set(usable.tolist()) | wanted if self.colour_model else wanted
            softs = [soft_foreground(img, rgb(view(mosaic_rgba, i)), self.threshold, self.softness) if i in scored
                     else None for i, img in enumerate(images)]
            distance = list(softs)
            if self.colour_model:          # learnt from the frames that show the background only
                hidden = [view(unseen.view(np.uint8), i, cv2.INTER_NEAREST) > 0 for i in usable] if unseen.any() \
                    else None
                recovered = colour_model_recover([images[i] for i in usable], [softs[i] for i in usable],
                                                 self.bins, self.margin, self.veto, hidden, quants=quants,
                                                 apply_to=[j for j, i in enumerate(usable) if i in wanted])
                for i, soft in zip(usable, recovered):
                    softs[i] = soft
            ks = [k for k in compared if softs[idx[k]] is not None]
            covers = (ks, np.dstack([layer for k in ks for layer in (
                covered[k].view(np.uint8), cv2.warpAffine((softs[idx[k]] >= 0.5).view(np.uint8), place[idx[k]],
                                                          (cw, ch), flags=cv2.INTER_NEAREST))]) if ks else None)
            for i in sorted(wanted):
                if softs[i] is not None:
                    softs[i], statics[i] = without_static(i, softs, distance[i], covers, last)
            if last:
                break
            masks = {i: cv2.dilate(clean_mask(softs[i] >= 0.5, self.open_px, self.max_hole).astype(np.uint8),
                                   grow).astype(bool) for i in idx}
            mosaic, unseen = median(masks)
            mosaic_rgba = rgba(mosaic)
        return softs, lambda i: rgb(view(mosaic_rgba, i)), statics


def _quantise(img: np.ndarray, bins: int) -> np.ndarray:
    """Each pixel's colour bin, bins ** 3 of them (`bins` a channel), as int32."""
    import cv2
    level = ((np.arange(256) * bins) // 256).astype(np.uint8)
    r, g, b = cv2.split(cv2.LUT(img, level))
    return (r.astype(np.int32) * bins + g) * bins + b


def _histogram(img: np.ndarray, mask: np.ndarray, bins: int) -> np.ndarray:
    """Counts of `img`'s pixels under `mask` in each colour bin (`_quantise`'s numbering), float64."""
    import cv2
    return cv2.calcHist([img], [0, 1, 2], mask.view(np.uint8), [bins] * 3, [0, 256] * 3).ravel().astype(np.float64)


def _boxes(mask: np.ndarray, min_area: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the 8-connected components of bool `mask` of at least `min_area` pixels
    (searched within the mask's bounding box only)."""
    import cv2
    m = mask.view(np.uint8)
    bx, by, bw, bh = cv2.boundingRect(m)
    if bw == 0:
        return []
    _, _, stats, _ = cv2.connectedComponentsWithStats(m[by:by + bh, bx:bx + bw], connectivity=8)
    return [(int(x) + bx, int(y) + by, int(w), int(h)) for x, y, w, h, area in stats[1:] if area >= min_area]


def colour_model_recover(images: list[np.ndarray], softs: list[np.ndarray], bins: int = 16,
                         margin: float = 0.06, veto: float = 0.3,
                         hidden: list[np.ndarray | None] | None = None, quants: dict[int, np.ndarray] | None = None,
                         apply_to: list[int] | None = None) -> list[np.ndarray]:
    """Recover character parts that never moved off their pixels (so the temporal median kept them
    in the background): learn the scene's foreground and background colour histograms from
    confident pixels, then, near detected characters only, call a pixel foreground when its colour
    is more likely under the foreground histogram. `hidden`: per image, where the background was
    never seen (None: nowhere). `quants`: the images' colour bins (`_quantise`) by position in
    `images`, as far as known (filled with those computed here); `apply_to`: the images whose
    scores are wanted (all when None; the others' come back unchanged)."""
    import cv2
    n_bins = bins ** 3
    hf = np.zeros(n_bins, np.float64)
    hb = np.zeros(n_bins, np.float64)
    rois = []
    quants = {} if quants is None else quants
    hidden = hidden or [None] * len(softs)
    opening = np.ones((3, 3), np.uint8)
    for img, soft, hid in zip(images, softs, hidden):
        sure_fg = soft >= 0.9
        if hid is not None:
            sure_fg &= ~hid
        sure_fg = cv2.morphologyEx(sure_fg.view(np.uint8), cv2.MORPH_OPEN, opening).view(bool)
        # the region of interest: the boxes of the sure foreground's parts, grown by `margin`
        pad = max(2, int(round(margin * soft.shape[0])))
        roi = [np.s_[max(0, y - pad):y + bh + pad, max(0, x - pad):x + bw + pad] for x, y, bw, bh in _boxes(sure_fg, 9)]
        rois.append(roi)
        x, y, bw, bh = cv2.boundingRect(sure_fg.view(np.uint8))
        if bw:
            hf += _histogram(img[y:y + bh, x:x + bw], sure_fg[y:y + bh, x:x + bw], bins)
        sure_bg = soft <= 0.1
        for box in roi:
            sure_bg[box] = False
        hb += _histogram(img, sure_bg, bins)
    if hf.sum() == 0:
        return softs
    pf = (hf + 0.5) / (hf.sum() + 0.5 * n_bins)
    pb = (hb + 0.5) / (hb.sum() + 0.5 * n_bins)
    ratio = (pf / (pf + pb)).astype(np.float32)
    out = []
    wanted = set(range(len(softs)) if apply_to is None else apply_to)
    for j, (img, soft, boxes, hid) in enumerate(zip(images, softs, rois, hidden)):
        if j not in wanted:
            out.append(soft)
            continue
        if j not in quants:
            quants[j] = _quantise(img, bins)
        colour_fg = ratio[quants[j]]
        # where no frame ever showed the background, the mosaic is only an inpainted guess: the
        # colour model alone decides there
        if hid is not None:
            soft = np.where(hid, colour_fg, soft)
        # near characters the colour decides: it adds never-moved parts (the median kept them) and
        # removes ghosts (where the median kept a character that has since moved on)
        roi = np.zeros(soft.shape, bool)
        for box in boxes:
            roi[box] = True
        add = roi & (soft < 0.5)
        vetoed = (soft >= 0.5) & (colour_fg < veto)
        soft = np.where(add, np.maximum(soft, colour_fg), soft)
        out.append(np.where(vetoed, np.minimum(soft, colour_fg), soft).astype(np.float32))
    return out


def border_model_foreground(img: np.ndarray, margin: int = 4, iterations: int = 4, max_width: int = 960) -> np.ndarray:
    """Single-frame fallback: GrabCut with the frame border as sure background (run at most
    `max_width` pixels wide, the mask scaled back up)."""
    import cv2
    h, w = img.shape[:2]
    scale = min(1.0, max_width / w)
    small = cv2.resize(img, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else img
    sh, sw = small.shape[:2]
    mask = np.full((sh, sw), cv2.GC_PR_FGD, np.uint8)
    mask[:margin], mask[-margin:], mask[:, :margin], mask[:, -margin:] = (cv2.GC_BGD,) * 4
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    try:
        cv2.setRNGSeed(0)               # GrabCut's GMM initialisation draws from OpenCV's RNG
        cv2.grabCut(bgr, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return np.zeros((h, w), np.float32)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.where(fg > 0, 0.75, 0.25).astype(np.float32)
