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
    # a list of pixels (N, P, 1, 3), as the re-estimation passes the pixels it recomputes
    ys, xs = np.nonzero(rng.random((23, 37)) < 0.3)
    points = _nanmedian_strips(stack[:, ys, xs][:, :, None], valid[:, ys, xs][:, :, None])
    assert np.array_equal(points[:, 0], want[ys, xs])
