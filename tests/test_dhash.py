"""The one dHash (stages/video/phash.py), shared by frame_extraction (near-duplicate frames) and
training_data_prep (near-duplicate crops): its bit layout, its stability, and the filter both use."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from pipeline_tasks.stages.dataset import dedup
from pipeline_tasks.stages.video.phash import DuplicateFilter, dhash, hamming

ROOT = Path(__file__).resolve().parent.parent


def test_bits_are_horizontal_gradients_most_significant_first():
    ramp = np.tile(np.arange(0, 180, 20, dtype=np.uint8), (8, 1))          # 9x8, brighter to the right
    assert dhash(ramp) == 2**64 - 1
    assert dhash(ramp[:, ::-1].copy()) == 0
    flat = np.full((8, 9), 100, np.uint8)
    flat[0, 1] = 101                       # only the first pair of the first row gets brighter ...
    flat[0, 2:] = 101
    assert dhash(flat) == 1 << 63          # ... which is the top bit
    flat[7, 8] = 102                       # the last pair of the last row: the lowest bit
    assert dhash(flat) == (1 << 63) | 1


def test_area_reduction_makes_the_hash_stable_under_scale_and_noise():
    import cv2
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (360, 640), dtype=np.uint8), (0, 0), 25)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX)
    h = dhash(scene)
    assert hamming(h, dhash(cv2.resize(scene, (256, 144), interpolation=cv2.INTER_AREA))) <= 2
    noisy = np.clip(scene.astype(int) + rng.integers(-20, 21, scene.shape), 0, 255).astype(np.uint8)
    assert hamming(h, dhash(noisy)) <= 2
    assert hamming(h, dhash(255 - scene)) >= 56                      # the negative: nearly every bit flips


def test_crops_and_frames_share_the_hash():
    import cv2
    rng = np.random.default_rng(2)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8), (0, 0), 6)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert dedup.crop_hash(opaque) == dhash(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    # transparent parts count as mid-grey: the silhouette is part of the hash
    cut_out = opaque.copy()
    cut_out[:, :30, 3] = 0
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    grey[:, :30] = 128
    assert dedup.crop_hash(cut_out) == dhash(grey)


@pytest.mark.parametrize("threshold", [-1, 0, 3, 10])
def test_the_crop_walk_and_the_frame_filter_agree(threshold):
    rng = np.random.default_rng(threshold + 5)
    base = [int(x) for x in rng.integers(0, 2**63, 20, dtype=np.int64)]
    hashes = base + [h ^ (1 << int(b)) ^ (1 << int(c)) for h, b, c in zip(base, rng.integers(0, 64, 20),
                                                                       rng.integers(0, 64, 20))]
    kept, dropped = dedup.drop_near_duplicates(hashes, threshold, key=lambda h: h)
    expected = []
    for h in hashes:                             # by hand: keep unless close to one kept already
        if threshold < 0 or all(hamming(h, k) > threshold for k in expected):
            expected.append(h)
    assert kept == expected and len(kept) + len(dropped) == len(hashes)
    frames = DuplicateFilter(threshold)
    assert [h for h in hashes if not frames.check_and_add(h)] == expected


def test_numpy_floor_allows_bitwise_count():
    """DuplicateFilter counts bits with np.bitwise_count, new in NumPy 2.0: every extra that
    installs numpy must ask for at least that."""
    assert hasattr(np, "bitwise_count")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = {name: re.fullmatch(r"numpy\s*>=\s*(\d+)(?:\.(\d+))?.*", req) for name, reqs in extras.items()
              for req in reqs if req.startswith("numpy")}
    assert floors and all(m and (int(m[1]), int(m[2] or 0)) >= (2, 0) for m in floors.values()), floors
