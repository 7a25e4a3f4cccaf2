"""`frame_extraction`: scene-aware (or interval) frame sampling from a video, in one streaming decode.

Modes: `scene` (PySceneDetect detector on downscaled frames, N representative frames from the middle
of each scene), `interval` (one frame every `interval` seconds, seeking past whole GOPs when the
interval is long), `hybrid` (scene representatives plus interval frames inside long scenes).
Outputs: image files, `frames.jsonl`, `scenes.csv`. Config and formats: docs/stages-video.md.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..atomic import PART_MARKER, write_json
from ..errors import StageConfigError, StageExecutionError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult
from .video.formats import FRAMES, SCENES, FrameRecord, SceneRow, write_frames, write_scenes

STATE_FILE = ".frames-state.json"
FRAME_PREFIX = "frame_"

# config keys that change which frames are written or their bytes (resume is only valid if equal)
OUTPUT_KEYS = ("mode", "scene_threshold", "quality", "detector", "min_scene_len", "frames_per_scene", "interval",
               "dedup_threshold", "max_frames", "start", "end", "max_size", "detect_width")


def _fingerprint(path: Path, block: int = 1 << 20) -> str:
    """Size plus a hash of the first, middle and last MiB: cheap for any file size, and it changes
    whenever the video is re-encoded."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        for offset in sorted({0, max(0, size // 2 - block // 2), max(0, size - block)}):
            fh.seek(offset)
            h.update(fh.read(block))
    return h.hexdigest()


class FrameExtractionStage(StageExecutor):
    type_name = "frame_extraction"
    version = "1"
    description = "Extract representative frames per scene (or at intervals) from a video"
    config_schema = {
        "input_video": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "mode": {"type": "string", "allowed": ["scene", "interval", "hybrid"], "default": "scene"},
        "scene_threshold": {"type": "number", "min": 0.01, "max": 1.0, "default": 0.3},
        "quality": {"type": "string", "allowed": ["high", "medium", "low"], "default": "high"},
        "detector": {"type": "string", "allowed": ["adaptive", "content", "hash", "histogram"], "default": "adaptive"},
        "min_scene_len": {"type": "integer", "min": 1, "max": 100000, "default": 15},
        "frames_per_scene": {"type": "integer", "min": 1, "max": 100, "default": 1},
        "interval": {"type": "number", "min": 0.01, "max": 86400, "default": 2.0},
        "dedup_threshold": {"type": "integer", "min": -1, "max": 64, "default": 4},
        "max_frames": {"type": "integer", "min": 1, "nullable": True, "default": None},
        "start": {"type": "number", "min": 0, "default": 0.0},
        "end": {"type": "number", "min": 0, "nullable": True, "default": None},
        "max_size": {"type": "integer", "min": 16, "max": 16384, "nullable": True, "default": None},
        "on_corrupt": {"type": "string", "allowed": ["fail", "continue"], "default": "fail"},
        "threads": {"type": "integer", "min": 0, "max": 64, "default": 0},
        "detect_width": {"type": "integer", "min": 32, "max": 1920, "default": 256},
    }


    # -- declarations -------------------------------------------------------------------------------
    def validate_config(self) -> None:
        start, end = float(self.cfg("start")), self.cfg("end")
        if end is not None and float(end) <= start:
            raise StageConfigError(f"end ({end}) must be after start ({start})", stage=self.stage_id, key="end")
        if float(self.cfg("scene_threshold")) <= 0:
            raise StageConfigError("scene_threshold must be > 0", stage=self.stage_id, key="scene_threshold")
        if self.cfg("mode") not in ("scene", "interval", "hybrid"):
            raise StageConfigError(f"unknown mode {self.cfg('mode')!r}; use scene, interval or hybrid",
                                   stage=self.stage_id, key="mode")

    def input_files(self) -> list[str]:
        return [str(self.config["input_video"])] if self.config.get("input_video") else []

    def estimate_duration(self) -> float | None:
        try:
            size = os.path.getsize(self.config["input_video"])
        except (OSError, KeyError):
            return None
        return size / 20e6   # ~20 MB/s of H.264 at 720p here

    # -- the work -------------------------------------------------------------------------------------
    def _prepare_output(self, out: Path, video: Path) -> None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-test{PART_MARKER}{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StageInputError(f"output directory is not writable: {exc.strerror or exc}; choose another "
                                  "output_dir or fix its permissions", path=out, stage=self.stage_id) from exc
        for stale in out.glob(f"*{PART_MARKER}*"):       # temp files of a crashed run
            stale.unlink(missing_ok=True)
        # identity of the input by content, not mtime: a re-rendered identical video keeps the
        # frames resumable and this file byte-identical (it is listed in the stage's manifest)
        state = {"input": str(video.resolve()), "fingerprint": _fingerprint(video),
                 "config": {k: self.cfg(k) for k in OUTPUT_KEYS}, "version": self.version}
        state_path = out / STATE_FILE
        previous = None
        if state_path.exists():
            try:
                previous = json.loads(state_path.read_text())
            except (OSError, ValueError):
                previous = None
        if previous != state:   # frames on disk came from another input or config: not resumable
            for old in out.glob(f"{FRAME_PREFIX}*"):
                old.unlink(missing_ok=True)
            write_json(state_path, state)

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .video.decode import VideoReader

        video = Path(self.cfg("input_video"))
        out = Path(self.cfg("output_dir"))
        t0 = time.monotonic()
        if self.cfg("mode") == "interval":
            # sparse decoding gains nothing from frame threads and pays their latency (frames
            # decoded past each target): single-threaded decoders, one per core, share the samples
            reader_args = {"threads": 1, "thread_type": "SLICE"}
        else:
            reader_args = {"threads": int(self.cfg("threads")), "thread_type": "AUTO"}
        with VideoReader(video, stage=self.stage_id, **reader_args) as reader:
            self._prepare_output(out, video)
            run = _Run(self, reader, out)
            try:
                if self.cfg("mode") == "interval":
                    run.interval()
                else:
                    run.scenes(hybrid=self.cfg("mode") == "hybrid")
            finally:
                run.close_images()
            run.check_integrity()
        elapsed = time.monotonic() - t0
        return run.finish(elapsed)


class _Run:
    """State of one execution (kept off the executor so the executor stays a declaration)."""

    def __init__(self, stage: FrameExtractionStage, reader, out: Path):
        from .video.image_writer import ImageWriter
        from .video.phash import DuplicateFilter

        self.stage = stage
        self.reader = reader
        self.info = reader.info
        self.out = out
        self.quality = stage.cfg("quality")
        self.images = ImageWriter(self.quality, stage.cfg("max_size"))
        self.ext = self.images.ext
        self.max_frames = stage.cfg("max_frames")
        self.dedup = DuplicateFilter(int(stage.cfg("dedup_threshold")))
        self.records: list[FrameRecord] = []
        self.written_indices: set[int] = set()
        self.scenes_rows: list[tuple[int, int, int]] = []
        self.stats = collections.Counter()
        fps = float(self.info.fps)
        self.start_index = int(round(float(stage.cfg("start")) * fps))
        end = stage.cfg("end")
        self.end_index = self.info.frame_count
        if end is not None:
            self.end_index = min(self.info.frame_count, int(round(float(end) * fps)))
        self.expected = max(0, self.end_index - self.start_index)
        self.last_index = self.start_index - 1
        self.decoded_in_range = 0
        self.cuts: list[int] = []
        self.stopped_early = False
        self.targets = 0                # interval mode: sample times asked for ...
        self.satisfied = 0              # ... and found

    # -- writing one frame --------------------------------------------------------------------------
    def full(self) -> bool:
        return self.max_frames is not None and len(self.records) >= int(self.max_frames)

    def write(self, index: int, frame, scene_index: int, source: str, small_gray=None) -> None:
        from .video.phash import dhash

        if index in self.written_indices or self.full():
            return
        if small_gray is None:
            from .video.decode import small_bgr
            _, small_gray = small_bgr(frame, 64, 36)
        if self.dedup.check_and_add(dhash(small_gray)):
            self.stats["duplicates_removed"] += 1
            return
        name = f"{FRAME_PREFIX}{index:07d}{self.ext}"
        dest = self.out / name
        if dest.exists():
            self.stats["resumed"] += 1
        else:
            self.images.submit(frame, dest)
            self.stats["written"] += 1
        self.written_indices.add(index)
        self.records.append(FrameRecord(file=name, frame_index=index, scene_index=scene_index,
                                        pts_time=round(self.reader.time_of(index), 6), source=source))

    # -- modes --------------------------------------------------------------------------------------
    def interval(self) -> None:
        cfg = self.stage.cfg
        step = float(cfg("interval"))
        fps = float(self.info.fps)
        first = self.start_index / fps
        last = (self.end_index - 0.5) / fps
        times = []
        t = first
        while t <= last:
            times.append(round(t, 6))
            t = first + len(times) * step
        from .video.decode import sample_frames

        decoders = int(cfg("threads")) or min(4, os.cpu_count() or 1)
        with contextlib.closing(sample_frames(self.reader, times, decoders=decoders)) as samples:
            for k, (_target, index, frame) in enumerate(samples):
                if index >= self.end_index:
                    break
                self.satisfied += 1
                self.write(index, frame, 0, "interval")
                self.stage.progress(k + 1, len(times), unit="frames")
                if self.full():
                    self.stopped_early = True
                    break
        self.targets = len(times)
        self.scenes_rows = [(0, self.start_index, self.end_index)]

    def scenes(self, *, hybrid: bool) -> None:
        from .video.decode import small_bgr
        from .video.scene_detect import CutDetector
        from .video.selection import Candidate, SceneSampler, sharpness

        cfg = self.stage.cfg
        fps = self.info.fps
        dw = max(2, int(cfg("detect_width")) // 2 * 2)
        dh = max(2, int(round(dw * self.info.height / self.info.width / 2)) * 2)
        detector = CutDetector(cfg("detector"), float(cfg("scene_threshold")), int(cfg("min_scene_len")), fps)
        lag = max(detector.lag, 2) + 2
        n = int(cfg("frames_per_scene"))
        interval_frames = max(1, int(round(float(cfg("interval")) * float(fps)))) if hybrid else 0
        pending: collections.deque = collections.deque()
        buckets = max(16, 4 * n)
        state = {"scene": 0, "sampler": SceneSampler(self.start_index, n=n, max_buckets=buckets)}

        def feed(c: Candidate) -> None:
            sampler = state["sampler"]
            sampler.add(c)
            offset = c.index - sampler.start
            if hybrid and offset > 0 and offset % interval_frames == 0:
                self.write(c.index, c.frame, state["scene"], "interval", c.small)

        def close(cut: int) -> None:
            while pending and pending[0].index < cut:
                feed(pending.popleft())
            sampler = state["sampler"]
            if cut <= sampler.start:
                return
            for c in sampler.finish(cut):
                self.write(c.index, c.frame, state["scene"], "scene", c.small)
            self.scenes_rows.append((state["scene"], sampler.start, cut))
            state["scene"] += 1
            state["sampler"] = SceneSampler(cut, n=n, max_buckets=buckets)

        import cv2

        from .video.decode import prefetch

        start_time = float(cfg("start")) or None
        frames = prefetch(self.reader.frames(start=start_time), depth=8)
        # the decoder's threads already use every core; OpenCV's own thread pool on 256-px images
        # only adds hand-off cost (measured: twice the time per frame under load)
        cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for index, frame in frames:
                if index < self.start_index:
                    continue
                if index >= self.end_index:
                    break
                self.decoded_in_range += 1
                self.last_index = index
                bgr, gray = small_bgr(frame, dw, dh)
                # sharpness on every other pixel: a quarter of the cost, good enough to rank a scene
                pending.append(Candidate(index, sharpness(gray[::2, ::2]), frame, gray))
                for cut in detector.push(index, bgr):
                    close(cut)
                while len(pending) > lag:
                    feed(pending.popleft())
                self.stage.progress(self.decoded_in_range, self.expected or None, unit="frames")
                if self.full():
                    self.stopped_early = True
                    break
        finally:
            frames.close()          # stops the decode-ahead thread, also on errors
            cv2.setNumThreads(cv2_threads)
        if not self.stopped_early:
            for cut in detector.finish():
                close(cut)
        end = self.last_index + 1
        while pending:
            feed(pending.popleft())
        if end > state["sampler"].start:
            close(end)
        self.cuts = [c for c in detector.cuts if self.start_index < c < end]

    # -- integrity and outputs ----------------------------------------------------------------------
    def check_integrity(self) -> None:
        st = self.reader.stats
        path = self.reader.path
        if st.decoded == 0:
            detail = f" ({st.first_error})" if st.first_error else ""
            raise StageInputError(f"no frames could be decoded from the video{detail}; the file has a video "
                                  "stream but zero readable frames", path=path, stage=self.stage.stage_id)
        if self.stopped_early:
            return
        if self.stage.cfg("mode") == "interval":
            lost = max(0, self.targets - self.satisfied)
            problem = st.errors or st.demux_errors or lost
            decoded_text = f"got {self.targets - lost} of {self.targets} sample times"
        else:
            lost = max(0, self.expected - self.decoded_in_range)
            tolerance = max(2, int(0.005 * self.expected))
            problem = st.errors or st.demux_errors or lost > tolerance
            decoded_text = f"decoded {self.decoded_in_range} of {self.expected} frames ({lost} lost)"
        self.stats["lost_frames"] = lost
        self.stats["decode_errors"] = st.errors + st.demux_errors
        if not problem:
            return
        message = (f"video is corrupt or truncated: {decoded_text}, {st.errors} corrupt packet(s)"
                   + (f"; first problem: {st.first_error}" if st.first_error else ""))
        if self.stage.cfg("on_corrupt") == "fail":
            raise StageInputError(message + "; set on_corrupt: continue to keep the frames that decode",
                                  path=path, stage=self.stage.stage_id)
        self.stage.log.warning("%s: %s (on_corrupt: continue)", path, message)
        self.stats["corrupt"] = 1

    def close_images(self) -> None:
        try:
            self.images.close()
        except OSError as exc:
            raise StageExecutionError(f"could not write a frame image: {exc}", path=self.out,
                                      stage=self.stage.stage_id) from exc

    def finish(self, elapsed: float) -> StageResult:
        out = self.out
        self.records.sort(key=lambda r: r.frame_index)
        keep = {r.file for r in self.records}
        for old in out.glob(f"{FRAME_PREFIX}*"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        lines = write_frames(out / FRAMES, self.records)
        write_scenes(out / SCENES, [SceneRow(idx, s, e, self.reader.time_of(s), self.reader.time_of(e))
                                    for idx, s, e in self.scenes_rows])
        decoded = self.reader.stats.decoded
        digest = hashlib.sha256(lines.encode()).hexdigest()[:16]
        return self.stage.result(
            outputs={"output_dir": str(out), "frames_jsonl": str(out / FRAMES),
                     "scenes_csv": str(out / SCENES), "frame_count": len(self.records),
                     "scene_count": len(self.scenes_rows), "cuts": self.cuts, "fps": float(self.info.fps),
                     "image_format": self.ext.lstrip("."), "frames_digest": digest},
            metrics={"seconds": round(elapsed, 3), "decoded_frames": decoded,
                     "decode_fps": round(decoded / max(elapsed, 1e-9), 1), "seeks": self.reader.stats.seeks,
                     "decoders": self.reader.stats.decoders,
                     "written": self.stats["written"], "resumed": self.stats["resumed"],
                     "duplicates_removed": self.stats["duplicates_removed"],
                     "lost_frames": self.stats["lost_frames"], "decode_errors": self.stats["decode_errors"]})
