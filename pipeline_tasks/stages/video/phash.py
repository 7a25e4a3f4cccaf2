"""Perceptual difference hash (dHash, 64 bits) and a near-duplicate filter on it."""
from __future__ import annotations

import cv2
import numpy as np


def dhash(gray: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of a grayscale image: sign of horizontal gradients on a 9x8 thumbnail."""
    small = cv2.resize(gray, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0]) if size == 8 else int("".join("1" if b else "0" for b in bits), 2)


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
