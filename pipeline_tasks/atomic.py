"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output a stage declares complete is written through these helpers (temp file in the same
directory, fsync, `os.replace`), so a crash leaves at most a `*.part-*` file that no reader trusts.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

PART_MARKER = ".part-"


def is_partial(path: str | os.PathLike) -> bool:
    return PART_MARKER in Path(path).name


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` atomically.

    The temporary name keeps `dest`'s suffix so libraries that pick a format from the extension
    (Pillow, OpenCV, PyAV) still do the right thing.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.stem + PART_MARKER, suffix=dest.suffix, dir=dest.parent)
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


def write_bytes(dest: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(dest, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    write_bytes(dest, text.encode("utf-8"), fsync=fsync)


def write_json(dest: str | os.PathLike, data: Any, *, fsync: bool = True, indent: int | None = 2) -> None:
    write_text(dest, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n", fsync=fsync)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line with a single O_APPEND write, safe across processes for lines < PIPE_BUF."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
