"""What the engine keeps in each stage's output folder: the folder's lock, and its ownership record.

A stage owns only what it wrote. The first time a run takes a folder (`claim`), what the folder
already holds is noted in its ownership record (`.stage-files.jsonl`, `state.folder_record`):
those paths are never outputs, never recorded in a manifest, never removed. Everything else that
appears in the folder is the stage's.

A run holds an exclusive `flock` on `.stage.lock` in every output folder of its pipeline for as long
as it runs, so two runs that would write one folder (two copies of a pipeline file, a symlink to
one, two pipelines naming the same folder) never run at once, whatever their state directories.
The lock belongs to an open file description that forked workers share: it is free again only when
every process of the run has ended. The lock is per folder, so a later executor that runs stages on
other machines can take the same lock where the stage runs (on a shared file system).
"""
from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from ..errors import PipelineLockedError
from . import folder_record
from .folder_record import LEGACY_BEFORE_NAME, RECORD_NAME

MANIFEST_NAME = ".stage.json"
LOCK_NAME = ".stage.lock"
# never an output, never a user's file: the manifest, the lock, the ownership record (and the list
# of what was there before that older folders keep beside it)
ENGINE_FILES = frozenset({MANIFEST_NAME, LOCK_NAME, RECORD_NAME, LEGACY_BEFORE_NAME})


def claim(folder: str) -> None:
    """Make `folder`, which has no lock file yet, a stage's output folder. If the folder exists,
    first note what it holds in its ownership record (written before the lock file, so a claim
    cut short is made again). Files an existing manifest or record in the folder lists are the
    stage's own: a folder that stages wrote before claims existed keeps its outputs."""
    if os.path.isdir(folder):
        folder_record.claim(folder, _entries(folder) - _manifest_files(folder))
    else:
        os.makedirs(folder, exist_ok=True)


def _entries(folder: str) -> set[str]:
    """Relative paths ('/'-separated, folders too) of everything under `folder`; linked folders are
    not followed."""
    found: set[str] = set()
    for dirpath, dirs, files in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.update(prefix + name for name in dirs + files if prefix or name not in ENGINE_FILES)
    return found


def _manifest_files(folder: str) -> set[str]:
    try:
        with open(os.path.join(folder, MANIFEST_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
        return {entry["path"] for entry in data["files"] if isinstance(entry.get("path"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def preexisting(folder: str | None) -> frozenset[str]:
    """What `folder` held before its stage first ran (relative paths; empty when it held nothing
    or did not exist). PipelineError when its record cannot be read."""
    if not folder:
        return frozenset()
    return folder_record.read(folder).before or frozenset()


def existed_before(folder: str) -> bool:
    """Whether the folder itself was there before its stage first ran (then it is never removed)."""
    return folder_record.read(folder).before is not None


def lock(folder: str, holder: bytes) -> int:
    """Claim `folder` and take its lock for the run whose state directory is `state_dir`; the
    descriptor that holds it (closing it releases the lock). `holder` is `holder_record(state_dir)`.
    PipelineLockedError naming the run that holds it already.

    The lock file names the state directory of the run that last took it (rewritten only when
    another one takes it, so a rerun writes nothing); that state directory's own lock names the
    process. Three system calls for a folder taken before: open, flock, pread."""
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        claim(folder)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refusal(folder, path) from None
    try:
        previous = os.pread(fd, 4096, 0)
        if previous != holder:
            os.pwrite(fd, holder, 0)
            if len(previous) > len(holder):
                os.ftruncate(fd, len(holder))
    except OSError:
        os.close(fd)
        raise
    return fd


def holder_record(state_dir: str) -> bytes:
    """What a folder's lock file holds: the state directory of the run that took it."""
    return json.dumps({"state_dir": state_dir}).encode()


def _refusal(folder: str, path: str) -> PipelineLockedError:
    state_dir = read_holder(path).get("state_dir")
    info = read_holder(os.path.join(state_dir, "lock")) if isinstance(state_dir, str) else {}
    return PipelineLockedError(
        f"output folder '{folder}' is being written by another run: pid {info.get('pid', '?')} on "
        f"{info.get('host', '?')} ({info.get('command', '?')}; state {state_dir or '?'})",
        path=path, hint="a folder takes one writer at a time: wait for that run to end or cancel it; "
                        "two pipelines (or two copies of one) must not name the same output_dir")


def read_holder(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
