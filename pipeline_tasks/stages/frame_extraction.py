"""`frame_extraction`: scene-aware (or interval) frame sampling from a video, in one streaming decode.

Modes: `scene` (PySceneDetect detector on downscaled frames, N representative frames from the middle
of each scene), `interval` (one frame every `interval` seconds, seeking past whole GOPs when the
interval is long), `hybrid` (scene representatives plus interval frames inside long scenes).
Outputs: image files, `frames.jsonl`, `scenes.csv` (also as `scenes-pyscenedetect.csv` and `scenes.edl`).
Config and formats: docs/stages-video.md.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from ..errors import StageConfigError, StageExecutionError, StageInputError
from ..executor import OutputFolder, StageExecutor, project_path
from ..models import StageResult
from .video.formats import (
    FRAMES,
    SCENES,
    SCENES_EDL,
    SCENES_PYSCENEDETECT,
    SCORES,
    FrameRecord,
    SceneRow,
    write_frames,
    write_scene_exports,
    write_scenes,
    write_scores,
)

FRAME_PREFIX = "frame_"

# config keys that change which frames are written or their bytes (resume is only valid if equal)
OUTPUT_KEYS = ("mode", "scene_threshold", "quality", "detector", "min_scene_len", "frames_per_scene", "interval",
               "dedup_threshold", "max_frames", "start", "end", "max_size", "detect_width", "flash_frames")


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


class FrameExtractionExecutor(StageExecutor):
    type_name = "frame_extraction"
    version = "3"
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
        "flash_frames": {"type": "integer", "min": 0, "max": 12, "default": 3},
    }


    # -- declarations -------------------------------------------------------------------------------
    def validate_config(self) -> None:
        start, end = self.settings.start, self.settings.end
        if end is not None and end <= start:
            raise StageConfigError(f"end ({end}) must be after start ({start})", stage=self.stage_id, key="end")

    def input_files(self) -> list[str]:
        return [self.settings.input_video]

    def estimate_duration(self) -> float | None:
        try:
            size = os.path.getsize(self.settings.input_video)
        except OSError:
            return None
        return size / 20e6   # ~20 MB/s of H.264 at 720p

    # -- the work -------------------------------------------------------------------------------------
    def _open_output(self, video: Path) -> OutputFolder:
        # identity of the input by content, not mtime: a re-rendered identical video keeps the
        # frames resumable and the record byte-identical (it is listed in the stage's manifest)
        return self.output_folder(resume={"input": project_path(video), "fingerprint": _fingerprint(video),
                                          "config": {k: getattr(self.settings, k) for k in OUTPUT_KEYS}})

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from .video.decode import VideoReader

        s = self.settings
        video = Path(s.input_video)
        t0 = time.monotonic()
        if s.mode == "interval":
            # sparse decoding gains nothing from frame threads and pays their latency (frames
            # decoded past each target): single-threaded decoders, one per core, share the samples
            reader_args = {"threads": 1, "thread_type": "SLICE"}
        else:
            reader_args = {"threads": s.threads, "thread_type": "AUTO"}
        with VideoReader(video, stage=self.stage_id, **reader_args) as reader:
            run = _Run(self, reader, self._open_output(video))
            try:
                if s.mode == "interval":
                    run.interval()
                else:
                    run.scenes(hybrid=s.mode == "hybrid")
            finally:
                run.close_images()
            run.check_integrity()
        elapsed = time.monotonic() - t0
        return run.finish(elapsed)


class _Run:
    """State of one execution (kept off the executor so the executor stays a declaration)."""

    def __init__(self, stage: FrameExtractionExecutor, reader, folder: OutputFolder):
        from .video.image_writer import ImageWriter
        from .video.phash import DuplicateFilter

        s = stage.settings
        self.stage = stage
        self.settings = s
        self.reader = reader
        self.info = reader.info
        self.folder = folder
        self.out = folder.path
        self.video = project_path(reader.path)       # the same in every clone of the project
        self.images = ImageWriter(s.quality, s.max_size)
        self.ext = self.images.ext
        self.max_frames = s.max_frames
        self.dedup = DuplicateFilter(s.dedup_threshold)
        self.records: list[FrameRecord] = []
        self.written_indices: set[int] = set()
        self.scenes_rows: list[tuple[int, int, int]] = []
        self.stats = collections.Counter()
        fps = float(self.info.fps)
        self.start_index = int(round(s.start * fps))
        self.end_index = self.info.frame_count
        if s.end is not None:
            self.end_index = min(self.info.frame_count, int(round(s.end * fps)))
        self.expected = max(0, self.end_index - self.start_index)
        self.last_index = self.start_index - 1
        self.decoded_in_range = 0
        self.cuts: list[int] = []
        self.scores: list[tuple[int, float]] | None = None      # the detector's score per frame (scene modes)
        self.threshold: float | None = None
        self.flashes: list[int] = []          # detector cuts dropped as flashes
        self.stopped_early = False
        self.targets = 0                # interval mode: sample times asked for ...
        self.satisfied = 0              # ... and found

    # -- writing one frame --------------------------------------------------------------------------
    def full(self) -> bool:
        return self.max_frames is not None and len(self.records) >= self.max_frames

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
        dest = self.folder.claim(name)
        if self.folder.wrote_before(name):
            self.stats["resumed"] += 1
        else:
            self.images.submit(frame, dest)
            self.stats["written"] += 1
        self.written_indices.add(index)
        self.records.append(FrameRecord(file=name, frame_index=index, scene_index=scene_index,
                                        pts_time=round(self.reader.time_of(index), 6), source=source,
                                        video=self.video))

    # -- modes --------------------------------------------------------------------------------------
    def interval(self) -> None:
        step = self.settings.interval
        fps = float(self.info.fps)
        first = self.start_index / fps
        last = (self.end_index - 0.5) / fps
        times = []
        t = first
        while t <= last:
            times.append(round(t, 6))
            t = first + len(times) * step
        from .video.decode import sample_frames

        decoders = self.settings.threads or min(4, os.cpu_count() or 1)
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
        from .video.decode import detection_image
        from .video.scene_detect import CutDetector
        from .video.selection import Candidate, SceneSampler, sharpness

        s = self.settings
        fps = self.info.fps
        dw = max(2, s.detect_width // 2 * 2)
        dh = max(2, int(round(dw * self.info.height / self.info.width / 2)) * 2)
        detector = CutDetector(s.detector, s.scene_threshold, s.min_scene_len, fps, flash_frames=s.flash_frames)
        lag = max(detector.lag, 2) + 2
        n = s.frames_per_scene
        interval_frames = max(1, int(round(s.interval * float(fps)))) if hybrid else 0
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

        start_time = s.start or None
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
                bgr, gray = detection_image(frame, dw, dh)
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
        self.scores, self.threshold = detector.scores, detector.threshold
        self.flashes = [c for c in detector.flashes if self.start_index < c < end]

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
        if self.settings.mode == "interval":
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
        if self.settings.on_corrupt == "fail":
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
        self.folder.claim(FRAMES)
        self.folder.claim(SCENES)
        lines = write_frames(out / FRAMES, self.records)
        scenes = [SceneRow(idx, s, e, self.reader.time_of(s), self.reader.time_of(e)) for idx, s, e in self.scenes_rows]
        write_scenes(out / SCENES, scenes)
        self.folder.claim(SCENES_PYSCENEDETECT)
        self.folder.claim(SCENES_EDL)
        write_scene_exports(out, scenes, self.info.fps, video=self.info.path)
        decoded = self.reader.stats.decoded
        digest = hashlib.sha256(lines.encode()).hexdigest()[:16]
        scores = {}
        if self.scores is not None:
            self.folder.claim(SCORES)
            write_scores(out / SCORES, self.scores)
            scores = {"scene_scores_csv": str(out / SCORES), "detector": self.stage.settings.detector,
                      "detector_threshold": self.threshold}
        return self.stage.result(
            outputs={**scores, "output_dir": str(out), "frames_jsonl": str(out / FRAMES),
                     "scenes_csv": str(out / SCENES), "scenes_pyscenedetect_csv": str(out / SCENES_PYSCENEDETECT),
                     "scenes_edl": str(out / SCENES_EDL), "frame_count": len(self.records),
                     "scene_count": len(self.scenes_rows), "cuts": self.cuts, "flashes": self.flashes,
                     "fps": float(self.info.fps),
                     "image_format": self.ext.lstrip("."), "frames_digest": digest},
            metrics={"seconds": round(elapsed, 3), "decoded_frames": decoded,
                     "decode_fps": round(decoded / max(elapsed, 1e-9), 1), "seeks": self.reader.stats.seeks,
                     "decoders": self.reader.stats.decoders,
                     "written": self.stats["written"], "resumed": self.stats["resumed"],
                     "duplicates_removed": self.stats["duplicates_removed"],
                     "lost_frames": self.stats["lost_frames"], "decode_errors": self.stats["decode_errors"]})
