"""State is keyed by what the pipeline is (its declared name), not where its file lies: moving the
project, renaming or copying the pipeline file leaves every stage up to date, and a pipeline id
works from another directory."""
from __future__ import annotations

import json
import shutil

from conftest import Workspace

CHAIN = """
pipeline: {name: chain, version: "1"}
stages:
  - id: first
    type: custom
    config:
      output_dir: out/first
      command: "echo one > {output_dir}/one.txt; echo first >> runs.log"
  - id: second
    type: custom
    depends_on: [first]
    config:
      output_dir: out/second
      command: "cat out/first/one.txt > {output_dir}/two.txt; echo second >> runs.log"
"""


def _project(root) -> Workspace:
    ws = Workspace(root)
    ws.write("pipelines/chain.yaml", CHAIN)
    ws.cli("run", "pipelines/chain.yaml", "--no-progress", check=True)
    assert ws.runs() == ["first", "second"]
    ws.reset_runs()
    return ws


def test_a_moved_project_is_up_to_date(tmp_path):
    ws = _project(tmp_path / "here")
    moved = Workspace(tmp_path / "elsewhere" / "project")
    moved.root.parent.mkdir()
    shutil.move(ws.root, moved.root)
    out = moved.cli("run", "pipelines/chain.yaml", "--no-progress", check=True)
    assert moved.runs() == [], out.stdout
    assert "0 stage(s) run, 2 up to date" in out.stdout


def test_a_copied_project_with_new_mtimes_is_up_to_date(tmp_path):
    ws = _project(tmp_path / "here")
    copy = Workspace(tmp_path / "clone")
    shutil.copytree(ws.root, copy.root, copy_function=shutil.copy)      # contents only: new mtimes
    copy.cli("run", "pipelines/chain.yaml", "--no-progress", check=True)
    assert copy.runs() == []


def test_renaming_or_copying_the_pipeline_file_keeps_its_state(tmp_path):
    ws = _project(tmp_path)
    (ws.root / "pipelines/chain.yaml").rename(ws.root / "chain-renamed.yaml")
    ws.cli("run", "chain-renamed.yaml", "--no-progress", check=True)
    shutil.copy(ws.root / "chain-renamed.yaml", ws.root / "pipelines" / "copy.yaml")
    ws.cli("run", "pipelines/copy.yaml", "--no-progress", check=True)
    assert ws.runs() == []
    assert [p.name for p in ws.state_dirs()] == ["chain"]
    # an edit still reruns what it touches
    (ws.root / "pipelines/copy.yaml").write_text(CHAIN.replace("echo one", "echo uno"))
    ws.cli("run", "pipelines/copy.yaml", "--no-progress", check=True)
    assert ws.runs() == ["first", "second"]


def test_a_pipeline_id_works_from_another_directory(tmp_path):
    ws = _project(tmp_path / "project")
    (ws.root / "out/second/two.txt").unlink()
    elsewhere = Workspace(tmp_path / "elsewhere")
    elsewhere.root.mkdir()
    state = str(ws.root / ".pipeline")
    status = elsewhere.cli("--state-dir", state, "status", "chain", check=True)
    assert status.stdout.startswith("chain: ")
    elsewhere.cli("--state-dir", state, "run", "chain", "--no-progress", check=True)
    # it ran in the project folder, where the pipeline's relative paths point
    assert ws.runs() == ["second"]
    assert (ws.root / "out/second/two.txt").read_text() == "one\n"
    assert not (elsewhere.root / "out").exists() and not (elsewhere.root / ".pipeline").exists()


def test_status_after_a_no_op_rerun_describes_the_run_that_made_the_outputs(tmp_path):
    ws = _project(tmp_path)
    first = {s["stage_id"]: s for s in json.loads(ws.cli("status", "pipelines/chain.yaml", "--json",
                                                          check=True).stdout)["stages"]}
    assert {s["produced_by"] for s in first.values()} == {"latest"}
    ws.cli("run", "pipelines/chain.yaml", "--no-progress", check=True)
    assert ws.runs() == []
    status = json.loads(ws.cli("status", "pipelines/chain.yaml", "--json", check=True).stdout)
    for stage in status["stages"]:
        made = first[stage["stage_id"]]
        assert stage["state"] == "up to date" and stage["produced_by"] == "earlier"
        assert (stage["started"], stage["finished"], stage["duration"], stage["attempts"]) == \
            (made["started"], made["finished"], made["duration"], made["attempts"])
        assert stage["duration"] > 0 and stage["version"] == "1"
        assert stage["params"]["output_dir"] == f"out/{stage['stage_id']}"
        assert stage["inputs"] is not None
    assert json.loads((ws.root / "pipelines/chain.lock.json").read_text())["stages"]["second"]["upstream"] == \
        status["stages"][1]["inputs"]["upstream"]
    text = ws.cli("status", "pipelines/chain.yaml", check=True).stdout
    assert f"up to date first  {first['first']['duration']:.2f}s" in text


def test_the_report_after_a_no_op_rerun_shows_the_durations_of_the_run_that_made_the_outputs(tmp_path):
    ws = _project(tmp_path)
    made = {s["stage_id"]: s["duration"] for s in json.loads(
        ws.cli("status", "pipelines/chain.yaml", "--json", check=True).stdout)["stages"]}
    ws.cli("run", "pipelines/chain.yaml", "--no-progress", check=True)
    html = (tmp_path / "report.html")
    ws.cli("report", "pipelines/chain.yaml", "-o", str(html), check=True)
    text = html.read_text()
    from pipeline_tasks.report import fmt
    for duration in made.values():
        assert f'class="dag-state">up to date · {fmt.duration(duration)}</text>' in text
    assert 'class="timeline-bar"' not in text         # nothing ran in the latest run: no bars
