"""Perceptual difference hash (dHash, 64 bits) and a near-duplicate filter on it.

The one dHash of the project: frame_extraction drops near-duplicate frames with it and
training_data_prep near-duplicate crops (`dataset.dedup` composites a crop on grey first).
"""
from __future__ import annotations

import cv2
import numpy as np


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash of a 2-D grayscale uint8 image: the image is reduced to 9x8 by area
    averaging (every pixel counts, so the hash is stable under scaling and noise), and bit k
    (most significant first, row by row) says whether a pixel is brighter than its left neighbour."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = small[:, 1:] > small[:, :-1]
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class DuplicateFilter:
    """Remembers the hashes of kept frames; a new frame within `threshold` bits of one is a duplicate.

    threshold < 0 disables the filter. Memory: 8 bytes per kept frame; one vectorised compare per
    frame.
    """

    def __init__(self, threshold: int):
        self.threshold = threshold
        self._hashes = np.zeros(64, dtype=np.uint64)
        self._n = 0

    def check_and_add(self, h: int) -> bool:
        """True if `h` is a near-duplicate of a kept frame; otherwise remember it and return False."""
        value = np.uint64(h)
        if self.threshold >= 0 and self._n:
            dist = np.bitwise_count(np.bitwise_xor(self._hashes[:self._n], value))
            if int(dist.min()) <= self.threshold:
                return True
        if self._n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[self._n] = value
        self._n += 1
        return False
