"""Python API, stage registry (register_stage_executor and the entry-point group), graph output."""
from __future__ import annotations

import textwrap

import pytest

from pipeline_tasks import (
    ExecutionStatus,
    OrchestratorConfig,
    PipelineBuilder,
    PipelineOrchestrator,
    PipelineState,
    StageExecutor,
    register_stage_executor,
)
from pipeline_tasks.report.graph_text import to_dot, to_mermaid
from pipeline_tasks.spec.registry import available_types, get_executor_class


class WordCount(StageExecutor):
    type_name = "word_count"
    version = "3"
    config_schema = {"input": {"type": "string", "required": True},
                     "output_dir": {"type": "string", "required": True},
                     "lower": {"type": "boolean", "default": True}}

    def input_files(self):
        return [self.config["input"]]

    def execute(self, inputs):
        import collections
        from pathlib import Path
        words = open(self.config["input"]).read().split()
        if self.config["lower"]:
            words = [w.lower() for w in words]
        counts = collections.Counter(words)
        Path(self.output_dir()).mkdir(parents=True, exist_ok=True)
        Path(self.output_dir(), "counts.txt").write_text(
            "".join(f"{w} {n}\n" for w, n in sorted(counts.items())))
        self.progress(len(words), len(words), unit="words")
        return self.result(outputs={"distinct": len(counts)}, metrics={"words": len(words)})


PIPELINE = {
    "pipeline": {"name": "api", "version": "1"},
    "stages": [
        {"id": "count", "type": "word_count", "config": {"input": "text.txt", "output_dir": "out/count"}},
        {"id": "report", "type": "custom", "depends_on": ["count"],
         "config": {"command": "cp {src}/counts.txt {output_dir}/report.txt",
                    "params": {"src": "{count.output_dir}"}, "output_dir": "out/report"}},
    ],
}


def test_registered_executor_runs_through_the_api(ws):
    (ws.root / "text.txt").write_text("The cat saw the dog and THE bird")
    builder = PipelineBuilder()
    builder.register_stage_executor("word_count", WordCount)
    pipeline = builder.load_from_dict(PIPELINE)
    assert pipeline.stage("count").config["lower"] is True          # schema default filled in
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    result = orchestrator.execute_pipeline(pipeline)
    assert result.success, result.error_message
    assert result.stage_result("count").outputs["distinct"] == 6
    assert result.stage_result("count").metrics == {"words": 8}
    assert (ws.root / "out/report/report.txt").read_text().startswith("and 1\nbird 1\ncat 1")
    # input file changed → count reruns; report only reruns if counts changed
    (ws.root / "text.txt").write_text("The cat saw the dog and THE bird ")
    again = orchestrator.execute_pipeline(pipeline)
    assert again.executed == ["count"] and again.up_to_date == ["report"]
    forced = orchestrator.execute_pipeline(pipeline, force=True, stages=["count"])
    assert forced.executed == ["count"] and forced.stage_result("count").status == ExecutionStatus.SUCCESS
    single = orchestrator.execute_stage(pipeline.stage("count"), {})
    assert single.status == ExecutionStatus.SUCCESS and single.outputs["distinct"] == 6
    assert pipeline.stage("count").status == ExecutionStatus.SUCCESS and pipeline.stage("count").duration > 0


def test_executor_version_bump_reruns_stage(ws):
    (ws.root / "text.txt").write_text("a b c")
    register_stage_executor("word_count", WordCount)
    pipeline = PipelineBuilder().load_from_dict(PIPELINE)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    assert orchestrator.execute_pipeline(pipeline).success

    class WordCountV4(WordCount):
        version = "4"
    register_stage_executor("word_count", WordCountV4)
    result = orchestrator.execute_pipeline(pipeline)
    assert result.executed == ["count"]


def test_force_reexecutes_everything(ws):
    (ws.root / "text.txt").write_text("a b c")
    register_stage_executor("word_count", WordCount)
    pipeline = PipelineBuilder().load_from_dict(PIPELINE)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    orchestrator.execute_pipeline(pipeline)
    result = orchestrator.execute_pipeline(pipeline, force=True)
    assert sorted(result.executed) == ["count", "report"] and result.status == PipelineState.COMPLETED


def test_entry_point_group_adds_stage_types(tmp_path, monkeypatch):
    """A third-party package declaring `[pipeline_tasks.stages]` in its entry points."""
    site = tmp_path / "site"
    (site / "thirdparty_pkg").mkdir(parents=True)
    (site / "thirdparty_pkg" / "__init__.py").write_text(textwrap.dedent("""
        from pipeline_tasks import StageExecutor
        class Hello(StageExecutor):
            type_name = "hello"
            config_schema = {"name": {"type": "string", "required": True}}
            def execute(self, inputs):
                return self.result(outputs={"greeting": "hello " + self.config["name"]})
    """))
    dist = site / "thirdparty_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pipeline_tasks.stages]\nhello = thirdparty_pkg:Hello\n")
    monkeypatch.syspath_prepend(str(site))
    assert "hello" in available_types()
    cls = get_executor_class("hello")
    assert cls.__name__ == "Hello"
    assert cls("s", {"name": "x"}).execute({}).outputs == {"greeting": "hello x"}
    with pytest.raises(Exception, match="unknown key 'nam'; did you mean 'name'"):
        PipelineBuilder().load_from_dict(
            {"pipeline": {"name": "ep"}, "stages": [{"id": "s", "type": "hello", "config": {"nam": "x"}}]})


def test_graph_dot_and_mermaid(ws):
    (ws.root / "text.txt").write_text("x")
    register_stage_executor("word_count", WordCount)
    pipeline = PipelineBuilder().load_from_dict(PIPELINE)
    dot = to_dot(pipeline, {"count": "success", "report": "failed"})
    assert '"count" -> "report";' in dot and 'fillcolor="#ff8787"' in dot and dot.startswith('digraph "api"')
    mermaid = to_mermaid(pipeline, {"count": "success"})
    assert "n_count --> n_report" in mermaid and "class n_count success" in mermaid
    proc = ws.cli("graph", "--help")
    assert proc.returncode == 0 and "mermaid" in proc.stdout


def test_cli_create_list_run_by_id_graph_and_doit_passthrough(ws):
    ws.write("p.yaml", """
        pipeline: {name: clidemo, version: "1"}
        stages:
          - {id: a, type: custom, config: {callable: "engine_callables:write_text", args: {text: x}, output_dir: out/a}}
          - {id: b, type: custom, depends_on: [a], config: {callable: "engine_callables:write_text", output_dir: out/b}}
    """)
    pipeline_id = ws.cli("create", "p.yaml", check=True).stdout.strip()
    assert pipeline_id == "clidemo"
    assert f"{pipeline_id}" in ws.cli("list", "--state", "pending", check=True).stdout
    assert "no pipelines in state 'completed'" in ws.cli("list", "--state", "completed", check=True).stdout
    run = ws.cli("run", pipeline_id, "--no-progress", check=True)
    assert "completed: 2 stage(s) run" in run.stdout
    listed = ws.cli("list", "--json", check=True).stdout
    assert '"state": "completed"' in listed
    ws.cli("graph", pipeline_id, "--format", "dot", "--status", "-o", "g.dot", check=True)
    assert '"a" -> "b";' in (ws.root / "g.dot").read_text()
    info = ws.cli("doit", "p.yaml", "--", "info", "b", check=True).stdout
    assert "out/a/.stage.json" in info
    ws.cli("doit", "p.yaml", "--", "forget", "b", check=True)      # doit forgets b: plan says so
    plan = ws.cli("plan", pipeline_id, check=True).stdout
    assert "run  b  (never run)" in plan and "skip a" in plan


def test_doit_finds_its_plugins_with_one_scan_of_the_installed_distributions(ws, monkeypatch):
    """doit looks its plugins up by kind (commands, backends, reporters), each a scan of every
    installed distribution; a run answers every kind from one scan, with what doit would find."""
    import importlib.metadata

    import doit.plugin

    from pipeline_tasks.engine import session

    real = importlib.metadata.entry_points
    scans = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: scans.append(kw) or real(**kw))
    monkeypatch.setattr(doit.plugin, "entry_points_impl", doit.plugin.entry_points_impl)
    session._installed_entry_points.cache_clear()
    try:
        path = ws.write("one.yaml", textwrap.dedent("""
            pipeline: {name: one, version: "1"}
            stages:
              - id: s
                type: custom
                config: {callable: "engine_callables:write_text", args: {text: x}, output_dir: out/s}
            """))
        result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(
            PipelineBuilder().load_from_yaml(path))
        assert result.status == PipelineState.COMPLETED, result.error_message
        assert doit.plugin.entry_points_impl() is session.doit_plugins
        assert scans == [{}]
        for group in ("doit.COMMAND", "doit.BACKEND", "doit.REPORTER", "console_scripts"):
            assert list(session.doit_plugins(group)) == list(real(group=group))
    finally:
        session._installed_entry_points.cache_clear()
