"""The durable backend's journal: what a killed run leaves is read back, readers never empty it,
and the next run's end moves it into sqlite."""
from __future__ import annotations

import json
import os
import sqlite3

from doit.dependency import JSONCodec

from pipeline_tasks.engine.durable_backend import DurableSqliteDB, journal_path, read_journal


def rows(db) -> dict:
    conn = sqlite3.connect(db)
    try:
        return {task: json.loads(data) for task, data in conn.execute("select task_id, task_data from doit")}
    finally:
        conn.close()


def record(backend, task, value):
    backend.set(task, "_values_:", {"v": value})
    backend.set(task, "deps:", [])          # doit sets `deps:` last: the record is complete


def test_killed_run_is_read_back_and_moved_into_sqlite_by_the_next_writer(tmp_path):
    db = str(tmp_path / "doit.sqlite")
    killed = DurableSqliteDB(db, JSONCodec())
    record(killed, "a", 1)
    record(killed, "b", 2)
    killed.remove("b")                     # `doit forget b`
    record(killed, "c", 3)
    killed._conn.close()                   # the process died: no dump, its transaction rolled back
    os.close(killed._fd)
    assert rows(db) == {}
    assert [task for task, _ in read_journal(db)] == ["a", "b", "b", "c"]
    # a torn last line (killed mid-write) is skipped
    with open(journal_path(db), "a") as fh:
        fh.write('["d", {"_values_:": {"v"')

    reader = DurableSqliteDB(db, JSONCodec())             # e.g. `doit list` during a run
    assert reader.get("a", "_values_:") == {"v": 1}
    assert reader.get("b", "_values_:") is None
    assert reader.in_("a") and not reader.in_("b")         # forgotten: as if never run
    assert reader.get("c", "_values_:") == {"v": 3}
    assert reader.get("d", "_values_:") is None
    reader.dump()
    assert rows(db) == {} and os.path.getsize(journal_path(db)) > 0    # a reader moves nothing

    writer = DurableSqliteDB(db, JSONCodec())             # the next run
    record(writer, "e", 5)
    writer.dump()
    assert sorted(rows(db)) == ["a", "c", "e"]
    assert rows(db)["a"]["_values_:"] == {"v": 1}
    assert os.path.getsize(journal_path(db)) == 0
    assert DurableSqliteDB(db, JSONCodec()).get("c", "_values_:") == {"v": 3}


def test_a_record_is_in_the_journal_once_doit_sets_its_deps(tmp_path):
    db = str(tmp_path / "doit.sqlite")
    backend = DurableSqliteDB(db, JSONCodec())
    backend.set("a", "_values_:", {"v": 1})
    assert list(read_journal(db)) == []                   # not complete yet
    backend.set("a", "deps:", [])
    assert list(read_journal(db)) == [("a", {"_values_:": {"v": 1}, "deps:": []})]


def test_preloading_reads_every_record_at_once_and_keeps_what_the_journal_says(tmp_path):
    db = str(tmp_path / "doit.sqlite")
    first = DurableSqliteDB(db, JSONCodec())
    for task, value in (("a", 1), ("b", 2), ("c", 3)):
        record(first, task, value)
    first.dump()
    killed = DurableSqliteDB(db, JSONCodec())             # a later run, killed after two changes
    record(killed, "a", 10)
    killed.remove("b")
    killed._conn.close()
    os.close(killed._fd)

    reader = DurableSqliteDB(db, JSONCodec())             # e.g. `plan`
    reader.preload()
    assert not reader.in_("never-run")
    reader._conn.close()                                  # from here on, no query can answer
    assert reader.get("a", "_values_:") == {"v": 10}       # the journal's, not sqlite's
    assert not reader.in_("b") and reader.get("b", "_values_:") is None
    assert reader.in_("c") and reader.get("c", "_values_:") == {"v": 3}
    # nor about a task that has no record (each of a first run's): the preload read them all
    assert reader.get("never-run", "_values_:") is None and not reader.in_("new")
