"""Incremental reruns: config changes, early cutoff, deleted outputs, plan reasons."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline_tasks import (
    OrchestratorConfig,
    PipelineBuilder,
    PipelineOrchestrator,
    PipelineState,
    StageExecutor,
    register_stage_executor,
)
from pipeline_tasks.engine.durable_backend import DurableSqliteDB

CHAIN = """
pipeline:
  name: chain
  version: "1"
stages:
  - id: a
    type: custom
    config:
      callable: "engine_callables:write_text"
      args: {{text: "{a}", note: "{note}"}}
      output_dir: out/a
  - id: b
    type: custom
    depends_on: [a]
    config:
      callable: "engine_callables:write_text"
      args: {{text: "{b}"}}
      output_dir: out/b
  - id: c
    type: custom
    depends_on: [b]
    config:
      callable: "engine_callables:write_text"
      args: {{text: "c"}}
      output_dir: out/c
  - id: side
    type: custom
    depends_on: [a]
    config:
      callable: "engine_callables:write_text"
      args: {{text: "side"}}
      output_dir: out/side
"""


def run(ws, a="alpha", b="beta", note="n1"):
    path = ws.write("chain.yaml", CHAIN.format(a=a, b=b, note=note))
    pipeline = PipelineBuilder().load_from_yaml(path)
    ws.reset_runs()
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)
    assert result.status == PipelineState.COMPLETED, result.error_message
    return result


def test_first_run_executes_all_and_rerun_nothing(ws):
    first = run(ws)
    assert sorted(ws.runs()) == ["a", "b", "c", "side"]
    assert sorted(first.executed) == ["a", "b", "c", "side"]
    assert (ws.root / "out/c/out.txt").read_text() == "c|BETA|ALPHA"
    second = run(ws)
    assert ws.runs() == []
    assert sorted(second.up_to_date) == ["a", "b", "c", "side"]


def test_a_run_of_the_whole_pipeline_reads_the_records_of_doit_with_one_query(ws, monkeypatch):
    """doit asks its database about every task, one query each; a run of the whole pipeline reads
    every record at once instead (`DurableSqliteDB.preload`), a run of chosen stages only theirs."""
    run(ws)
    asked = []
    one_by_one = DurableSqliteDB._get_task_data
    monkeypatch.setattr(DurableSqliteDB, "_get_task_data",
                        lambda self, task: asked.append(task) or one_by_one(self, task))
    second = run(ws)
    assert sorted(second.up_to_date) == ["a", "b", "c", "side"]
    assert asked == []
    pipeline = PipelineBuilder().load_from_yaml(ws.root / "chain.yaml")
    chosen = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline, stages=["c"])
    assert sorted(chosen.up_to_date) == ["a", "b", "c"]
    assert sorted(set(asked)) == ["a", "b", "c"]


def test_config_change_reruns_stage_and_changed_dependents_only(ws):
    run(ws)
    run(ws, b="BETA2")
    # b's config changed: b reruns; its output changed so c reruns; a and side do not
    assert sorted(ws.runs()) == ["b", "c"]
    assert (ws.root / "out/c/out.txt").read_text() == "c|BETA2|ALPHA"


def test_early_cutoff_identical_output_does_not_rerun_dependents(ws):
    run(ws)
    run(ws, note="a different note")     # changes a's config but not what a writes
    assert ws.runs() == ["a"]


def test_upstream_output_change_reruns_whole_branch(ws):
    run(ws)
    run(ws, a="ALPHA-2")
    assert sorted(ws.runs()) == ["a", "b", "c", "side"]


def test_deleted_output_file_reruns_its_stage(ws):
    run(ws)
    (ws.root / "out/b/out.txt").unlink()
    run(ws)
    # b rewrites identical content, so c stays up to date (early cutoff)
    assert ws.runs() == ["b"]
    assert (ws.root / "out/b/out.txt").exists()


def test_deleted_manifest_reruns_its_stage(ws):
    run(ws)
    (ws.root / "out/side/.stage.json").unlink()
    run(ws)
    assert ws.runs() == ["side"]


def test_manifest_is_deterministic_and_lists_files(ws):
    run(ws)
    first = (ws.root / "out/b/.stage.json").read_bytes()
    run(ws, note="other")
    assert (ws.root / "out/b/.stage.json").read_bytes() == first
    manifest = json.loads(first)
    assert manifest["stage_id"] == "b" and manifest["type"] == "custom" and manifest["version"] == "1"
    assert [f["path"] for f in manifest["files"]] == ["out.txt"]
    assert manifest["outputs"] == {"chars": len("beta") + len("ALPHA"), "output_dir": "out/b"}


class StampedCopy(StageExecutor):
    """Writes a fixed text and reports the wall-clock time it ran at as a metric."""
    type_name = "stamped_copy"
    version = "3"
    config_schema = {"output_dir": {"type": "string"}, "text": {"type": "string"}, "note": {"type": "string"}}

    def execute(self, inputs):
        with open("runs.log", "a") as fh:
            fh.write(self.stage_id + "\n")
        Path(self.output_dir()).mkdir(parents=True, exist_ok=True)
        Path(self.output_dir(), "out.txt").write_text(self.config["text"])
        return self.result(metrics={"ran_at": time.time()})


def test_metrics_are_in_the_manifest_but_do_not_defeat_early_cutoff(ws):
    """The manifest records the executor version and the run's metrics (they change every run);
    dependents compare only what the stage produced."""
    register_stage_executor("stamped_copy", StampedCopy)
    text = """
pipeline: {{name: stamped, version: "1"}}
stages:
  - id: a
    type: stamped_copy
    config: {{output_dir: out/a, text: same, note: "{note}"}}
  - id: b
    type: custom
    depends_on: [a]
    config: {{callable: "engine_callables:write_text", output_dir: out/b}}
"""
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    manifests = []
    for note in ("one", "two"):
        ws.reset_runs()
        pipeline = PipelineBuilder().load_from_yaml(ws.write("stamped.yaml", text.format(note=note)))
        assert orchestrator.execute_pipeline(pipeline).status == PipelineState.COMPLETED
        manifests.append(json.loads((ws.root / "out/a/.stage.json").read_text()))
    assert ws.runs() == ["a"]                       # a reran (config changed), b did not
    first, second = manifests
    assert first["version"] == "3" and set(first["metrics"]) == {"ran_at", "usage"}   # usage: what the run used
    assert first["metrics"] != second["metrics"]
    run_facts = ("metrics", "duration")          # what may differ between two runs with the same output
    assert {k: v for k, v in first.items() if k not in run_facts} == \
        {k: v for k, v in second.items() if k not in run_facts}
    # a changed output still reruns the dependent
    ws.reset_runs()
    changed = text.format(note="two").replace("same", "new")
    pipeline = PipelineBuilder().load_from_yaml(ws.write("stamped.yaml", changed))
    assert orchestrator.execute_pipeline(pipeline).status == PipelineState.COMPLETED
    assert ws.runs() == ["a", "b"]


def test_plan_explains_why(ws):
    run(ws)
    ws.write("chain.yaml", CHAIN.format(a="alpha", b="changed", note="n1"))
    (ws.root / "out/side/out.txt").unlink()
    ws.reset_runs()
    proc = ws.cli("plan", "chain.yaml", "--json", check=True)
    plan = {e["stage_id"]: e for e in json.loads(proc.stdout)}
    assert not plan["a"]["will_run"]
    assert plan["b"]["reasons"] == ["config changed"]
    # early cutoff: c runs only if b's output changes, and plan says so
    assert not plan["c"]["will_run"] and plan["c"]["may_run"]
    assert plan["c"]["reasons"] == ["upstream 'b' will run; this stage runs only if that changes its input"]
    assert plan["side"]["reasons"] == ["output missing or changed"]
    # plan is a dry run: nothing executed
    assert ws.runs() == []


def test_plan_before_any_run_says_never_run(ws):
    ws.write("chain.yaml", CHAIN.format(a="a", b="b", note="n"))
    proc = ws.cli("plan", "chain.yaml", check=True)
    assert "4 of 4 stage(s) would run" in proc.stdout
    assert proc.stdout.count("never run") == 4


def test_execution_plan_groups(ws):
    path = ws.write("chain.yaml", CHAIN.format(a="a", b="b", note="n"))
    builder = PipelineBuilder()
    pipeline = builder.load_from_yaml(path)
    assert builder.build_execution_plan(pipeline) == [["a"], ["b", "side"], ["c"]]
    assert builder.validate_dag(pipeline) is True
