"""Writing extracted frames as image files: quality -> format, resize, atomic write, off-thread.

quality: `high` = PNG, lossless (`png.encode_png`: Up filter + ISA-L deflate, ~4 ms for a 720p
frame where OpenCV's fastest PNG setting takes ~15 ms, and ~10 % smaller); `medium` = JPEG
quality 90; `low` = JPEG quality 70. Encoding runs in one background thread (both encoders release
the GIL), at most `max_pending` frames queued, so memory stays bounded.
"""
from __future__ import annotations

import collections
import concurrent.futures
from pathlib import Path

import cv2

from ... import atomic
from .png import encode_png

# quality -> (extension, OpenCV encoder parameters, description); no parameters: `encode_png`
QUALITY = {
    "high": (".png", None, "PNG, lossless"),
    "medium": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90], "JPEG, quality 90"),
    "low": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 70], "JPEG, quality 70"),
}


def target_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(w, h) with the longest side at most `max_size`, aspect kept, even-rounded down to >= 2."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(2, int(round(width * scale))), max(2, int(round(height * scale)))


class ImageWriter:
    def __init__(self, quality: str, max_size: int | None = None, *, max_pending: int = 4):
        self.ext, self.params, self.description = QUALITY[quality]
        self.max_size = max_size
        self.max_pending = max_pending
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-writer")
        self._pending: collections.deque = collections.deque()

    def _write(self, frame, dest: Path) -> None:
        w, h = target_size(frame.width, frame.height, self.max_size)
        pixels = "rgb24" if self.params is None else "bgr24"
        if (w, h) != (frame.width, frame.height):
            image = frame.reformat(width=w, height=h, format=pixels, interpolation="AREA").to_ndarray()
        else:
            image = frame.to_ndarray(format=pixels)
        if self.params is None:
            atomic.write_bytes(dest, encode_png(image), fsync=False)
            return
        with atomic.atomic_path(dest, fsync=False) as tmp:
            if not cv2.imwrite(str(tmp), image, self.params):
                raise OSError(f"OpenCV could not encode {dest.name}")

    def submit(self, frame, dest: Path) -> None:
        """Queue one frame (an av.VideoFrame) for writing to `dest`; blocks if too many are queued."""
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, frame, Path(dest)))

    def close(self) -> None:
        """Wait for every queued write; re-raises the first failure."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
