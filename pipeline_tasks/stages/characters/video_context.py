"""Context frames for the background model, read from the source video that frames.jsonl names.

frame_extraction keeps a few frames a scene; a background model needs many. The source video
holds the rest: for a scene (frames [start, end) of scenes.csv) the decoder reads the scene once,
decoding reference frames only (FFmpeg's `skip_frame NONREF`: about a third of the frames of an
H.264 stream with B-frames, at a third of the cost), and keeps up to `count` of them spread evenly
over the scene, downscaled (FFmpeg's swscale, area) to the backend's working size as they come.
Scenes asked for in time order are read in one forward pass: the decoder seeks (to the keyframe
before a scene) only when the next scene lies behind it or more than AHEAD seconds ahead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import StageInputError
from .motion_vectors import MotionTrack, to_work_size

SCALER_THREADS = 1    # swscale's own threads: none (the stage's cores model scenes meanwhile)
AHEAD = 10.0          # seconds: a scene starting further ahead of the decoder is reached by a seek


@dataclass
class ContextStats:
    scenes: int = 0
    frames: int = 0               # context frames kept
    decoded: int = 0              # frames decoded for them
    placed: int = 0               # context frames placed by the encoder's motion vectors
    problems: list[str] = field(default_factory=list)


class VideoContext:
    """Opens the source video once; `scene_frames(start, end, count, size)` returns
    ``[(frame_index, rgb, placement)]`` of up to `count` frames of [start, end), resized to `size`
    (w, h); `placement` is ``(segment, m)`` from the motion vectors (motion_vectors.MotionTrack, m
    in pixels of `size`) or None."""

    def __init__(self, video: str | Path, *, stage: str | None = None):
        from av.video.reformatter import VideoReformatter

        from ..video.decode import VideoReader
        # slice threads only: with frame threads FFmpeg may export a frame's motion vectors before
        # all of its blocks are decoded (a list cut short, from run to run a different one)
        self.reader = VideoReader(video, stage=stage, threads=0, thread_type="SLICE", motion_vectors=True)
        self.stats = ContextStats()
        self.reader.stream.codec_context.skip_frame = "NONREF"
        # one swscale context for every frame (a frame's own `reformat` sets one up each time)
        self._scaler = VideoReformatter()
        self._frames = None           # the running decode: an iterator of (index, frame)
        self._ahead = None            # a frame read past the previous scene's end

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.reader.info.width, self.reader.info.height

    def scene_frames(self, start: int, end: int, count: int,
                     size: tuple[int, int]) -> list[tuple[int, np.ndarray, tuple[int, np.ndarray] | None]]:
        if end - start < 2 or count < 1:
            return []
        step = max(1.0, (end - start) / count)
        wanted = start
        out: list[tuple[int, np.ndarray, tuple[int, np.ndarray] | None]] = []
        self.stats.scenes += 1
        track = MotionTrack()
        for index, frame in self._from(start):
            if index >= end:
                self._ahead = (index, frame)
                break
            if index < start:
                continue
            placed = track.add(frame, wanted=index >= wanted)
            if index < wanted:
                continue
            if placed is not None:
                placed = (placed[0], to_work_size(placed[1], self.frame_size, size))
                self.stats.placed += 1
            # one swscale pass: downscaled and converted to RGB together
            rgb = self._scaler.reformat(frame, width=size[0], height=size[1], format="rgb24",
                                        interpolation="AREA", threads=SCALER_THREADS).to_ndarray()
            out.append((index, rgb, placed))
            wanted = max(index + 1, start + int(round(len(out) * step)))
        self.stats.frames += len(out)
        return out

    def _from(self, start: int):
        """(index, frame) from frame `start` on: the running decode when `start` lies at most
        AHEAD seconds ahead of it, else a new one from the keyframe before `start`."""
        reader = self.reader
        here = self._ahead[0] if self._ahead else None
        ahead, self._ahead = self._ahead, None
        if here is None or not here <= start <= here + AHEAD * float(reader.info.fps):
            self._frames = reader.frames(start=reader.time_of(start) if start else None)
        else:
            yield ahead
        for item in self._frames:
            self.stats.decoded += 1
            yield item

    def close(self) -> None:
        self.reader.close()


def open_context(video: str | None, *, stage: str | None = None) -> VideoContext | None:
    """The source video of a frame folder, or None when frames.jsonl names none. A named video that
    is missing is an error the user can act on (the frames would silently lose their context)."""
    if not video:
        return None
    path = Path(video)          # relative to the project folder the pipeline runs in (executor.project_path)
    if not path.is_file():
        raise StageInputError("frames.jsonl names a source video that is not there; the background model reads "
                              "context frames from it: restore the video, rerun frame_extraction, or set "
                              "video_context: false", path=path, stage=stage)
    return VideoContext(path, stage=stage)
