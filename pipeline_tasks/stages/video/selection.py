"""Choosing representative frames of a scene while it streams past, in bounded memory.

`SceneSampler` keeps, for the current scene, the sharpest frame of each of at most `max_buckets`
equal spans (when the scene outgrows them, adjacent spans merge pairwise). At the scene's end it
picks `n` frames from the middle part of the scene (by default 20 %..80 % of its length), the
sharpest candidate of each of `n` equal sub-ranges, so a frame is never the first one after a cut or
inside a fade. Memory: at most `max_buckets` frames, whatever the scene length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (higher = sharper / more detail)."""
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


@dataclass(eq=False)
class Candidate:
    index: int
    score: float
    frame: Any                    # the decoded frame (kept by reference, converted only if chosen)
    small: np.ndarray | None = None


class SceneSampler:
    def __init__(self, start: int, *, n: int = 1, middle: tuple[float, float] = (0.2, 0.8), max_buckets: int = 16):
        self.start = start
        self.n = n
        self.middle = middle
        self.max_buckets = max(2, max_buckets)
        self.bucket_size = 1
        self.buckets: dict[int, Candidate] = {}

    def add(self, cand: Candidate) -> None:
        offset = cand.index - self.start
        if offset < 0:
            return
        while offset // self.bucket_size >= self.max_buckets:
            self.bucket_size *= 2
            merged: dict[int, Candidate] = {}
            for key, c in self.buckets.items():
                k = key // 2
                if k not in merged or c.score > merged[k].score:
                    merged[k] = c
            self.buckets = merged
        key = offset // self.bucket_size
        best = self.buckets.get(key)
        if best is None or cand.score > best.score:
            self.buckets[key] = cand

    def finish(self, end: int) -> list[Candidate]:
        """The chosen candidates for the scene [start, end), ascending by frame index."""
        cands = sorted((c for c in self.buckets.values() if c.index < end), key=lambda c: c.index)
        self.buckets = {}
        if not cands:
            return []
        length = end - self.start
        lo = self.start + self.middle[0] * length
        hi = self.start + self.middle[1] * length
        inside = [c for c in cands if lo <= c.index <= hi]
        chosen: list[Candidate] = []
        n = max(1, self.n)
        for k in range(n):
            a = lo + (hi - lo) * k / n
            b = lo + (hi - lo) * (k + 1) / n
            part = [c for c in inside if a <= c.index <= b and c not in chosen]
            if part:
                chosen.append(max(part, key=lambda c: (c.score, -c.index)))
        if not chosen:   # very short scene: the candidate nearest the middle
            mid = self.start + length / 2
            chosen.append(min(cands, key=lambda c: (abs(c.index - mid), c.index)))
        return sorted(chosen, key=lambda c: c.index)
