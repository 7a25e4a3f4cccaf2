"""What the engine keeps in each stage's output folder: the folder's lock, and its ownership record.

A stage owns only what it wrote. The first time a run takes a folder (`claim`), what the folder
already holds is noted in its ownership record (`.stage-files.jsonl`, `state.folder_record`):
those paths are never outputs, never recorded in a manifest, never removed. Everything else that
appears in the folder is the stage's.

Each output folder's `.stage.lock` names the state directory of the run that last took it, and
that run is writing the folder for as long as it holds its state directory's run lock (`lock` in
the state directory, an exclusive `flock` the kernel drops when the run's last process is gone).
So two runs that would write one folder (two copies of a pipeline file, a symlink to one, two
pipelines naming the same folder) never run at once, whatever their state directories, and a run
holds no descriptor per folder: a batch of 10,000 items with three stages needs no more open files
than one stage. Taking a folder holds the lock file's own `flock` only while it reads and rewrites
the name, so two runs taking a folder at the same moment are told apart. The name is per folder,
so a later executor that runs stages on other machines can check it where the stage runs (on a
shared file system).
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
RUN_LOCK_NAME = "lock"          # in the state directory
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


def take(folder: str, state_dir: str, holder: bytes | None = None) -> None:
    """Claim `folder` for the run whose (absolute) state directory is `state_dir`, and name that
    run in its lock file. PipelineLockedError naming the run that is writing it already. `holder`:
    `holder_record(state_dir)`, made once by a caller that takes many folders.

    The lock file is rewritten only when another state directory took the folder last, so a
    rerun writes nothing: open, flock, pread and close for a folder taken before."""
    holder = holder or holder_record(state_dir)
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        claim(folder)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:         # another run is taking it this moment
            raise _refusal(folder, path) from None
        previous = os.pread(fd, 4096, 0)
        if previous != holder:
            other = _named_state_dir(previous)
            if other is not None and other != state_dir and held_elsewhere(run_lock_file(other)):
                raise _refusal(folder, path)
            os.pwrite(fd, holder, 0)
            if len(previous) > len(holder):
                os.ftruncate(fd, len(holder))
    finally:
        os.close(fd)


def writer(folder: str) -> str | None:
    """The state directory of the run that last took `folder` (None when none did, or its lock file
    does not say)."""
    try:
        with open(os.path.join(folder, LOCK_NAME), "rb") as fh:
            return _named_state_dir(fh.read(4096))
    except OSError:
        return None


def run_lock_file(state_dir: str) -> str:
    """The run lock of a state directory (`state.paths.StatePaths.lock`)."""
    return os.path.join(state_dir, RUN_LOCK_NAME)


def held_elsewhere(lock_file: str | os.PathLike) -> bool:
    """True while another process holds an exclusive `flock` on `lock_file` (False when it does not
    exist); probed with a shared lock that is released again at once."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _named_state_dir(record: bytes) -> str | None:
    if not record:              # a lock file just made
        return None
    try:
        info = json.loads(record)
    except ValueError:
        return None
    state_dir = info.get("state_dir") if isinstance(info, dict) else None
    return state_dir if isinstance(state_dir, str) and state_dir else None


def holder_record(state_dir: str) -> bytes:
    """What a folder's lock file holds: the state directory of the run that took it."""
    return json.dumps({"state_dir": state_dir}).encode()


def _refusal(folder: str, path: str) -> PipelineLockedError:
    state_dir = writer(folder)
    info = read_holder(run_lock_file(state_dir)) if state_dir else {}
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
