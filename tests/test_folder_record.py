"""One ownership record per output folder (`.stage-files.jsonl`): what was there before the stage
first ran and what the stage wrote, kept together through every rewrite; folders written by the
older layout (a second file, `.stage-preexisting.json`) are read the same and folded in once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_output_ownership import ONE_STAGE

from pipeline_tasks.errors import PipelineError, StageInputError
from pipeline_tasks.executor import OutputFolder
from pipeline_tasks.state import folder_record, folders

LEGACY = ".stage-preexisting.json"


def record_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / folder_record.RECORD_NAME).read_text().splitlines()]


def test_one_record_holds_what_was_there_before_and_what_the_stage_wrote(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("the user's")
    (out / "sub" / "old.txt").write_text("the user's")
    folders.take(str(out), str(tmp_path / "state"))
    stage = OutputFolder(out, stage_id="s", stage_type="t", version="1")
    stage.claim("sub", "made.txt").write_text("the stage's")
    with pytest.raises(StageInputError, match="did not write"):
        stage.claim("notes.txt")
    stage.finish()
    names = sorted(p.name for p in out.iterdir())
    assert names == [".stage-files.jsonl", ".stage.lock", "notes.txt", "sub"]     # no second record
    lines = record_lines(out)
    assert lines[0] == {"format": 2, "record": "stage-files"}
    assert {"before": ["notes.txt", "sub", "sub/old.txt"]} in lines
    assert {"file": "sub/made.txt"} in lines and {"stage": {"type": "t", "version": "1", "resume": None}} in lines
    assert folders.preexisting(str(out)) == {"notes.txt", "sub", "sub/old.txt"}
    assert folders.existed_before(str(out))
    # a later run of another version rewrites the stage's part; what was there before stays on record
    stage = OutputFolder(out, stage_id="s", stage_type="t", version="2")
    stage.finish()
    assert not (out / "sub" / "made.txt").exists() and (out / "sub" / "old.txt").read_text() == "the user's"
    assert folders.preexisting(str(out)) == {"notes.txt", "sub", "sub/old.txt"}


def test_a_folder_the_engine_made_has_nothing_before_and_may_be_removed(tmp_path):
    out = tmp_path / "new"
    folders.take(str(out), str(tmp_path / "state"))
    assert folders.preexisting(str(out)) == frozenset() and not folders.existed_before(str(out))
    assert not (out / folder_record.RECORD_NAME).exists()       # nothing written for an empty claim


def test_an_older_stage_folder_with_two_records_is_read_as_one_and_folded_in(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".stage.lock").write_text("{}")
    (out / "mine.txt").write_text("the user's")
    (out / "a.txt").write_text("the stage's")
    (out / LEGACY).write_text(json.dumps({"format": 1, "paths": ["mine.txt"]}))
    (out / folder_record.RECORD_NAME).write_text(
        json.dumps({"record": "stage-files", "type": "t", "version": "1", "resume": None}) + "\n"
        + json.dumps({"file": "a.txt"}) + "\n")
    stage = OutputFolder(out, stage_id="s", stage_type="t", version="1")
    assert stage.wrote_before("a.txt")             # the older header is this stage's: its files are kept
    with pytest.raises(StageInputError, match="did not write"):
        stage.claim("mine.txt")
    assert stage.finish() == ["a.txt"]              # not written this run: the stage's own, removed
    assert (out / "mine.txt").read_text() == "the user's"
    assert not (out / LEGACY).exists()
    assert {"before": ["mine.txt"]} in record_lines(out)
    assert folders.preexisting(str(out)) == {"mine.txt"} and folders.existed_before(str(out))


def test_a_run_and_clean_on_an_older_folder_keep_the_users_files(ws):
    out = ws.root / "out"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("the user's notes")
    (out / "sub" / "old.txt").write_text("the user's old file")
    (out / ".stage.lock").write_text("{}")          # claimed by a run of the older layout
    (out / LEGACY).write_text(json.dumps({"format": 1, "paths": ["notes.txt", "sub", "sub/old.txt"]}))
    ws.write("p.yaml", ONE_STAGE % "out")
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    manifest = json.loads((out / ".stage.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["made.txt", "sub/x.txt"]
    assert not (out / LEGACY).exists() and {"before": ["notes.txt", "sub", "sub/old.txt"]} in record_lines(out)
    ws.cli("doit", "p.yaml", "--", "clean", "make", check=True)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [".stage-files.jsonl", ".stage.lock", "notes.txt", "sub", "sub/old.txt"]


@pytest.mark.parametrize("content", ["not json\n", json.dumps({"record": "stage-files", "format": 2}) + "\n"
                                     + json.dumps({"before": "notes.txt"}) + "\n"])
def test_a_damaged_record_is_an_error_not_an_empty_one(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    (out / folder_record.RECORD_NAME).write_text(content)
    with pytest.raises(PipelineError, match="cannot read the record"):
        folders.preexisting(str(out))
    with pytest.raises(StageInputError, match="cannot read the record"):
        OutputFolder(out, stage_id="s", stage_type="t", version="1")
    assert (out / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"state_dir": 5}', '{"state_dir": ""}'])
def test_a_lock_file_that_names_no_state_directory_names_no_writer(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / folders.LOCK_NAME).write_text(content)
    assert folders.writer(str(out)) is None
    folders.take(str(out), str(tmp_path / "state"))          # taken: the lock file names this run
    assert folders.writer(str(out)) == str(tmp_path / "state")
