"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output a stage declares complete is written through these helpers (temp file in the same
directory, fsync, `os.replace`), so a crash leaves at most a `*.part-*` file that no reader trusts.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PART_MARKER = ".part-"


def is_partial(path: str | os.PathLike) -> bool:
    return PART_MARKER in Path(path).name


# the temporary name `_mkstemp_beside` gives: <stem>.part-<pid>-<n><suffix>
_TEMP_NAME = re.compile(rf"^(?P<stem>.*){re.escape(PART_MARKER)}\d+-\d+(?P<suffix>\.[^.]*)?$")


def temp_target(name: str) -> str | None:
    """The name of the file a temporary file of these helpers was to become (`frame_1.part-41-7.png`
    -> `frame_1.png`), or None when `name` is not such a temporary file."""
    match = _TEMP_NAME.match(name)
    return match["stem"] + (match["suffix"] or "") if match else None


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` atomically.

    The temporary name keeps `dest`'s suffix so libraries that pick a format from the extension
    (Pillow, OpenCV, PyAV) still do the right thing.
    """
    dest = Path(dest)
    fd, tmp = _mkstemp_beside(dest)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


_counter = itertools.count()


def _mkstemp_beside(dest: Path) -> tuple[int, str]:
    """A new, exclusive `<stem>.part-<pid>-<n><suffix>` beside `dest` (what `tempfile.mkstemp`
    does, without its random-name machinery, which cost more than the write of a small file)."""
    while True:
        tmp = os.path.join(dest.parent, f"{dest.stem}{PART_MARKER}{_pid}-{next(_counter)}{dest.suffix}")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:         # left by a killed process that had our pid
            continue
        except FileNotFoundError:
            if dest.parent.is_dir():
                raise
            dest.parent.mkdir(parents=True, exist_ok=True)


def naming(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc` with `path` as its file name, when the system call that failed had none (a `write`
    on a full disk says only "[Errno 28] No space left on device")."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, os.fspath(path))    # OSError(errno, …) picks the subclass


def write_bytes(dest: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    dest = Path(dest)
    fd, tmp = _mkstemp_beside(dest)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise naming(exc, dest) from None
        raise


def write_text(dest: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    write_bytes(dest, text.encode("utf-8"), fsync=fsync)


def write_json(dest: str | os.PathLike, data: Any, *, fsync: bool = True, indent: int | None = 2) -> None:
    write_text(dest, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n", fsync=fsync)


_pid = os.getpid()


def _new_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_new_pid)


def pid() -> int:
    """This process's id without a system call (updated in forked children)."""
    return _pid


_append_fds: dict[tuple[int, str], int] = {}


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line with a single O_APPEND write: lines from several processes never interleave
    (one write call each). The descriptor stays open for the life of the process."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    path = os.fspath(path)
    if not os.path.isabs(path):     # a relative path names another file once the working folder changes
        path = os.path.abspath(path)
    key = (_pid, path)
    fd = _append_fds.get(key)
    if fd is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = _append_fds[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    except OSError:             # file replaced or descriptor gone: reopen once
        _append_fds.pop(key, None)
        os.close(fd)
        fd = _append_fds[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        except OSError as exc:
            raise naming(exc, path) from None
