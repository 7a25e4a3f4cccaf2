"""Context frames for the background model, read from the source video that frames.jsonl names.

frame_extraction keeps a few frames a scene; a background model needs many. The source video
holds the rest: for a scene (frames [start, end) of scenes.csv) the decoder reads the scene once
from the keyframe before it, decoding reference frames only (FFmpeg's `skip_frame NONREF`: about a
third of the frames of an H.264 stream with B-frames, at a third of the cost), and keeps up to
`count` of them spread evenly over the scene, downscaled (FFmpeg's swscale, area) to the backend's
working size as they come.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import StageInputError


@dataclass
class ContextStats:
    scenes: int = 0
    frames: int = 0               # context frames kept
    decoded: int = 0              # frames decoded for them
    problems: list[str] = field(default_factory=list)


class VideoContext:
    """Opens the source video once; `scene_frames(start, end, count, size)` returns
    ``[(frame_index, rgb)]`` of up to `count` frames of [start, end), resized to `size` (w, h)."""

    def __init__(self, video: str | Path, *, stage: str | None = None):
        from ..video.decode import VideoReader
        self.reader = VideoReader(video, stage=stage, threads=0, thread_type="AUTO")
        self.stats = ContextStats()

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.reader.info.width, self.reader.info.height

    def scene_frames(self, start: int, end: int, count: int, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
        if end - start < 2 or count < 1:
            return []
        reader = self.reader
        reader.stream.codec_context.skip_frame = "NONREF"
        step = max(1.0, (end - start) / count)
        wanted = start
        out: list[tuple[int, np.ndarray]] = []
        self.stats.scenes += 1
        try:
            for index, frame in reader.frames(start=reader.time_of(start) if start else None):
                self.stats.decoded += 1
                if index >= end:
                    break
                if index < wanted:
                    continue
                if (frame.width, frame.height) != size:
                    frame = frame.reformat(width=size[0], height=size[1], interpolation="AREA")
                out.append((index, frame.to_ndarray(format="rgb24")))
                wanted = max(index + 1, start + int(round(len(out) * step)))
        finally:
            reader.stream.codec_context.skip_frame = "DEFAULT"
        self.stats.frames += len(out)
        return out

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
