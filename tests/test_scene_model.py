"""The building blocks of the weight-free backend's per-scene model, against plain reference
computations on generated arrays."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline_tasks.stages.characters.background_model import _nanmedian_strips


def reference_masked_median(stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixel by pixel: the sorted valid values' middle (the middle two's mean rounded up), all the
    values where none is valid."""
    n, h, w, c = stack.shape
    out = np.zeros((h, w, c), np.uint8)
    for y in range(h):
        for x in range(w):
            keep = valid[:, y, x] if valid[:, y, x].any() else np.ones(n, bool)
            for ch in range(c):
                v = np.sort(stack[keep, y, x, ch].astype(int))
                out[y, x, ch] = (v[(len(v) - 1) // 2] + v[len(v) // 2] + 1) // 2
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 16])
def test_masked_median_is_the_middle_of_the_valid_values(n):
    rng = np.random.default_rng(n)
    stack = rng.integers(0, 256, (n, 23, 37, 3), dtype=np.uint8)
    stack[:, 3:6] = 255                            # valid values as large as the invalid ones' stand-in
    stack[:, 6:8] = rng.choice([0, 255], (n, 2, 37, 3)).astype(np.uint8)
    valid = rng.random((n, 23, 37)) < 0.6
    valid[:, :4, :5] = False                       # pixels no frame shows
    valid[:, 10] = True
    want = reference_masked_median(stack, valid)
    assert np.array_equal(_nanmedian_strips(stack, valid), want)
    assert np.array_equal(_nanmedian_strips(stack, valid, budget=37 * 3 * 2), want)      # strips of 2 rows
    # a list of pixels (N, P, 1, 3): strips one pixel wide
    ys, xs = np.nonzero(rng.random((23, 37)) < 0.3)
    points = _nanmedian_strips(stack[:, ys, xs][:, :, None], valid[:, ys, xs][:, :, None])
    assert np.array_equal(points[:, 0], want[ys, xs])


def blobs(rng, h: int, w: int, count: int) -> np.ndarray:
    """A bool mask of random filled ellipses and rings (holes of all sizes), some at the border."""
    import cv2
    m = np.zeros((h, w), np.uint8)
    for _ in range(count):
        centre = (int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5)))
        axes = (int(rng.integers(2, w // 4)), int(rng.integers(2, h // 4)))
        thickness = int(rng.choice([-1, 1, 2, 3]))
        cv2.ellipse(m, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, thickness)
    return m.astype(bool)


def reference_holes_filled(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """Over the whole frame: background components (4-connected) not touching the frame's border,
    of at most `max_hole` pixels, become mask."""
    import cv2
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    for r in range(1, n):
        x, y, bw, bh, area = stats[r]
        if x > 0 and y > 0 and x + bw < w and y + bh < h and area <= max_hole:
            out[labels == r] = True
    return out


@pytest.mark.parametrize("seed", range(6))
def test_holes_filled_are_the_whole_frames_holes(seed):
    import cv2

    from pipeline_tasks.stages.characters.background_model import clean_mask
    rng = np.random.default_rng(seed)
    mask = blobs(rng, 90, 160, 12)
    for max_hole in (5, 60, 400):
        assert np.array_equal(clean_mask(mask, 0, max_hole), reference_holes_filled(mask, max_hole))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        opened = cv2.morphologyEx(cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
        assert np.array_equal(clean_mask(mask, 1, max_hole), reference_holes_filled(opened.astype(bool), max_hole))
    assert not clean_mask(np.zeros((20, 30), bool), 1, 400).any()
    assert clean_mask(np.ones((20, 30), bool), 1, 400).all()


@pytest.mark.parametrize("bins", [16, 12, 7])
def test_colour_histograms_count_each_colour_bin(bins):
    from pipeline_tasks.stages.characters.background_model import _histogram, _quantise
    rng = np.random.default_rng(bins)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    img[:5] = 255
    img[5:10] = 0
    mask = rng.random((40, 50)) < 0.5
    q = _quantise(img, bins)
    level = img.astype(int) * bins // 256
    assert np.array_equal(q, (level[..., 0] * bins + level[..., 1]) * bins + level[..., 2])
    assert np.array_equal(_histogram(img, mask, bins), np.bincount(q[mask], minlength=bins ** 3))


def test_component_boxes_are_the_whole_frames_components():
    import cv2

    from pipeline_tasks.stages.characters.background_model import _boxes
    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = blobs(rng, 80, 120, 8) & (rng.random((80, 120)) < 0.9)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        want = sorted(tuple(int(v) for v in s[:4]) for s in stats[1:] if s[4] >= 9)
        assert sorted(_boxes(mask, 9)) == want
    assert _boxes(np.zeros((10, 10), bool), 9) == []


def test_static_persistence_counts_the_frames_whose_patch_matches():
    """Against the definition in 16-bit arithmetic: a pixel's 5x5 patch matches another frame's
    view when every pixel of it lies (channel by channel, summed) within PATCH_TOLERANCE of the
    range of the view's 3x3 neighbourhood."""
    import cv2

    from pipeline_tasks.stages.characters.static_regions import PATCH_TOLERANCE, UNCOVERED_CHANGE, static_persistence
    rng = np.random.default_rng(3)
    img = (rng.integers(0, 6, (30, 40, 3)) * 50).astype(np.uint8)
    others = []
    for k in range(6):
        view = img.copy()
        view[rng.random((30, 40)) < 0.05] = rng.integers(0, 256, 3)
        if k % 2:
            view = np.roll(view, 1, axis=1)
        others.append((view, rng.random((30, 40)) < 0.9, blobs(rng, 30, 40, 2)))
    k3, k5 = np.ones((3, 3), np.uint8), np.ones((5, 5), np.uint8)
    a = img.astype(np.int16)
    same, changed, count = (np.zeros((30, 40)) for _ in range(3))
    for view, covered, character in others:
        v = view.astype(np.int16)
        off = (np.maximum(0, a - cv2.dilate(v, k3)) + np.maximum(0, cv2.erode(v, k3) - a)).sum(axis=-1)
        match = cv2.dilate(off.astype(np.float32), k5) < PATCH_TOLERANCE
        seen = cv2.erode(covered.astype(np.uint8), k5) > 0
        same += match & seen
        changed += ~match & seen & ~(cv2.dilate(character.astype(np.uint8), k5) > 0)
        count += seen
    count = np.maximum(count, 1)
    want = np.where(changed <= UNCOVERED_CHANGE * count, same / count, 0.0)
    got = static_persistence(img, others)
    assert got.dtype == np.float32 and 0 < (got > 0).mean() < 1
    assert np.array_equal(got, want.astype(np.float32))


def test_whole_pixel_shifts_cost_what_the_resampled_warp_costs():
    import cv2

    from pipeline_tasks.stages.characters.registration import TRUNCATE, warp_cost
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (54, 96)).astype(np.float32)
    cur = np.roll(ref, (3, -7), axis=(0, 1)) + rng.integers(-30, 30, (54, 96)).astype(np.float32)
    for dx, dy in [(0, 0), (7, -3), (-7, 3), (20, 5), (-60, 0), (0, -40), (95, 0)]:
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        warped = cv2.warpAffine(ref, m, (96, 54), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
        valid = (warped >= 0).astype(np.uint8)
        want = float("inf") if valid.sum() < 54 * 96 // 3 else \
            cv2.mean(cv2.min(cv2.absdiff(warped, cur), TRUNCATE), mask=valid)[0]
        assert warp_cost(ref, cur, m) == want, (dx, dy)


def test_inpainting_over_the_masks_box_is_the_whole_frames():
    import cv2

    from pipeline_tasks.stages.characters.background_model import _inpaint
    rng = np.random.default_rng(7)
    for _ in range(20):
        img = cv2.GaussianBlur(rng.integers(0, 256, (70, 110, 3), dtype=np.uint8), (7, 7), 0)
        mask = blobs(rng, 70, 110, int(rng.integers(1, 4)))
        if mask.any():
            assert np.array_equal(_inpaint(img, mask, 5), cv2.inpaint(img, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA))


def test_foreground_scores_are_the_logistic_of_the_colour_distance():
    """The scores equal those of the float32 OpenCV chain (distance, logistic) pixel for pixel, and
    the logistic in float64 to float32 precision."""
    import cv2

    from pipeline_tasks.stages.characters.background_model import soft_foreground
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    bg = np.clip(img.astype(int) + rng.integers(-60, 60, (60, 90, 3)), 0, 255).astype(np.uint8)
    bg[:10] = 255 - img[:10]
    bg[10:20] = img[10:20]
    for threshold, softness in [(50.0, 4.0), (30.0, 0.5), (80.0, 12.0)]:
        diff = cv2.subtract(img, bg, dtype=cv2.CV_32F)
        dist = cv2.sqrt(cv2.transform(cv2.multiply(diff, diff), np.ones((1, 3), np.float32)))
        z = cv2.exp((threshold - dist) * np.float32(1.0 / softness))
        want = (1.0 / (1.0 + z)).astype(np.float32)
        got = soft_foreground(img, bg, threshold, softness)
        assert got.dtype == np.float32 and np.array_equal(got, want)
        exact = 1 / (1 + np.exp((threshold - np.sqrt(((img.astype(float) - bg) ** 2).sum(-1))) / softness))
        assert np.abs(got - exact).max() < 1e-6
        assert soft_foreground(img[:1, :1], bg[:1, :1], threshold, softness)[0, 0] == got[0, 0]
