"""Chunk plans for long audio: deterministic cut points placed in the quietest spot near each
nominal boundary, so words are rarely cut and a rerun produces the same chunks (item-level resume).
"""
from __future__ import annotations

import hashlib

import numpy as np


def _quietest(samples: np.ndarray, lo: int, hi: int, frame: int) -> int:
    """Sample index of the start of the lowest-energy frame in [lo, hi)."""
    if hi - lo < 2 * frame:
        return (lo + hi) // 2
    n = (hi - lo) // frame
    frames = samples[lo:lo + n * frame].reshape(n, frame)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    return lo + int(np.argmin(energy)) * frame + frame // 2


def plan_chunks(samples: np.ndarray, sample_rate: int, chunk_seconds: float, search_seconds: float = 2.0,
                speech: list[tuple[float, float]] | None = None) -> list[tuple[int, int]]:
    """[(first_sample, end_sample)] covering the signal; each chunk at most chunk_seconds + search.

    With `speech` spans (from VAD), cuts prefer the middle of a silence between spans.
    """
    total = len(samples)
    size = int(chunk_seconds * sample_rate)
    search = int(search_seconds * sample_rate)
    frame = int(0.02 * sample_rate)
    cuts = [0]
    while total - cuts[-1] > size + search:
        nominal = cuts[-1] + size
        lo, hi = nominal - search, nominal + search
        cut = None
        if speech:
            gaps = [((a_end + b_start) / 2) for (_, a_end), (b_start, _) in zip(speech, speech[1:])]
            inside = [int(g * sample_rate) for g in gaps if lo <= g * sample_rate < hi]
            if inside:
                cut = min(inside, key=lambda c: abs(c - nominal))
        if cut is None:
            cut = _quietest(samples, lo, hi, frame)
        cuts.append(cut)
    cuts.append(total)
    return list(zip(cuts[:-1], cuts[1:]))


def chunk_key(samples: np.ndarray, fingerprint: str) -> str:
    """Identity of one chunk's result: its samples and everything in the config that changes the output."""
    h = hashlib.sha256(fingerprint.encode())
    h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return h.hexdigest()[:32]
