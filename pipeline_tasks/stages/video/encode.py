"""Streaming H.264/MP4 writer on PyAV: one frame in, packets out, nothing buffered in Python."""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np


class H264Writer:
    """Encode RGB frames to H.264 (yuv420p) in MP4, frame by frame.

    The MP4 is written with ``movflags=faststart`` (index first), so a truncated file still opens and
    decodes up to the cut. libx264 runs with a fixed thread count, so the same frames give the same
    bytes (see the known issue below).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction, *, crf: int = 20,
                 preset: str = "veryfast", keyframe_interval: int = 60):
        self.container = av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"})
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1) / fps
        # a fixed x264 thread count: its output depends on the count, and "auto" would tie the
        # bytes to the machine's cores. Known issue: in a process that has already done other
        # decoding work, x264 occasionally (about 1 process in 15 in the test suite, also with one
        # thread) emits different bytes for the same frames; cause not found. Fresh processes
        # were identical in every probe. See docs/stages-video.md.
        self.stream.options = {"crf": str(crf), "preset": preset, "g": str(keyframe_interval),
                               "keyint_min": str(min(keyframe_interval, 25)), "threads": "2"}
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a half-written file on the error path
            pass
