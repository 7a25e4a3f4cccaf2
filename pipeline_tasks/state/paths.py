"""The state directory of one pipeline: where every file lives, the run lock, the record."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import PipelineError, PipelineLockedError
from . import folders
from .folders import held_elsewhere

DEFAULT_STATE_ROOT = ".pipeline"


def pipeline_id_for(name: str) -> str:
    """The id of a pipeline, and the name of its state folder: its declared name, as a file name
    (with a short hash of the exact name when characters had to be replaced). The id depends on
    nothing else, so renaming or copying the pipeline file, moving the project or cloning it
    elsewhere keeps its state; two files of one project that declare the same name share it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "pipeline"
    if slug == name:
        return slug
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


class StatePaths:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @functools.cached_property
    def db(self) -> Path:
        return self.root / "doit.sqlite"

    @functools.cached_property
    def lock(self) -> Path:
        return self.root / folders.RUN_LOCK_NAME

    @functools.cached_property
    def record(self) -> Path:
        return self.root / "pipeline.json"

    @functools.cached_property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @functools.cached_property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.json"

    @functools.cached_property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @functools.cached_property
    def cancel_flag(self) -> Path:
        return self.root / "cancel"

    @functools.cached_property
    def pause_flag(self) -> Path:           # while it exists no stage starts (`pipeline-tasks pause`, the safety guard)
        return self.root / "pause"

    @functools.cached_property
    def cancel_flag_str(self) -> str:       # checked before every stage: no Path conversion each time
        return str(self.cancel_flag)

    def log(self, stage_id: str) -> Path:
        return self.root / "logs" / f"{stage_id}.log"

    def error_report(self, stage_id: str) -> Path:
        return self.root / "errors" / f"{stage_id}.txt"

    def default_manifest(self, stage_id: str) -> Path:
        return self.root / "stages" / stage_id / ".stage.json"

    def ensure(self) -> StatePaths:
        """Create the state folders once per run (stages then never pay for mkdir)."""
        for folder in (self.root / "logs", self.root / "errors"):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def state_write_error(path: str | os.PathLike, what: str, exc: OSError) -> PipelineError:
    """A failed write of a state file as a message that names the file and what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free space on that disk, or put the state elsewhere with --state-dir"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make it writable, or put the state elsewhere with --state-dir"
    else:
        hint = None
    return PipelineError(f"cannot write {what}: {reason}", path=path, hint=hint)


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an OSError raised inside into `state_write_error(path, what, …)`."""
    try:
        yield
    except OSError as exc:
        raise state_write_error(exc.filename or path, what, exc) from None


class AbortRun(BaseException):
    """Stops a run from inside doit (reporter, database backend) with a PipelineError: doit turns
    every Exception into a printed traceback, a BaseException reaches the caller, which raises the
    error it carries."""

    def __init__(self, error: PipelineError):
        super().__init__(str(error))
        self.error = error


def read_record(paths: StatePaths) -> dict[str, Any] | None:
    try:
        record = json.loads(paths.record.read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def update_record(paths: StatePaths, **changes: Any) -> dict[str, Any]:
    record = read_record(paths) or {}
    record.update(changes)
    record["updated_at"] = time.time()
    with writing(paths.record, "the run record"):
        atomic.write_json(paths.record, record)
    return record


class RunLock:
    """An exclusive `flock` on the state directory for the length of a run, and each output folder
    of the pipeline taken for it (`folders.take`).

    The state directory's lock keeps two runs off one state (database, events, checkpoint); each
    output folder names the state directory of the run writing it, which keeps two runs off one
    output whichever state directories they use. The kernel drops the lock when the run's processes
    are gone (even by SIGKILL), so a crashed run never leaves a stale lock behind. The lock file
    names its holder, for the refusal message.
    """

    def __init__(self, paths: StatePaths, pipeline_id: str, output_dirs: Iterable[str] = ()):
        self.paths = paths
        self.pipeline_id = pipeline_id
        self.output_dirs = sorted({os.path.abspath(d) for d in output_dirs})
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        return folders.read_holder(self.paths.lock) or None

    def acquire(self) -> RunLock:
        with writing(self.paths.lock, "the run lock"):
            self.paths.ensure()
            fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.holder() or {}
            started = info.get("started")
            since = time.strftime("%Y-%m-%d %H:%M:%S",
                                  time.localtime(started if isinstance(started, (int, float)) else time.time()))
            raise PipelineLockedError(
                f"pipeline '{self.pipeline_id}' is already running: pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')} since {since} ({info.get('command', '?')})",
                path=self.paths.root,
                hint=f"wait for it, watch it with `pipeline-tasks status {self.pipeline_id}`, or stop it "
                     f"with `pipeline-tasks cancel {self.pipeline_id}`") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv), "state_dir": str(self.paths.root)}
        data = json.dumps(info).encode()
        try:
            with writing(self.paths.lock, "the run lock"):
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
        except PipelineError:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        self._fd = fd
        _held.add(os.path.abspath(self.paths.root))
        try:
            self._lock_folders()
        except BaseException:
            self.release()
            raise
        return self

    def _lock_folders(self) -> None:
        state_dir = os.path.abspath(self.paths.root)
        holder = folders.holder_record(state_dir)
        folder = ""
        try:
            for folder in self.output_dirs:
                folders.take(folder, state_dir, holder)
        except OSError as exc:
            raise state_write_error(exc.filename or folder, f"the lock of output folder {folder}", exc) from None

    def release(self) -> None:
        if self._fd is None:
            return
        _held.discard(os.path.abspath(self.paths.root))
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True while some other process holds the lock (for `status` and `cancel`)."""
        return held_elsewhere(self.paths.lock)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_held: set[str] = set()          # state directories whose run lock this process holds


def holds_run_lock(state_dir: str | os.PathLike) -> bool:
    """Whether this process holds the run lock of `state_dir` (it is the run)."""
    return os.path.abspath(state_dir) in _held


def folder_being_written(folder: str) -> bool:
    """Whether a run other than this process's is writing `folder` (the run its lock file names
    holds its state directory's run lock)."""
    state_dir = folders.writer(folder)
    return (state_dir is not None and not holds_run_lock(state_dir)
            and held_elsewhere(folders.run_lock_file(state_dir)))
