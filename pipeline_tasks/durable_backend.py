"""A doit DB backend that makes each task's success durable the moment doit records it.

doit keeps its database in memory and writes it only when a run ends (`Dependency.close`), so a
`kill -9` or the OOM killer in the middle of a run forgets every task that run finished. This
backend is doit's own sqlite3 backend with two changes: the database is in WAL mode, and each
task's row is written and committed as soon as doit finishes recording it. doit's
`Dependency.save_success` always sets `deps:` last, so that call marks a task's record complete;
`ignore` and `remove` are committed at once too. A commit in WAL mode with synchronous=NORMAL
survives a killed process (not a power cut; set PIPELINE_TASKS_FSYNC=1 for synchronous=FULL).
"""
from __future__ import annotations

import os

from doit.dependency import SqliteDB


class DurableSqliteDB(SqliteDB):
    desc = "sqlite3, each task's record committed when the task finishes (survives kill -9)"

    def __init__(self, name, codec, *, module_name=None):
        directory = os.path.dirname(os.path.abspath(name))
        os.makedirs(directory, exist_ok=True)
        super().__init__(name, codec, module_name=module_name)
        sync = "FULL" if os.environ.get("PIPELINE_TASKS_FSYNC") == "1" else "NORMAL"
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={sync}")

    def _flush(self, task_id: str) -> None:
        self._conn.execute("insert or replace into doit values (?,?)",
                           (task_id, self.codec.encode(self._cache[task_id])))
        self._conn.commit()
        self._dirty.discard(task_id)

    def set(self, task_id, dependency, value):
        super().set(task_id, dependency, value)
        if dependency in ("deps:", "ignore:"):
            self._flush(task_id)

    def remove(self, task_id):
        super().remove(task_id)
        self._conn.commit()

    def remove_all(self):
        super().remove_all()
        self._conn.commit()
