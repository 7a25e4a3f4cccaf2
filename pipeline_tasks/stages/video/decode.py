"""Opening a video with clear errors, and streaming (threaded) decode with PyAV.

Every failure a user can cause (missing file, not a video, audio only, no frames, corrupt or
truncated data) becomes a `StageInputError` naming the file; no PyAV traceback escapes. Decoding is
a generator over frames: nothing but the decoder's own small queue is held in memory.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ...errors import StageInputError


class _SeekMissed(Exception):
    """A seek landed after its target: the container cannot seek to keyframes."""


@dataclass
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    start_pts: int
    frame_count: int              # from the container header, or duration * fps when it has none
    duration: float               # seconds
    codec: str


@dataclass
class DecodeStats:
    decoded: int = 0
    errors: int = 0               # packets the decoder rejected
    demux_errors: int = 0         # read errors that ended the stream early
    first_error: str | None = None
    seeks: int = 0
    decoders: int = 1             # decoders that shared the work (interval mode)
    last_index: int = -1
    messages: list[str] = field(default_factory=list)


class VideoReader:
    """One opened video stream; `frames()` streams decoded frames with their index and time."""

    def __init__(self, path: str | os.PathLike, *, stage: str | None = None, threads: int = 0,
                 thread_type: str = "AUTO", motion_vectors: bool = False):
        self.path = Path(path)
        self.motion_vectors = motion_vectors      # the decoder exports each frame's motion vectors
        self.stage = stage
        if not self.path.exists():
            raise StageInputError("input video does not exist; check input_video (or the upstream stage "
                                  "that should have produced it)", path=self.path, stage=stage)
        if self.path.is_dir():
            raise StageInputError("input video is a directory, not a file", path=self.path, stage=stage)
        if not os.access(self.path, os.R_OK):
            raise StageInputError("input video is not readable (permissions)", path=self.path, stage=stage)
        if self.path.stat().st_size == 0:
            raise StageInputError("input video is an empty file (0 bytes)", path=self.path, stage=stage)
        try:
            self.container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as exc:
            raise StageInputError(f"not a readable video file (FFmpeg: {_reason(exc)}); is it truncated, "
                                  "or not a video at all?", path=self.path, stage=stage) from exc
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams})
            self.container.close()
            if not kinds:
                raise StageInputError("file contains no streams at all (an empty or unfinished recording?)",
                                      path=self.path, stage=stage)
            raise StageInputError(f"file has no video stream (found: {', '.join(kinds)}); an audio-only file "
                                  "cannot be used for frame extraction", path=self.path, stage=stage)
        self._setup_stream(thread_type, int(threads))
        cc = self.stream.codec_context
        if not cc.width or not cc.height:
            self.container.close()
            raise StageInputError("video stream has no frame size (corrupt header?)", path=self.path, stage=stage)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        fps = Fraction(rate) if rate else Fraction(25)
        tb = Fraction(self.stream.time_base) if self.stream.time_base else Fraction(1, 1000)
        start = self.stream.start_time if self.stream.start_time is not None else 0
        if self.stream.duration:
            duration = float(self.stream.duration * tb)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        else:
            duration = 0.0
        frames = int(self.stream.frames or 0) or int(round(duration * fps))
        self.info = VideoInfo(path=str(self.path), width=cc.width, height=cc.height, fps=fps, time_base=tb,
                              start_pts=int(start), frame_count=frames, duration=duration, codec=cc.name)
        self.stats = DecodeStats()
        self._gop_seconds = 1.0          # largest keyframe spacing seen so far (seek heuristic)
        self._last_key_time: float | None = None
        self._skip_before_pts: int | None = None   # while set: drop non-reference frames before it
        self._skipping = False
        self._seek_check: float | None = None      # after a seek: its target (seconds), until a keyframe
        self.seekable = True                       # False once a seek missed its keyframe

    def _setup_stream(self, thread_type: str, threads: int) -> None:
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = thread_type
        self.stream.thread_count = threads
        # report damaged packets as errors instead of silently concealing them
        options = {"err_detect": "+explode"}
        if self.motion_vectors:
            options["flags2"] = "+export_mvs"
        self.stream.codec_context.options = options

    def _rewind(self) -> None:
        """Back to the first packet: reopened, since a container that cannot seek to keyframes
        cannot be trusted to seek to its start either."""
        thread_type, threads = self.stream.thread_type, self.stream.thread_count
        self.container.close()
        self.container = av.open(str(self.path), mode="r")
        self._setup_stream(thread_type, threads)
        self._skipping = False
        self._last_key_time = None
        self._seek_check = math.inf          # still: nothing decodes before the first keyframe

    # -- indexing ---------------------------------------------------------------------------------
    def index_of(self, frame: av.VideoFrame) -> int:
        if frame.pts is None:
            return self.stats.last_index + 1
        return int(round(float((frame.pts - self.info.start_pts) * self.info.time_base) * float(self.info.fps)))

    def time_of(self, index: int) -> float:
        return float(index / self.info.fps)

    # -- decoding ---------------------------------------------------------------------------------
    def _packets(self):
        demux = self.container.demux(self.stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                self.stats.demux_errors += 1
                self._note(f"read error after frame {self.stats.last_index}: {_reason(exc)}")
                return
            yield packet

    def _note(self, message: str) -> None:
        if self.stats.first_error is None:
            self.stats.first_error = message
        if len(self.stats.messages) < 20:
            self.stats.messages.append(message)

    def frames(self, *, start: float | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield ``(frame_index, frame)`` in presentation order from `start` seconds (or the start).

        Packets the decoder rejects (corrupt data) are counted in `stats.errors` and skipped; a read
        error ends the stream early (`stats.demux_errors`). The caller decides whether that is fatal.
        """
        if start:
            self.seek(start)
        while True:
            try:
                yield from self._decode()
                return
            except _SeekMissed:
                # this container cannot seek to a keyframe (no index: MPEG-TS, raw streams …):
                # start again from the beginning and decode forward from now on
                self.seekable = False
                self._rewind()

    def _decode(self) -> Iterator[tuple[int, av.VideoFrame]]:
        cc = self.stream.codec_context
        for packet in self._packets():
            if self._seek_check is not None:
                if not packet.is_keyframe:
                    continue        # nothing before the first keyframe after a seek can be decoded
                target, self._seek_check = self._seek_check, None
                if packet.pts is not None and self._pts_time(packet.pts) > target + 0.5 / float(self.info.fps):
                    raise _SeekMissed
            skip = (self._skip_before_pts is not None and packet.pts is not None
                    and packet.pts < self._skip_before_pts)
            if skip != self._skipping:
                cc.skip_frame = "NONREF" if skip else "DEFAULT"
                self._skipping = skip
            try:
                decoded = packet.decode()
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                self.stats.errors += 1
                self._note(f"corrupt data near frame {self.stats.last_index + 1}: {_reason(exc)}")
                continue
            for frame in decoded:
                index = self.index_of(frame)
                if frame.key_frame:
                    t = self.time_of(index)
                    if self._last_key_time is not None and t > self._last_key_time:
                        self._gop_seconds = max(self._gop_seconds, t - self._last_key_time)
                    self._last_key_time = t
                self.stats.decoded += 1
                self.stats.last_index = index
                yield index, frame

    def _pts_time(self, pts: int) -> float:
        return float((pts - self.info.start_pts) * self.info.time_base)

    def seek(self, seconds: float) -> None:
        """Jump to the keyframe at or before `seconds`; the decoder is flushed. Decoding resumes at
        the first keyframe; if that lies after `seconds` (a container without a keyframe index),
        `frames()` falls back to decoding from the start and `seekable` turns False."""
        target = int(seconds / self.info.time_base) + self.info.start_pts
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise StageInputError(f"cannot seek to {seconds:.3f} s: {_reason(exc)}", path=self.path,
                                  stage=self.stage) from exc
        self.stream.codec_context.flush_buffers()
        self._last_key_time = None
        self._seek_check = seconds
        self.stats.seeks += 1

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, int, av.VideoFrame]]:
        """Yield ``(target_time, frame_index, frame)``: the first frame at or after each target time.

        Seeks (skipping whole GOPs without decoding them) when the next target is more than the
        largest keyframe interval seen ahead of the last decoded frame (learned while decoding; a
        seek that lands behind the current position raises the estimate); otherwise keeps decoding
        forward. Non-reference frames before the next target are not decoded at all (skip_frame
        NONREF), which leaves every decoded frame bit-exact. Targets must be ascending.
        """
        half = 0.5 / float(self.info.fps)
        pending = list(times)
        # time of the last decoded frame; a fresh reader stands at the start of the stream, so
        # targets in the first GOP are reached by decoding, not by a seek
        fresh = self.stats.decoded == 0 and self.stats.seeks == 0
        position = -half if fresh else -math.inf

        def skip_until(target: float) -> None:
            # frames nobody references and nobody asked for need not be decoded
            self._skip_before_pts = int((target - 3 * half) / self.info.time_base) + self.info.start_pts

        while pending:
            target = pending[0]
            skip_until(target)
            seeked_from = None
            if self.seekable and target - position >= self._gop_seconds:
                # a keyframe lies in (position, target] if keyframes come at least every _gop_seconds
                seeked_from = position
                self.seek(target)
            progressed = False
            for index, frame in self.frames():  # noqa: B007
                t = self.time_of(index)
                if not progressed and seeked_from is not None and t <= seeked_from:
                    # landed before where we were: keyframes are sparser than assumed
                    self._gop_seconds = max(self._gop_seconds, target - t)
                progressed = True
                position = t
                if pending and t >= pending[0] - half:
                    while pending and t >= pending[0] - half:
                        yield pending.pop(0), index, frame
                    if not pending:
                        self._skip_before_pts = None
                        return
                    skip_until(pending[0])
                    if self.seekable and pending[0] - position >= self._gop_seconds:
                        break           # seek to the next target
            else:
                break                   # end of stream: remaining targets lie past the last frame
        self._skip_before_pts = None

    def keyframe_times(self) -> list[float]:
        """Keyframe times from the container's index, without decoding; empty when the container
        keeps none (MPEG-TS, raw streams). MP4 has its index at open; Matroska reads its cues on
        the first seek, so an index without keyframes is probed once with a seek and the file
        reopened (a reader is only asked this before it decodes)."""
        keys = self._indexed_keyframes()
        if len(keys) < 2:
            try:
                self.container.seek(self.info.start_pts, stream=self.stream, backward=True, any_frame=False)
                keys = self._indexed_keyframes()
            except av.error.FFmpegError:
                keys = []
            self._rewind()
        return keys if len(keys) > 1 else []

    def _indexed_keyframes(self) -> list[float]:
        start, tb = self.info.start_pts, self.info.time_base
        return sorted(float((e.timestamp - start) * tb) for e in self.stream.index_entries if e.is_keyframe)

    def add_stats(self, other: DecodeStats) -> None:
        st = self.stats
        st.decoded += other.decoded
        st.errors += other.errors
        st.demux_errors += other.demux_errors
        st.seeks += other.seeks
        st.first_error = st.first_error or other.first_error
        st.messages.extend(other.messages[:max(0, 20 - len(st.messages))])

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sample_frames(reader: VideoReader, times: list[float], decoders: int = 1,
                  depth: int = 4) -> Iterator[tuple[float, int, av.VideoFrame]]:
    """`reader.frames_at(times)` with the work split over `decoders` decoders in parallel threads.

    Targets are grouped by the keyframe they decode from (the container index says where
    keyframes are) and the groups dealt round-robin, so every GOP is decoded by one decoder only:
    the work divides instead of repeating. Each extra decoder is another `VideoReader` of the same
    file; its statistics are added to `reader.stats`. Results come back in target order, each
    decoder at most `depth` frames ahead (memory stays bounded). Without an index, or with fewer
    groups than decoders, this is plain `reader.frames_at(times)`.
    """
    import bisect
    import heapq

    keys = reader.keyframe_times() if decoders > 1 else []
    groups: list[list[float]] = []
    last_key = None
    for t in times:
        key = bisect.bisect_right(keys, t + 1e-6)
        if key != last_key:
            groups.append([])
            last_key = key
        groups[-1].append(t)
    if not keys or len(groups) < 2 * decoders:
        yield from reader.frames_at(times)
        return
    readers = [reader] + [VideoReader(reader.path, stage=reader.stage, threads=reader.stream.thread_count,
                                      thread_type=reader.stream.thread_type) for _ in range(decoders - 1)]
    reader.stats.decoders = decoders
    shares = [sorted(t for g in groups[k::decoders] for t in g) for k in range(decoders)]
    streams = [prefetch(r.frames_at(share), depth=depth) for r, share in zip(readers, shares)]
    try:
        yield from heapq.merge(*streams, key=lambda item: item[0])
    finally:
        for stream in streams:
            stream.close()
        for extra in readers[1:]:
            reader.add_stats(extra.stats)
            extra.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0] if text else type(exc).__name__


def plane_arrays(frame: av.VideoFrame) -> list[np.ndarray]:
    """Zero-copy views of a planar frame's planes (no colour conversion)."""
    out = []
    for plane in frame.planes:
        arr = np.frombuffer(plane, np.uint8)
        out.append(arr.reshape(plane.height, plane.line_size)[:, :plane.width])
    return out


def small_bgr(frame: av.VideoFrame, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A downscaled BGR image and its luma, for detection and sharpness (cheap: no full-size RGB).

    For yuv420p/yuvj420p the planes are resized directly (luma to width x height, chroma to half
    that) and converted with one I420 -> BGR call; other pixel formats go through swscale.
    """
    if frame.format.name in ("yuv420p", "yuvj420p") and width % 2 == 0 and height % 2 == 0:
        y, u, v = plane_arrays(frame)
        ys = cv2.resize(y, (width, height), interpolation=cv2.INTER_LINEAR)
        half = (width // 2, height // 2)
        i420 = np.empty((height * 3 // 2, width), np.uint8)
        i420[:height] = ys
        chroma = i420[height:].reshape(-1)
        n = half[0] * half[1]
        chroma[:n] = cv2.resize(u, half, interpolation=cv2.INTER_LINEAR).reshape(-1)
        chroma[n:] = cv2.resize(v, half, interpolation=cv2.INTER_LINEAR).reshape(-1)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), ys
    bgr = frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def _paired(n_out: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an odd integer downscale `factor`, OpenCV's linear resize reads exactly one source line
    per output line (weight 1 on line ``k * factor + (factor - 1) // 2``). Returns the source lines as
    even/odd pairs that share a 4:2:0 chroma line, the chroma lines, and the pick in each pair."""
    src = np.arange(n_out) * factor + (factor - 1) // 2
    first = src - src % 2
    return np.stack([first, first + 1], 1).reshape(-1), first // 2, src - first


def detection_image(frame: av.VideoFrame, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame as PySceneDetect's own pipeline shows it to a detector (full-size BGR by FFmpeg's
    swscale, then OpenCV's linear resize to `width` x `height`), and its luma for sharpness.

    When the frame is yuv420p and an odd integer multiple of the target size, the linear resize reads one
    source pixel per output pixel: only those pixels (and their pair-mates, which share a chroma
    sample) are gathered into a small yuv420p frame and converted by swscale, which converts pixel by
    pixel, so the result is bit-identical at a fraction of the cost. Other sizes and formats take
    the full path.
    """
    fw, fh = frame.width, frame.height
    factor = fw // width if width else 0
    if (frame.format.name in ("yuv420p", "yuvj420p") and factor % 2 == 1 and fw == width * factor
            and fh == height * factor):
        key = (fw, fh, width, height)
        index = _PAIRS.get(key)
        if index is None:
            index = _PAIRS[key] = (_paired(height, factor), _paired(width, factor))
        (rows, crows, rpick), (cols, ccols, cpick) = index
        y, u, v = plane_arrays(frame)
        small = av.VideoFrame(2 * width, 2 * height, frame.format.name)
        for plane, data in zip(small.planes, (y.take(rows, 0).take(cols, 1), u.take(crows, 0).take(ccols, 1),
                                              v.take(crows, 0).take(ccols, 1))):
            if plane.line_size != data.shape[1]:
                padded = np.zeros((data.shape[0], plane.line_size), np.uint8)
                padded[:, :data.shape[1]] = data
                data = padded
            plane.update(np.ascontiguousarray(data))
        small.colorspace = frame.colorspace
        small.color_range = frame.color_range
        pick = np.ix_(np.arange(height) * 2 + rpick, np.arange(width) * 2 + cpick)
        bgr = np.ascontiguousarray(small.to_ndarray(format="bgr24")[pick])
        luma = y.take(rows[0::2] + rpick, 0).take(cols[0::2] + cpick, 1)
        return bgr, luma
    bgr = cv2.resize(frame.to_ndarray(format="bgr24"), (width, height), interpolation=cv2.INTER_LINEAR)
    return bgr, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


_PAIRS: dict[tuple[int, int, int, int], tuple] = {}


def prefetch(iterator: Iterator, depth: int = 8) -> Iterator:
    """Run `iterator` in a background thread, `depth` items ahead of the consumer.

    PyAV releases the GIL while decoding, so demuxing and feeding the decoder overlap with the
    consumer's per-frame work (detection) instead of alternating with it. Memory: `depth` items.
    Exceptions raised by the iterator are re-raised in the consumer; closing the generator early
    stops the thread. Only for purely sequential reading (no seeks while it runs).
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="video-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
