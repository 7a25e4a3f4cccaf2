"""The state directory of one pipeline: where every file lives, the run lock, the record."""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import PipelineLockedError

DEFAULT_STATE_ROOT = ".pipeline"


def pipeline_id_for(name: str, source: str | os.PathLike | None, content: str = "") -> str:
    """Stable id: the pipeline's name plus a short hash of its file's absolute path (or content),
    so `doit`, the CLI and the API all find the same state for the same file."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "pipeline"
    key = os.path.abspath(source) if source else content
    return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class StatePaths:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @functools.cached_property
    def db(self) -> Path:
        return self.root / "doit.sqlite"

    @functools.cached_property
    def lock(self) -> Path:
        return self.root / "lock"

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


def read_record(paths: StatePaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.record.read_text())
    except (OSError, ValueError):
        return None


def update_record(paths: StatePaths, **changes: Any) -> dict[str, Any]:
    record = read_record(paths) or {}
    record.update(changes)
    record["updated_at"] = time.time()
    atomic.write_json(paths.record, record)
    return record


class RunLock:
    """An exclusive `flock` on the state directory for the length of a run.

    The kernel drops the lock when the process dies (even by SIGKILL), so a crashed run never
    leaves a stale lock behind. The file also names the holder, for the refusal message.
    """

    def __init__(self, paths: StatePaths, pipeline_id: str):
        self.paths = paths
        self.pipeline_id = pipeline_id
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.paths.lock.read_text() or "null")
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        self.paths.ensure()
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.holder() or {}
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", time.time())))
            raise PipelineLockedError(
                f"pipeline '{self.pipeline_id}' is already running: pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')} since {since} ({info.get('command', '?')})",
                path=self.paths.root,
                hint=f"wait for it, watch it with `pipeline-tasks status {self.pipeline_id}`, or stop it "
                     f"with `pipeline-tasks cancel {self.pipeline_id}`") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True while some other process holds the lock (for `status` and `cancel`)."""
        if not self.paths.lock.exists():
            return False
        fd = os.open(self.paths.lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
