"""The ownership record of a stage's output folder, `.stage-files.jsonl`: which files were in the
folder before its stage first ran, and which files and folders the stage wrote there.

A stage owns only what it wrote. What was there before is never an output, never written over,
never removed; what the stage wrote is its own to replace and to remove. One JSON object a line:

    {"record": "stage-files", "format": 2}                   always the first line
    {"before": ["notes.txt", "sub", "sub/old.txt"]}
    {"stage": {"type": "frame_extraction", "version": "3", "resume": {...}}}
    {"dir": "frames"}
    {"file": "frames/000001.png"}

- `before`: written by the engine when a run first takes a folder that already exists (`claim`),
  even an empty one; no such line means the engine made the folder (so it may remove it).
- `stage`, `dir`, `file`: kept by a built-in stage (`executor.OutputFolder`): its type, version
  and resume state, then each path it makes, appended before anything is written to it, so a
  killed run still leaves a record of what it may have written (a line torn by the kill is
  skipped). When the stage finishes, the whole record is rewritten sorted and atomically.

Older folders kept the list of what was there before in a second file, `.stage-preexisting.json`
(`{"format": 1, "paths": [...]}`), and began the record with the stage's header
(`{"record": "stage-files", "type": ..., "version": ..., "resume": ...}`). Both are read as the
same record; the first read folds the old list into the record and removes the old file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import atomic
from ..errors import PipelineError

RECORD_NAME = ".stage-files.jsonl"
LEGACY_BEFORE_NAME = ".stage-preexisting.json"
FORMAT = 2
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class Record:
    """One output folder's record. `before` is None unless a run claimed the folder when it existed."""
    before: frozenset[str] | None = None
    stage: dict[str, Any] | None = None
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        """The record as it is written: header, what was there before, the stage, then sorted paths."""
        out = [_ENCODE({"record": "stage-files", "format": FORMAT})]
        if self.before is not None:
            out.append(_ENCODE({"before": sorted(self.before)}))
        if self.stage is not None:
            out.append(_ENCODE({"stage": self.stage}))
        out += [_ENCODE({"dir": d}) for d in sorted(self.dirs)]
        out += [_ENCODE({"file": f}) for f in sorted(self.files)]
        return out


def encode_line(entry: dict[str, Any]) -> bytes:
    """One appended line (`{"file": ...}` or `{"dir": ...}`)."""
    return (_ENCODE(entry) + "\n").encode("utf-8")


def read(folder: str | os.PathLike) -> Record:
    """The record of `folder` (an empty Record when it has none). PipelineError when it is damaged
    where it says what was there before: a user's file must never be taken for the stage's."""
    path = os.path.join(folder, RECORD_NAME)
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        return _with_legacy(folder, Record(), current=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, exc) from None
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("record") != "stage-files":
        raise _damaged(path, "its first line is not the record's header")
    record = Record()
    current = header.get("format") == FORMAT
    if not current and "type" in header:            # the older record: its first line names the stage
        record.stage = {k: v for k, v in header.items() if k != "record"}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:          # a line torn by a crash
            continue
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("file"), str):
            record.files.add(entry["file"])
        elif isinstance(entry.get("dir"), str):
            record.dirs.add(entry["dir"])
        elif isinstance(entry.get("stage"), dict):
            record.stage = entry["stage"]
        elif "before" in entry:
            paths = entry["before"]
            if not isinstance(paths, list):
                raise _damaged(path, "its 'before' line holds no list of paths")
            record.before = frozenset(p for p in paths if isinstance(p, str))
    return _with_legacy(folder, record, current=current)


def write(folder: str | os.PathLike, record: Record) -> None:
    """Rewrite the record whole and atomically (then the older list of what was there before, now
    folded in, is removed)."""
    atomic.write_text(os.path.join(folder, RECORD_NAME), "\n".join(record.lines()) + "\n", fsync=False)
    try:
        os.unlink(os.path.join(folder, LEGACY_BEFORE_NAME))
    except FileNotFoundError:
        pass


def claim(folder: str | os.PathLike, before: Iterable[str]) -> None:
    """Note that `folder` existed and held `before` when a run first took it; a folder already
    claimed keeps what its record says (the earlier list is the true one)."""
    record = read(folder)
    if record.before is not None:
        return
    record.before = frozenset(before) - record.files - record.dirs
    write(folder, record)


def _with_legacy(folder: str | os.PathLike, record: Record, *, current: bool) -> Record:
    """`record` with the older list of what was there before folded in (and written, once)."""
    if current or record.before is not None:
        return record
    path = os.path.join(folder, LEGACY_BEFORE_NAME)
    try:
        with open(path, encoding="utf-8") as fh:
            paths = json.load(fh)["paths"]
        if not isinstance(paths, list):
            raise TypeError("'paths' is not a list")
    except FileNotFoundError:
        return record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, exc) from None
    record.before = frozenset(p for p in paths if isinstance(p, str))
    try:
        write(folder, record)
    except OSError:             # a folder that cannot be written now: read as it is, folded in later
        pass
    return record


def _damaged(path: str, why: Any) -> PipelineError:
    # unreadable: keep every path of the folder rather than take a user's file for the stage's
    return PipelineError(f"cannot read the record of which files were there before the stage ran and which it "
                         f"wrote ({why})", path=path,
                         hint="restore it, or move the folder's files elsewhere and delete the folder")
