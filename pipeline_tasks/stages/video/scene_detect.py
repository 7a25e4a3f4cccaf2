"""PySceneDetect's detectors, fed one downscaled frame at a time (no VideoManager, no second decode).

`scene_threshold` is one scale for all detectors: 0..1, higher = fewer cuts, and **0.3 is each
detector's PySceneDetect default** (content 27, adaptive 3.0, hash 0.35, histogram 0.20); the value
is scaled linearly onto the detector's own threshold (table in docs/stages-video.md).
"""
from __future__ import annotations

from collections import deque
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

    frame_score: float | None = None        # the latest frame's score, for the score curve

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img: np.ndarray) -> float:
        self.frame_score = score = self._score(timecode, frame_img)
        return score

    def _score(self, timecode: FrameTimecode, frame_img: np.ndarray) -> float:
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


class _MetricRecorder:
    """Takes the one metric the hash and histogram detectors report per frame (the stats-manager
    call they make), for the score curve."""

    def __init__(self):
        self.value: float | None = None

    def set_metrics(self, timecode, metrics: dict) -> None:
        self.value = next(iter(metrics.values()), None)


def content_distance(a: np.ndarray, b: np.ndarray) -> float:
    """ContentDetector's measure between two BGR images: the mean absolute difference of hue,
    saturation and value, averaged over the three (0..255)."""
    ha, hb = cv2.cvtColor(a, cv2.COLOR_BGR2HSV), cv2.cvtColor(b, cv2.COLOR_BGR2HSV)
    return cv2.norm(ha, hb, cv2.NORM_L1) / (3.0 * ha.shape[0] * ha.shape[1])


class CutDetector:
    """Wraps one PySceneDetect detector: `push(index, bgr)` returns the cut frames it found, and
    `scores` keeps each frame's score, higher where frames differ more: the content score (HSV
    difference to the previous frame, which the adaptive detector divides by its neighbours' mean),
    the hash distance, or 1 - the histograms' correlation. `threshold` is the score from which the
    detector cuts (None for adaptive, whose threshold applies to that ratio).

    Flashes are not cuts. A frame that jumps away from the last frame shown to the detector (by at
    least `flash_jump` in `content_distance`) starts a flash when, within `flash_frames` frames,
    the picture comes back: a later frame is closer to the last one shown than `flash_ratio` times
    the jump. The flash frames then reach the detector as copies of the frame before them, so a
    two-frame white flash (lightning, an impact, a muzzle flash) inside a shot makes no cut and does
    not hold off a real cut that follows within `min_scene_len`. Frames reach the detector
    `flash_frames` frames late; `flashes` lists the first frame of each flash found.
    """

    def __init__(self, detector: str, scene_threshold: float, min_scene_len: int, fps: Fraction,
                 flash_frames: int = 3, flash_ratio: float = 0.35, flash_jump: float = 8.0):
        self.detector = make_detector(detector, scene_threshold, min_scene_len)
        self.threshold = None if detector == "adaptive" else native_threshold(detector, scene_threshold)
        self._inverted = detector == "histogram"        # a correlation: cut at or below it; kept as 1 - it
        if self._inverted:
            self.threshold = 1.0 - self.threshold
        self._recorder = None
        if detector in ("hash", "histogram"):
            self._recorder = self.detector.stats_manager = _MetricRecorder()
        self.fps = Fraction(fps)
        self.flash_frames = flash_frames
        self.flash_ratio = flash_ratio
        self.flash_jump = flash_jump
        self._last: FrameTimecode | None = None
        self._queue: deque[tuple[int, np.ndarray]] = deque()
        self._shown: np.ndarray | None = None     # the last image the detector saw
        self._hold = 0                             # frames still to replace by `_shown`
        self.cuts: list[int] = []
        self.scores: list[tuple[int, float]] = []
        self.flashes: list[int] = []

    @property
    def lag(self) -> int:
        """How many frames after a cut the detector may report it."""
        return int(self.detector.event_buffer_length) + self.flash_frames

    def push(self, index: int, bgr: np.ndarray) -> list[int]:
        self._queue.append((index, bgr))
        found: list[int] = []
        while len(self._queue) > self.flash_frames:
            found += self._feed()
        return found

    def finish(self) -> list[int]:
        found: list[int] = []
        while self._queue:
            found += self._feed()
        if self._last is not None:
            found += self._keep([int(c.frame_num) for c in self.detector.post_process(self._last)])
        return found

    def _feed(self) -> list[int]:
        index, bgr = self._queue.popleft()
        if self._hold:
            self._hold -= 1
            bgr = self._shown
        elif self._shown is not None and self.flash_frames:
            jump = content_distance(self._shown, bgr)
            if jump >= self.flash_jump:
                for k, (_, later) in enumerate(list(self._queue)[:self.flash_frames]):
                    if content_distance(self._shown, later) < self.flash_ratio * jump:
                        self.flashes.append(index)
                        self._hold = k + 1
                        bgr = self._shown
                        break
        self._shown = bgr
        tc = FrameTimecode(index, fps=self.fps)
        self._last = tc
        if self._recorder is not None:
            self._recorder.value = None
        found = [int(c.frame_num) for c in self.detector.process_frame(tc, bgr)]
        if self._recorder is not None:      # no value for the first frame: nothing to differ from (0, as content says)
            score = self._recorder.value
            score = 0.0 if score is None else (1.0 - score if self._inverted else score)
        else:
            score = getattr(self.detector, "frame_score", None)
        if score is not None:
            self.scores.append((index, float(score)))
        return self._keep(found)

    def _keep(self, found: list[int]) -> list[int]:
        found = [c for c in found if c > 0]
        self.cuts.extend(found)
        return found
