"""Checkpoints: what a run has finished, in the documented checkpoint format.

Each pipeline has its latest checkpoint, `<state folder>/checkpoint.json` (plain JSON: what
`resume --checkpoint` and `status` read), and a history of gzip-compressed checkpoint files under
`<checkpoint_dir>/<pipeline_id>/`, pruned to the newest `keep_last`. `CheckpointManager` writes,
reads, lists and prunes them; `CheckpointWriter` writes them from a thread, so a run never waits for
a checkpoint to be encoded and written.
"""
from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import PipelineNotFoundError
from .paths import DEFAULT_STATE_ROOT, writing

HISTORY_SUFFIX = ".json.gz"


@dataclass
class CheckpointData:
    pipeline_id: str
    checkpoint_time: float = field(default_factory=time.time)
    completed_stages: list[str] = field(default_factory=list)
    stage_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipeline_state: str = "running"
    next_stage: str | None = None
    source: str | None = None                   # the pipeline file, when it has one
    definition: dict[str, Any] | None = None    # the dict a pipeline without a file was loaded from
    output_root: str | None = None              # the folder its relative output paths are rooted in
    state_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointData:
        """The checkpoint in `data`; ValueError naming the first field of the wrong shape."""
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, found {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key, (kinds, what) in _SHAPES.items():
            if key in known and not isinstance(known[key], kinds):
                raise ValueError(f"'{key}' should be {what}, found {type(known[key]).__name__}")
        if not all(isinstance(s, str) for s in known.get("completed_stages", ())):
            raise ValueError("'completed_stages' should list stage ids")
        if not all(isinstance(v, dict) for v in known.get("stage_outputs", {}).values()):
            raise ValueError("'stage_outputs' should map each stage id to an object of outputs")
        if "pipeline_id" not in known:
            raise ValueError("'pipeline_id' is missing")
        return cls(**known)


_SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "pipeline_id": (str, "a string"), "checkpoint_time": ((int, float), "a number"),
    "completed_stages": (list, "a list of stage ids"), "stage_outputs": (dict, "an object"),
    "pipeline_state": (str, "a string"), "next_stage": ((str, type(None)), "a stage id or null"),
    "source": ((str, type(None)), "a path or null"), "state_dir": ((str, type(None)), "a path or null"),
    "definition": ((dict, type(None)), "an object or null"), "output_root": ((str, type(None)), "a path or null"),
}


def read_checkpoint(path: str | Path) -> CheckpointData:
    """A checkpoint file, plain (`.json`) or gzip-compressed (`.json.gz`); PipelineNotFoundError
    naming the file when it is missing, unreadable or no checkpoint."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":          # gzip's magic number
            raw = gzip.decompress(raw)
        return CheckpointData.from_dict(json.loads(raw))
    except FileNotFoundError:
        raise PipelineNotFoundError("no checkpoint found", path=path) from None
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile) or exc.strerror is None:
            raise PipelineNotFoundError(f"not a checkpoint file ({exc})", path=path,
                                        hint="delete it: the next run writes a new one") from None
        raise PipelineNotFoundError(f"cannot read the checkpoint ({exc.strerror})", path=path) from None
    except (ValueError, EOFError) as exc:           # not JSON, not UTF-8, cut short, or the wrong shape
        raise PipelineNotFoundError(f"not a checkpoint file ({exc})", path=path,
                                    hint="delete it: the next run writes a new one") from None


class CheckpointManager:
    """Checkpoint files of any number of pipelines under `checkpoint_dir`, one folder per pipeline id.

    `save_checkpoint` writes a compressed file and prunes the folder to the newest `keep_last`;
    `load_checkpoint` returns a checkpoint as the documented JSON object; `list_checkpoints` lists a
    pipeline's files oldest first; `prune_checkpoints` removes all but the newest `keep_last`.
    """

    def __init__(self, checkpoint_dir: str | Path = DEFAULT_STATE_ROOT, keep_last: int = 3):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.keep_last = keep_last

    def folder(self, pipeline_id: str) -> Path:
        return self.checkpoint_dir / pipeline_id / "checkpoints"

    def save_checkpoint(self, pipeline: Any, completed_stages: list[str], *,
                        stage_outputs: dict[str, dict[str, Any]] | None = None,
                        state: str | None = None) -> Path:
        """Write a checkpoint of `pipeline` (a `Pipeline`, or a `CheckpointData` to write as it is)
        saying `completed_stages` are done; returns the file. `stage_outputs` defaults to the
        outputs the pipeline's stages hold."""
        if isinstance(pipeline, CheckpointData):
            data = pipeline
        else:
            done = set(completed_stages)
            outputs = stage_outputs if stage_outputs is not None else {
                s.id: dict(s.outputs) for s in pipeline.stages if s.id in done}
            state_value = state or getattr(pipeline.state, "value", pipeline.state)
            data = CheckpointData(
                pipeline_id=pipeline.id, completed_stages=list(completed_stages), stage_outputs=outputs,
                pipeline_state=str(state_value), next_stage=next((s.id for s in pipeline.stages if s.id not in done),
                                                                  None),
                source=str(pipeline.source) if pipeline.source else None, definition=pipeline.definition,
                state_dir=str(pipeline.checkpoint_dir) if pipeline.checkpoint_dir else None)
        return self.write(data, encode(data))

    def write(self, data: CheckpointData, text: str) -> Path:
        """Write `text` (the encoded `data`) as a new compressed checkpoint file; prune."""
        folder = self.folder(data.pipeline_id)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(data.checkpoint_time))
        path = folder / f"{stamp}-{int(data.checkpoint_time * 1e6) % 1_000_000:06d}-{data.pipeline_state}" \
                        f"{HISTORY_SUFFIX}"
        with writing(path, "the checkpoint"):
            folder.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(path, gzip.compress(text.encode(), compresslevel=6, mtime=0), fsync=False)
        if self.keep_last > 0:
            self.prune_checkpoints(data.pipeline_id, self.keep_last)
        return path

    def load_checkpoint(self, checkpoint_path: str | Path) -> dict[str, Any]:
        """The checkpoint in the documented structure (pipeline_id, checkpoint_time,
        completed_stages, stage_outputs, pipeline_state, next_stage) plus where its pipeline comes
        from (source, definition, output_root, state_dir)."""
        return read_checkpoint(checkpoint_path).to_dict()

    def list_checkpoints(self, pipeline_id: str) -> list[Path]:
        """A pipeline's checkpoint files, oldest first."""
        folder = self.folder(pipeline_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.endswith(HISTORY_SUFFIX) and p.is_file())

    def prune_checkpoints(self, pipeline_id: str, keep_last: int = 3) -> list[Path]:
        """Remove all but the newest `keep_last` checkpoint files of a pipeline; the removed files."""
        files = self.list_checkpoints(pipeline_id)
        removed = files[:-keep_last] if keep_last > 0 else files
        for path in removed:
            path.unlink(missing_ok=True)
        return removed


def encode(data: CheckpointData) -> str:
    # compact JSON: the indenting encoder is pure Python, too slow for 10,000 stages' outputs
    return json.dumps(data.to_dict(), separators=(",", ":"), default=str)


def write_latest(path: str | Path, text: str) -> None:
    """The pipeline's latest checkpoint (plain JSON), replaced atomically."""
    with writing(path, "the checkpoint"):
        atomic.write_text(path, text, fsync=False)


class CheckpointWriter:
    """Writes checkpoints from a thread: `submit` hands over a snapshot maker and returns at once.

    A snapshot submitted while the thread is still writing the previous one replaces any that waits
    (only the newest matters). `flush` waits until everything submitted is on disk; an error the
    thread met is raised by the next `submit` or `flush`. `on_written(path)` is called with each
    compressed file written."""

    def __init__(self, manager: CheckpointManager, latest: str | Path,
                 on_written: Callable[[CheckpointData, Path], None] | None = None):
        self.manager = manager
        self.latest = Path(latest)
        self.on_written = on_written
        self._pending: Callable[[], CheckpointData] | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, snapshot: Callable[[], CheckpointData]) -> None:
        with self._cond:
            self._raise_error()
            self._pending = snapshot
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait(0.1)
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                snapshot, self._pending, self._busy = self._pending, None, True
            try:
                data = snapshot()
                data.checkpoint_time = time.time()
                text = encode(data)
                write_latest(self.latest, text)
                path = self.manager.write(data, text)
                if self.on_written is not None:
                    self.on_written(data, path)
            except BaseException as exc:  # noqa: BLE001 - handed to the run's thread
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
