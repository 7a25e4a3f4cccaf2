"""A doit DB backend that makes each task's success durable the moment doit records it.

doit keeps its database in memory and writes it only when a run ends (`Dependency.close`), so a
`kill -9` or the OOM killer in the middle of a run forgets every task that run finished. This
backend is doit's own sqlite3 backend plus a journal beside it (`<db>-journal.jsonl`): doit's
`Dependency.save_success` always sets `deps:` last, so that call marks a task's record complete and
its whole record is appended to the journal with one `write` (as are `ignore` and `forget`). When
the run ends, doit writes the records into sqlite as usual and the journal is emptied; when it
does not, the next open replays the journal into sqlite first (a line that does not parse is
skipped with a warning). A journal line is one append, ~40x
cheaper than a sqlite commit per task. An appended line survives a killed process (not a power cut;
set PIPELINE_TASKS_FSYNC=1 to fsync each line and run sqlite with synchronous=FULL).
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from typing import Any

from doit.dependency import JSONCodec, SqliteDB

from ..errors import PipelineError
from ..state.paths import AbortRun, holds_run_lock, state_write_error


def journal_path(db_path: str | os.PathLike) -> str:
    return os.fspath(db_path) + "-journal.jsonl"


def read_journal(db_path: str | os.PathLike, warn: bool = True) -> Iterator[tuple[str, Any]]:
    """(task_id, record or None for a removal) for each good journal line, oldest first. A line
    that is not `[task id, record object or null]` (the torn last line of a writer killed mid-line,
    or damage) is skipped, with a warning on stderr when `warn`: the stage it recorded counts as not
    run, and runs again."""
    path = journal_path(db_path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for number, line in enumerate(fh, 1):
            entry = _journal_entry(line)
            if entry is None:
                if warn:
                    what = "an incomplete last line" if not line.endswith(b"\n") else "a damaged line"
                    sys.stderr.write(f"warning: {path}:{number}: {what}, skipped (the stage it recorded will run "
                                     f"again)\n")
                continue
            yield entry


def _journal_entry(line: bytes) -> tuple[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
        return None
    record = entry[1]
    if record is not None and not (isinstance(record, dict) and isinstance(record.get("_values_:", {}), dict)):
        return None
    return entry[0], record


_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")


def check_database(db_path: str | os.PathLike) -> None:
    """PipelineError naming the file when doit's database is there but is not a database (or a
    damaged one): doit's own message comes with a traceback, from deep inside a run."""
    if not os.path.exists(db_path):
        return
    try:
        read_records(db_path)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", None) not in _DAMAGED:
            return                      # busy, locked …: doit waits or says so itself
        raise PipelineError(f"doit's database is damaged ({exc})", path=db_path,
                            hint="delete it and its -journal.jsonl, -wal and -shm files: stages then run once "
                                 "more and rebuild their outputs") from None


def read_records(db_path: str | os.PathLike) -> list[tuple[str, str]]:
    """(task id, JSON record) of every row of doit's database, read without writing where it can
    be: read-only first; a database left in WAL mode by a killed writer needs a recovery only a
    writable connection makes (it changes no record)."""
    for uri in (f"file:{db_path}?mode=ro", f"file:{db_path}"):
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5)
            try:
                return conn.execute("select task_id, task_data from doit").fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", None) not in ("SQLITE_READONLY", "SQLITE_READONLY_RECOVERY",
                                                               "SQLITE_CANTOPEN"):
                raise
    return []


class DurableSqliteDB(SqliteDB):
    desc = "sqlite3 plus a journal: each task's record is durable when the task finishes (survives kill -9)"

    def __init__(self, name, codec, *, module_name=None):
        directory = os.path.dirname(os.path.abspath(name))
        os.makedirs(directory, exist_ok=True)
        super().__init__(name, codec, module_name=module_name)
        self._fsync = os.environ.get("PIPELINE_TASKS_FSYNC") == "1"
        self._conn.execute("PRAGMA journal_mode=WAL")     # `status` reads while a run writes
        self._conn.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        self._journal = journal_path(name)
        self._fd: int | None = None
        # a record's text as journalled, which the dump writes into sqlite as it is (doit's codec
        # encodes the same JSON): one encoding a task
        self._encoded: dict[str, str] = {}
        self._reuse_text = type(codec) is JSONCodec
        # what a killed run left: read into the cache, written to sqlite by the next writer's dump
        self._replayed: dict[str, Any] = {}
        self._removed: set[str] = set()
        self._preloaded = False         # every record is in the cache: one that is not has none
        for task_id, record in read_journal(name):
            if record is None:
                self._replayed.pop(task_id, None)
                self._removed.add(task_id)
                self._cache[task_id] = {}
            else:
                self._replayed[task_id] = self._cache[task_id] = record
                self._removed.discard(task_id)

    def preload(self) -> None:
        """Every record of the database into the cache with one query, for a reader that asks about
        every task (`plan`, a run of the whole pipeline): doit's own look-ups query once per
        question. What the journal replayed, or removed, stays as it says."""
        cursor = self._conn.cursor()
        cursor.row_factory = None           # plain rows: doit's dict for each costs more than the row
        for task_id, data in cursor.execute("select task_id, task_data from doit"):
            if task_id not in self._cache and task_id not in self._removed:
                self._cache[task_id] = data
        self._preloaded = True

    def _get_task_data(self, task_id):
        if self._preloaded:             # a task never run (every task of a first run): no query
            return {}
        return super()._get_task_data(task_id)

    def _append(self, task_id: str, record: Any) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            text = json.dumps(record)
            if self._reuse_text and record is not None:
                self._encoded[task_id] = text
            os.write(self._fd, f"[{json.dumps(task_id)}, {text}]\n".encode())
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:      # inside doit: only a BaseException reaches the caller without a traceback
            raise AbortRun(state_write_error(self._journal, f"the record of stage '{task_id}'", exc)) from None

    def in_(self, task_id):
        if task_id in self._removed:
            return False
        return task_id in self._cache if self._preloaded else super().in_(task_id)

    def set(self, task_id, dependency, value):
        super().set(task_id, dependency, value)
        self._encoded.pop(task_id, None)
        self._removed.discard(task_id)
        if dependency in ("deps:", "ignore:"):
            self._append(task_id, self._cache[task_id])

    def remove(self, task_id):
        super().remove(task_id)
        self._encoded.pop(task_id, None)
        self._replayed.pop(task_id, None)
        self._append(task_id, None)

    def remove_all(self):
        super().remove_all()
        self._encoded.clear()
        self._conn.commit()
        self._replayed.clear()
        self._removed.clear()
        if os.path.exists(self._journal):
            os.truncate(self._journal, 0)

    def dump(self):
        """doit's dump (every changed record into sqlite, one commit). Only the run (the process
        that holds the run lock, or wrote records) also takes over what it replayed and empties the
        journal, damaged lines included; a reader such as `doit list` during a run leaves both
        alone."""
        if self._fd is None and not holds_run_lock(os.path.dirname(os.path.abspath(self.name))):
            self._conn.close()
            return
        for task_id in self._removed:
            self._conn.execute("delete from doit where task_id=?", (task_id,))
        self._dirty.update(self._replayed)
        for task_id in self._dirty:        # doit's dump, with the text each record was journalled as
            text = self._encoded.get(task_id)
            if text is None:
                text = self.codec.encode(self._cache[task_id])
            self._conn.execute("insert or replace into doit values (?,?)", (task_id, text))
        self._conn.commit()
        self._conn.close()
        self._dirty = set()
        if os.path.exists(self._journal):
            os.truncate(self._journal, 0)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
