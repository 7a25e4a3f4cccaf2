"""Fast lossless PNG encoding for extracted frames: numpy "Up" filter + ISA-L deflate.

libpng/zlib (what OpenCV and Pillow use) spend ~15 ms deflating one 720p frame even at level 1;
ISA-L's deflate (the `isal` package) does it in ~3 ms, and the Up filter (each row minus the row
above, one numpy subtraction) makes the result ~10 % smaller than OpenCV's level-1 SUB output.
The file is a standard 8-bit PNG (IHDR, one IDAT, IEND) that every decoder reads; only the
compressor differs. Both the subtraction and the deflate release the GIL.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}       # channels -> PNG colour type (grey, RGB, RGBA)
FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an 8-bit image: H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA)."""
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in _COLOR_TYPE:
        raise ValueError(f"encode_png needs 1, 3 or 4 channels, got {channels}")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = FILTER_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])      # wraps modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", isal_zlib.compress(filtered, level))
            + _chunk(b"IEND", b""))
