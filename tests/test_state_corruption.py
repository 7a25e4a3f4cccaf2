"""State files that are damaged, cut short, of the wrong shape or on a full disk: each gives a
message that names the file and says what to do, or is tolerated where that is right; never a
traceback, never a pipeline that stays wedged."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

CHAIN = """
pipeline: {name: chain, version: "1"}
stages:
  - id: first
    type: custom
    config: {callable: "engine_callables:write_text", args: {text: one}, output_dir: out/first}
  - id: second
    type: custom
    depends_on: [first]
    config: {callable: "engine_callables:write_text", args: {text: two}, output_dir: out/second}
"""


def rel(path: Path) -> str:
    """How the CLI names a state file: relative to the working directory, as the state root is."""
    return os.path.relpath(path)


def run(ws, *extra, check=True):
    proc = ws.cli("run", "p.yaml", "--no-progress", *extra, check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def status(ws) -> dict:
    proc = ws.cli("status", "p.yaml", "--json", check=True)
    return {s["stage_id"]: s["state"] for s in json.loads(proc.stdout)["stages"]}


@pytest.fixture
def chain(ws):
    ws.write("p.yaml", CHAIN)
    run(ws)
    ws.reset_runs()
    (state,) = ws.state_dirs()
    return state


# -- manifests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "empty", "wrong shape"])
def test_a_damaged_manifest_means_the_stage_is_not_done(ws, chain, damage):
    manifest = ws.root / "out/first/.stage.json"
    text = manifest.read_text()
    manifest.write_text({"truncate": text[: len(text) // 2], "empty": "",
                         "wrong shape": json.dumps({"outputs": {}, "files": [{"path": "out.txt"}]})}[damage])
    assert status(ws)["first"] == "pending"
    run(ws)
    assert ws.runs() == ["first"]            # repaired; `second` sees the same output: early cutoff
    assert json.loads(manifest.read_text())["files"][0]["path"] == "out.txt"
    assert status(ws) == {"first": "success", "second": "up to date"}


def test_run_stage_repairs_the_damaged_manifest_of_an_upstream_stage(ws, chain):
    (ws.root / "out/first/.stage.json").write_text("{")
    run(ws, "--stage", "second")
    assert ws.runs() == ["first"]
    assert status(ws) == {"first": "success", "second": "up to date"}


def test_an_output_edited_in_place_at_the_same_size_is_noticed(ws, chain):
    out = ws.root / "out/first/out.txt"
    assert out.read_text() == "one"
    out.write_text("ONE")                     # same size, new content
    assert status(ws)["first"] == "stale"
    run(ws)
    assert ws.runs() == ["first"] and out.read_text() == "one"


def test_an_output_touched_but_unchanged_is_still_up_to_date(ws, chain):
    out = ws.root / "out/first/out.txt"
    os.utime(out, (1_000_000, 1_000_000))
    run(ws)
    assert ws.runs() == []


def test_a_manifest_that_cannot_be_removed_fails_the_stage_with_its_report(ws):
    ws.write("p.yaml", CHAIN)
    (ws.root / "out/first/.stage.json").mkdir(parents=True)      # not removable with unlink
    proc = run(ws, check=False)
    assert proc.returncode == 1
    assert "cannot remove its previous manifest before running (Is a directory)" in proc.stderr
    (state,) = ws.state_dirs()
    report = (state / "errors/first.txt").read_text()
    assert "out/first/.stage.json" in report
    assert status(ws) == {"first": "failed", "second": "blocked"}


# -- doit's database and its journal --------------------------------------------------------------------
def test_a_garbage_database_gives_a_message_naming_it(ws, chain):
    db = chain / "doit.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    for command in (["run", "p.yaml", "--no-progress"], ["plan", "p.yaml"], ["doit", "p.yaml", "--", "list"]):
        proc = ws.cli(*command)
        assert proc.returncode == 1, (command, proc.stderr)
        assert f"{rel(db)}: doit's database is damaged" in proc.stderr and "delete it" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert set(status(ws).values()) == {"stale"}          # status still answers: no record, nothing current
    db.unlink()
    Path(f"{db}-journal.jsonl").unlink(missing_ok=True)
    run(ws)
    assert ws.runs() == ["first", "second"]


@pytest.mark.parametrize("line", [b'[1, 2]\n', b'"x"\n', b'{}\n', b'["first", 5]\n', b'["first", {"_values_:": 3}]\n',
                                  b'\xff\xfe not utf-8\n', b'["first", {"deps:"'])
def test_a_damaged_journal_line_is_skipped_with_a_warning(ws, chain, line):
    journal = chain / "doit.sqlite-journal.jsonl"
    journal.write_bytes(line)
    proc = run(ws)
    assert f"warning: {rel(journal)}:1:" in proc.stderr and "skipped" in proc.stderr
    assert ws.runs() == []                    # the database knew both stages already
    run(ws)                                   # and every later run is fine
    assert journal.read_bytes() == b""


# -- checkpoint, events, run record ---------------------------------------------------------------------
@pytest.mark.parametrize("content", ["[]", '{"pipeline_id": 3}', '{"pipeline_id": "x", "completed_stages": "ab"}',
                                     '{"pipeline_id": "x", "stage_outputs": {"a": 1}}', "not json"])
def test_a_wrong_shaped_checkpoint_gives_a_message_naming_it(ws, chain, content):
    from pipeline_tasks import PipelineError, PipelineOrchestrator
    checkpoint = chain / "checkpoint.json"
    checkpoint.write_text(content)
    with pytest.raises(PipelineError, match="not a checkpoint file .*delete it") as caught:
        PipelineOrchestrator().resume_from_checkpoint(checkpoint)
    assert caught.value.path == str(checkpoint)
    proc = ws.cli("resume", str(checkpoint))
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    assert str(checkpoint) in proc.stderr      # a .json that is no checkpoint is read as a pipeline file
    ws.cli("report", "p.yaml", check=True)
    run(ws)                                   # a run writes a good one again
    assert json.loads(checkpoint.read_text())["completed_stages"] == ["first", "second"]


def test_events_that_are_not_utf8_or_not_objects_are_skipped_by_status_and_report(ws, chain):
    with open(chain / "events.jsonl", "ab") as fh:
        fh.write(b'\xff\xfe\xfd garbage\n[1, 2]\n{"type": 7}\n{"type": "pipeline.stage_completed", "stage_id": 5}\n'
                 b'{"type": "pipeline.stage_completed", "stage_id": "first", "duration": "long", "attempts": "x"}\n')
    assert status(ws) == {"first": "success", "second": "success"}
    ws.cli("report", "p.yaml", check=True)
    ws.cli("status", "p.yaml", check=True)


@pytest.mark.parametrize("content", ["[1]", "null", '{"state": 5, "events_offset": "x"}'])
def test_a_wrong_shaped_run_record_is_tolerated(ws, chain, content):
    (chain / "pipeline.json").write_text(content)
    proc = ws.cli("status", "p.yaml", check=True)
    assert "Traceback" not in proc.stderr
    run(ws)


# -- a full disk under the state directory ----------------------------------------------------------------
def test_a_full_disk_under_the_state_directory_names_the_file(ws, chain):
    lock = chain / "lock"
    lock.unlink()
    os.symlink("/dev/full", lock)             # every write there fails with ENOSPC, like a full disk
    proc = run(ws, check=False)
    assert proc.returncode == 1
    assert f"{rel(lock)}: cannot write the run lock: No space left on device (free space on that disk" in proc.stderr
    lock.unlink()
    events = chain / "events.jsonl"
    events.unlink()
    os.symlink("/dev/full", events)
    proc = run(ws, check=False)
    assert proc.returncode == 1
    assert f"{rel(events)}: cannot write a state file: No space left on device" in proc.stderr
    events.unlink()
    run(ws)


def test_a_full_disk_for_the_error_report_keeps_the_stage_error(ws):
    ws.write("p.yaml", """
        pipeline: {name: broken, version: "1"}
        stages:
          - {id: bad, type: custom, config: {callable: "engine_callables:broken", output_dir: out/bad}}
    """)
    run(ws, check=False)
    (state,) = ws.state_dirs()
    report = state / "errors/bad.txt"
    report.unlink()
    os.symlink("/dev/full", report)
    proc = run(ws, check=False)
    assert proc.returncode == 1
    assert "ValueError: bad things" in proc.stderr
    assert "could not be recorded: [Errno 28] No space left on device: '" in proc.stderr
    assert f"{rel(report)}')" in proc.stderr


def test_status_reads_a_damaged_database_as_no_record(tmp_path):
    from pipeline_tasks.engine.status import recorded_values
    db = tmp_path / "doit.sqlite"
    db.write_bytes(b"\0" * 4096)
    assert recorded_values(db) == {}
    sqlite3.connect(tmp_path / "ok.sqlite").close()
    assert recorded_values(tmp_path / "ok.sqlite") == {}
