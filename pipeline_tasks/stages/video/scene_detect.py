"""PySceneDetect's detectors, fed one downscaled frame at a time (no VideoManager, no second decode).

`scene_threshold` is one scale for all detectors: 0..1, higher = fewer cuts, and **0.3 is each
detector's PySceneDetect default** (content 27, adaptive 3.0, hash 0.35, histogram 0.20); the value
is scaled linearly onto the detector's own threshold (table in docs/stages-video.md).
"""
from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, HashDetector, HistogramDetector

DETECTORS = ("adaptive", "content", "hash", "histogram")

# native threshold = scene_threshold * factor  (0.3 -> PySceneDetect default)
THRESHOLD_SCALE = {"content": 90.0, "adaptive": 10.0, "hash": 0.35 / 0.3, "histogram": 0.20 / 0.3}


def native_threshold(detector: str, scene_threshold: float) -> float:
    return float(scene_threshold) * THRESHOLD_SCALE[detector]


class _L1FrameScore:
    """ContentDetector's frame score with the mean absolute HSV differences taken by OpenCV's
    SIMD L1 norm instead of numpy's cast / subtract / abs / sum: the same number (the integer sum
    over the pixels, divided by their count), at half the detector's cost per frame
    (tests/test_frame_extraction.py compares the two on real video). Edge and stats modes keep
    PySceneDetect's own code."""

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img: np.ndarray) -> float:
        if self._weights.delta_edges > 0.0 or self.stats_manager is not None:
            return super()._calculate_frame_score(timecode, frame_img)
        hue, sat, lum = cv2.split(cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV))
        last = self._last_frame
        self._last_frame = ContentDetector._FrameData(hue, sat, lum, None)
        if last is None:
            return 0.0
        pixels = float(hue.size)
        deltas = (cv2.norm(hue, last.hue, cv2.NORM_L1) / pixels, cv2.norm(sat, last.sat, cv2.NORM_L1) / pixels,
                  cv2.norm(lum, last.lum, cv2.NORM_L1) / pixels, 0.0)
        weights = self._weights
        return sum(d * w for d, w in zip(deltas, weights, strict=True)) / sum(abs(w) for w in weights)


class FastContentDetector(_L1FrameScore, ContentDetector):
    pass


class FastAdaptiveDetector(_L1FrameScore, AdaptiveDetector):
    pass


def make_detector(detector: str, scene_threshold: float, min_scene_len: int):
    value = native_threshold(detector, scene_threshold)
    if detector == "adaptive":
        return FastAdaptiveDetector(adaptive_threshold=value, min_scene_len=min_scene_len)
    if detector == "content":
        return FastContentDetector(threshold=value, min_scene_len=min_scene_len)
    if detector == "hash":
        return HashDetector(threshold=value, min_scene_len=min_scene_len)
    if detector == "histogram":
        return HistogramDetector(threshold=value, min_scene_len=min_scene_len)
    raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")


class CutDetector:
    """Wraps one PySceneDetect detector: `push(index, bgr)` returns the cut frames it found."""

    def __init__(self, detector: str, scene_threshold: float, min_scene_len: int, fps: Fraction):
        self.detector = make_detector(detector, scene_threshold, min_scene_len)
        self.fps = Fraction(fps)
        self._last: FrameTimecode | None = None
        self.cuts: list[int] = []

    @property
    def lag(self) -> int:
        """How many frames after a cut the detector may report it."""
        return int(self.detector.event_buffer_length)

    def push(self, index: int, bgr: np.ndarray) -> list[int]:
        tc = FrameTimecode(index, fps=self.fps)
        self._last = tc
        found = [int(c.frame_num) for c in self.detector.process_frame(tc, bgr)]
        found = [c for c in found if c > 0]
        self.cuts.extend(found)
        return found

    def finish(self) -> list[int]:
        if self._last is None:
            return []
        found = [int(c.frame_num) for c in self.detector.post_process(self._last)]
        found = [c for c in found if c > 0]
        self.cuts.extend(found)
        return found
