"""The public API under the names, fields and behaviour of the design: enums, dataclasses, builder,
orchestrator, checkpoints, progress monitor, event bus, executor contract and retry policy."""
from __future__ import annotations

import dataclasses
import gzip
import json
import time
from pathlib import Path

import pytest

import pipeline_tasks
from pipeline_tasks import (
    CheckpointManager,
    EventBus,
    ExecutionStatus,
    OrchestratorConfig,
    Pipeline,
    PipelineBuilder,
    PipelineOrchestrator,
    PipelineProgressMonitor,
    PipelineResult,
    PipelineStage,
    PipelineState,
    RetryPolicy,
    StageExecutor,
    StageResult,
    StageType,
)
from pipeline_tasks.engine.runtime import should_retry
from pipeline_tasks.errors import DagError, PipelineError, SpecError, StageTimeoutError
from pipeline_tasks.models import PIPELINE_TRANSITIONS
from pipeline_tasks.state.checkpoint import read_checkpoint


def fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# -- enums and dataclasses --------------------------------------------------------------------------------
def test_enums_have_the_documented_members():
    assert [s.value for s in PipelineState] == ["pending", "running", "completed", "failed", "cancelled", "paused"]
    assert {"SUCCESS", "FAILED", "SKIPPED", "RUNNING", "PENDING"} <= set(ExecutionStatus.__members__)
    assert "COMPLETED" not in ExecutionStatus.__members__ and ExecutionStatus.SUCCESS.value == "success"
    assert [t.value for t in StageType] == ["frame_extraction", "segmentation", "clustering", "training_data_prep",
                                            "custom"]


def test_pipeline_state_transitions():
    assert PipelineState.PENDING.can_become(PipelineState.RUNNING)
    assert PipelineState.RUNNING.can_become(PipelineState.PAUSED)
    assert PipelineState.PAUSED.can_become(PipelineState.RUNNING)
    assert PipelineState.PAUSED.can_become(PipelineState.CANCELLED)
    assert not PipelineState.PENDING.can_become(PipelineState.COMPLETED)       # never ran
    assert not PipelineState.PAUSED.can_become(PipelineState.COMPLETED)        # must run again first
    assert not PipelineState.COMPLETED.can_become(PipelineState.PAUSED)
    assert not PipelineState.CANCELLED.can_become(PipelineState.FAILED)
    assert set(PIPELINE_TRANSITIONS) == set(PipelineState)


def test_dataclasses_have_the_documented_fields_in_order():
    assert fields(Pipeline)[:8] == ["id", "name", "version", "stages", "config", "created_at", "state",
                                    "checkpoint_dir"]
    assert fields(PipelineStage)[:8] == ["id", "type", "depends_on", "config", "status", "outputs", "duration",
                                         "error_message"]
    assert fields(StageResult)[:7] == ["stage_id", "status", "duration", "outputs", "metrics", "error_message",
                                       "checkpoints"]
    assert fields(PipelineResult)[:6] == ["pipeline_id", "status", "total_duration", "stage_results",
                                          "final_outputs", "error_message"]
    config = OrchestratorConfig()
    assert fields(OrchestratorConfig)[:7] == ["checkpoint_dir", "enable_parallel_execution", "max_parallel_stages",
                                              "checkpoint_interval", "enable_auto_retry", "max_retries",
                                              "event_bus_enabled"]
    assert (config.enable_parallel_execution, config.max_parallel_stages, config.checkpoint_interval,
            config.enable_auto_retry, config.max_retries, config.event_bus_enabled) == (True, 4, 300, True, 2, True)
    assert RetryPolicy() == RetryPolicy(2, 60.0, 2.0, ["timeout", "resource_exhausted"])


def test_positional_construction_and_progress_percent():
    stages = [PipelineStage("a", StageType.CUSTOM, [], {}), PipelineStage("b", "custom", ["a"], {}),
              PipelineStage("c", "custom", ["b"], {}), PipelineStage("d", "custom", ["c"], {})]
    assert stages[0].type == "custom" and stages[0].status == ExecutionStatus.PENDING
    pipeline = Pipeline("p-1", "p", "1.0", stages, {}, time.time(), PipelineState.PENDING)
    assert pipeline.progress_percent == 0 and pipeline.checkpoint_dir is None
    stages[0].status, stages[1].status, stages[2].status = (ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED,
                                                            ExecutionStatus.FAILED)
    assert pipeline.progress_percent == 50.0
    assert Pipeline("e", "e", "1", [], {}, 0.0, PipelineState.PENDING).progress_percent == 0
    result = StageResult("a", ExecutionStatus.SUCCESS, 1.5, {"output_dir": "x"}, {"n": 1.0})
    assert result.error_message is None and result.checkpoints == [] and result.to_dict()["duration"] == 1.5


# -- builder ---------------------------------------------------------------------------------------------
def chain(text_b: str = "b", name: str = "api") -> dict:
    return {"pipeline": {"name": name, "version": "1"},
            "stages": [{"id": "a", "type": "custom",
                        "config": {"callable": "engine_callables:write_text", "args": {"text": "a"},
                                   "output_dir": "out/a"}},
                       {"id": "b", "type": "custom", "depends_on": ["a"],
                        "config": {"callable": "engine_callables:write_text", "args": {"text": text_b},
                                   "output_dir": "out/b"}},
                       {"id": "side", "type": "custom", "depends_on": ["a"],
                        "config": {"callable": "engine_callables:write_text", "output_dir": "out/side"}}]}


def test_builder_validates_plans_and_registers(ws):
    builder = PipelineBuilder()
    pipeline = builder.load_from_dict(chain())
    assert builder.validate_dag(pipeline) is True
    assert builder.build_execution_plan(pipeline) == [["a"], ["b", "side"]]
    pipeline.stages[0].depends_on = ["b"]                       # a cycle made after loading
    with pytest.raises(DagError, match="cycle"):
        builder.validate_dag(pipeline)

    class Upper(StageExecutor):
        def execute(self, inputs):
            return self.result({"upper": self.config["text"].upper()})
    builder.register_stage_executor("upper", Upper)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    assert orchestrator.executor_registry["upper"] is Upper and "custom" in orchestrator.executor_registry
    loaded = builder.load_from_dict({"pipeline": {"name": "u"}, "stages": [{"id": "x", "type": "upper",
                                                                              "config": {"text": "hi"}}]})
    assert orchestrator.execute_stage(loaded.stage("x"), {}).outputs == {"upper": "HI"}


def test_validate_config_returning_false_fails_validation(ws):
    class Picky(StageExecutor):
        def validate_config(self) -> bool:
            return self.config.get("size", 0) > 0

        def execute(self, inputs):
            return self.result()
    builder = PipelineBuilder()
    builder.register_stage_executor("picky", Picky)
    spec = {"pipeline": {"name": "picky"}, "stages": [{"id": "p", "type": "picky", "config": {"size": 0}}]}
    with pytest.raises(SpecError, match=r"Picky.validate_config\(\) rejected the config"):
        builder.load_from_dict(spec)
    spec["stages"][0]["config"]["size"] = 3
    assert builder.load_from_dict(spec).stage("p").config == {"size": 3}


def test_enabled_auto_leaves_out_a_stage_whose_optional_package_is_not_installed(ws):
    from pipeline_tasks.weights.packages import require

    class NeedsPackage(StageExecutor):
        config_schema = {"module": {"type": "string", "required": True}}

        def validate_config(self) -> None:
            require({self.settings.module: "some-backend"}, "backend 'x'", "ml", stage=self.stage_id, key="module")

        def execute(self, inputs):
            return self.result()
    builder = PipelineBuilder()
    builder.register_stage_executor("needs_package", NeedsPackage)
    spec = {"pipeline": {"name": "auto"}, "stages": [
        {"id": "opt", "type": "needs_package", "enabled": "auto", "config": {"module": "no_such_module_here"}},
        {"id": "after", "type": "needs_package", "depends_on": ["opt"], "config": {"module": "json"}},
        {"id": "kept", "type": "needs_package", "config": {"module": "json"}}]}
    pipeline = builder.load_from_dict(spec)
    assert [s.id for s in pipeline.stages] == ["kept"]
    assert "some-backend, not installed here" in pipeline.skipped["opt"]
    assert "upstream stage 'opt' is left out" in pipeline.skipped["after"]
    spec["stages"][0]["enabled"] = True                 # asked for: the missing package is an error
    with pytest.raises(SpecError, match="some-backend, not installed here"):
        builder.load_from_dict(spec)
    spec["stages"][0].update(enabled="auto", config={"module": "json"})   # installed: the stage is back
    assert [s.id for s in builder.load_from_dict(spec).stages] == ["opt", "after", "kept"]


def test_dict_pipeline_keeps_its_id_reruns_only_what_changed_and_resumes_from_its_checkpoint(ws):
    builder = PipelineBuilder()
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    first = builder.load_from_dict(chain("b"))
    assert sorted(orchestrator.execute_pipeline(first).executed) == ["a", "b", "side"]
    changed = builder.load_from_dict(chain("b2"))
    assert changed.id == first.id
    result = orchestrator.execute_pipeline(changed)
    assert result.executed == ["b"] and sorted(result.up_to_date) == ["a", "side"]
    assert (ws.root / "out/b/out.txt").read_text() == "b2|A"
    # resumable: the checkpoint keeps the dict, so the pipeline comes back from it alone
    (ws.root / "out/side/.stage.json").unlink()
    resumed = orchestrator.resume_from_checkpoint(ws.root / ".pipeline" / first.id / "checkpoint.json")
    assert resumed.id == first.id and resumed.stage("b").config["args"] == {"text": "b2"}
    assert {s.id: s.status for s in resumed.stages} == dict.fromkeys(["a", "b", "side"], ExecutionStatus.SUCCESS)
    assert resumed.state == PipelineState.COMPLETED
    again = orchestrator.execute_pipeline(resumed, resume=True)
    assert again.executed == ["side"] and again.status == PipelineState.COMPLETED


def test_resume_needs_a_checkpoint(ws):
    pipeline = PipelineBuilder().load_from_dict(chain(name="fresh"))
    with pytest.raises(PipelineError, match="has no checkpoint to resume from"):
        PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline, resume=True)


def test_output_root_roots_relative_output_paths(ws, tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    pipeline = PipelineBuilder(output_root=root).load_from_dict(chain(name="rooted"))
    assert pipeline.stage("a").config["output_dir"] == str(root / "out/a")
    assert pipeline.id == PipelineBuilder().load_from_dict(chain(name="rooted")).id == "rooted"   # its name
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)
    assert result.success and (root / "out/b/out.txt").read_text() == "b|A"
    assert not (ws.root / "out").exists()


# -- orchestrator ---------------------------------------------------------------------------------------------
def test_result_fields_pipeline_updates_and_final_outputs(ws):
    pipeline = PipelineBuilder().load_from_dict(chain(name="fields"))
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    assert pipeline.state == PipelineState.PENDING
    result = orchestrator.execute_pipeline(pipeline)
    assert result.pipeline_id == pipeline.id and result.status == PipelineState.COMPLETED
    assert result.total_duration > 0 and result.error_message is None
    assert [r.stage_id for r in result.stage_results] == ["a", "b", "side"]
    assert all(r.status == ExecutionStatus.SUCCESS and r.duration > 0 for r in result.stage_results)
    assert result.stage_result("b").outputs["chars"] == 2 and result.stage_result("b").outputs["output_dir"]
    assert set(result.final_outputs) == {"b", "side"}            # the stages nothing depends on
    final = read_checkpoint(ws.root / ".pipeline" / pipeline.id / "checkpoint.json")
    assert all(r.checkpoints and r.checkpoints[-1].name.endswith(".json.gz") for r in result.stage_results)
    assert read_checkpoint(result.stage_result("a").checkpoints[-1]).completed_stages == final.completed_stages
    assert pipeline.state == PipelineState.COMPLETED and pipeline.progress_percent == 100
    assert pipeline.checkpoint_dir == ws.root / ".pipeline" / pipeline.id
    assert pipeline.stage("b").outputs["chars"] == 2 and pipeline.stage("b").duration > 0
    again = orchestrator.execute_pipeline(pipeline)
    assert {r.status for r in again.stage_results} == {ExecutionStatus.SKIPPED}
    assert again.stage_result("b").outputs["chars"] == 2 and pipeline.progress_percent == 100


def test_failed_run_result(ws):
    spec = chain(name="failing")
    spec["stages"][1]["config"] = {"callable": "engine_callables:broken", "output_dir": "out/b"}
    pipeline = PipelineBuilder().load_from_dict(spec)
    bus = EventBus()
    failed = []
    bus.subscribe("pipeline.failed", failed.append)
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False, continue_on_error=True),
                                  event_bus=bus).execute_pipeline(pipeline)
    assert result.status == PipelineState.FAILED and "ValueError: bad things" in result.error_message
    b = result.stage_result("b")
    assert b.status == ExecutionStatus.FAILED and "bad things" in b.error_message and b.outputs == {}
    assert pipeline.stage("b").status == ExecutionStatus.FAILED and "bad things" in pipeline.stage("b").error_message
    assert set(result.final_outputs) == {"side"}
    assert len(failed) == 1 and "bad things" in failed[0]["error"] and failed[0]["pipeline_id"] == pipeline.id


PARALLEL = {"pipeline": {"name": "par", "version": "1"},
            "stages": [{"id": f"s{i}", "type": "custom",
                        "config": {"callable": "engine_callables:slow", "args": {"steps": 2, "delay": 0.05},
                                   "output_dir": f"out/s{i}"}} for i in range(3)]}


def test_a_process_with_native_threads_runs_stages_one_at_a_time_and_says_so(monkeypatch, caplog):
    import pipeline_tasks.orchestrator as orchestration
    pipeline = PipelineBuilder().load_from_dict(PARALLEL)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False, max_parallel_stages=3))
    monkeypatch.setattr(orchestration, "native_threads", lambda: False)
    assert orchestrator.workers(pipeline) == 3 and not caplog.records
    monkeypatch.setattr(orchestration, "native_threads", lambda: True)
    with caplog.at_level("WARNING", logger="pipeline_tasks"):
        assert orchestrator.workers(pipeline) == 1
    assert "running the stages of 'par' one at a time, not 3 at once" in caplog.text
    assert "pipeline-tasks run -n 3" in caplog.text


def test_event_bus_gets_every_event_live_also_from_worker_processes(ws):
    pipeline = PipelineBuilder().load_from_dict(PARALLEL)
    bus = EventBus()
    seen = []
    bus.subscribe("*", seen.append)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False, max_parallel_stages=3), event_bus=bus)
    from pipeline_tasks.orchestrator import native_threads
    forks = not native_threads()        # this test process may hold a decoder's threads from earlier tests
    assert orchestrator.workers(pipeline) == (3 if forks else 1)
    during = []
    bus.subscribe("pipeline.stage_completed",
                  lambda e: during.append(orchestrator.progress_monitor.get_pipeline_status(pipeline.id)))
    result = orchestrator.execute_pipeline(pipeline)
    assert result.success
    on_file = [json.loads(line) for line in (ws.root / ".pipeline" / pipeline.id / "events.jsonl").open()]
    assert [e["type"] for e in seen] == [e["type"] for e in on_file]            # every event, in order
    stage_pids = {e["pid"] for e in seen if e["type"] == "pipeline.stage_started"}
    if forks:                           # the events of stages that ran in worker processes came live too
        assert len(stage_pids) >= 2 and all(pid != __import__("os").getpid() for pid in stage_pids)
    assert seen[0]["type"] == "pipeline.started" and seen[0]["name"] == "par"
    assert {e["stage_id"] for e in seen if e["type"] == "pipeline.stage_completed"} == {"s0", "s1", "s2"}
    assert all(e["duration"] > 0 for e in seen if e["type"] == "pipeline.stage_completed")
    assert seen[-1]["type"] == "pipeline.completed" and seen[-1]["duration"] > 0
    assert len(during) == 3 and during[-1]["progress_percent"] == 100.0        # the monitor followed the run


def test_event_bus_disabled_and_no_parallel(ws):
    pipeline = PipelineBuilder().load_from_dict(PARALLEL)
    bus = EventBus()
    seen = []
    bus.subscribe("*", seen.append)
    config = OrchestratorConfig(show_progress=False, event_bus_enabled=False, enable_parallel_execution=False)
    orchestrator = PipelineOrchestrator(config, event_bus=bus)
    assert orchestrator.workers(pipeline) == 1
    assert orchestrator.execute_pipeline(pipeline).success and seen == []
    events = [json.loads(line) for line in (ws.root / ".pipeline" / pipeline.id / "events.jsonl").open()]
    assert len({e["pid"] for e in events}) == 1                 # one process: no workers


def test_execute_stage_runs_one_executor_with_inputs_and_retries(ws):
    stage = PipelineStage("flaky", "custom", [], {"callable": "engine_callables:flaky", "args": {"fail_times": 1},
                                                  "output_dir": str(ws.root / "out/flaky")},
                          retry=RetryPolicy(max_retries=1, retry_delay=0, retry_on_errors=["network"]))
    bus = EventBus()
    seen = []
    bus.subscribe("*", seen.append)
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False), event_bus=bus).execute_stage(stage, {})
    assert result.status == ExecutionStatus.SUCCESS and result.outputs["calls"] == 2 and result.attempts == 2
    assert [e["type"] for e in seen] == ["pipeline.stage_started", "pipeline.stage_retry", "pipeline.stage_completed"]
    assert stage.status == ExecutionStatus.SUCCESS and stage.duration == result.duration
    reader = PipelineStage("reader", "custom", [], {"callable": "engine_callables:write_text",
                                                    "output_dir": str(ws.root / "out/reader")})
    out = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_stage(
        reader, {"flaky": {"output_dir": str(ws.root / "out/flaky")}})
    assert out.status == ExecutionStatus.SUCCESS and (ws.root / "out/reader/out.txt").read_text() == "|OK"
    broken = PipelineStage("broken", "custom", [], {"callable": "engine_callables:broken",
                                                    "output_dir": str(ws.root / "out/broken")})
    failed = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_stage(broken, {})
    assert failed.status == ExecutionStatus.FAILED and "ValueError: bad things" in failed.error_message
    assert failed.attempts == 1 and broken.error_message == failed.error_message


# -- retry policy ------------------------------------------------------------------------------------------
def test_retry_on_errors_takes_categories_and_class_names():
    policy = RetryPolicy(max_retries=2, retry_on_errors=["timeout", "resource_exhausted"])
    assert should_retry(StageTimeoutError("timed out"), policy, 1)
    assert should_retry(TimeoutError(), policy, 1) and should_retry(MemoryError(), policy, 2)
    assert should_retry(OSError(28, "No space left on device"), policy, 1)
    assert not should_retry(OSError(2, "No such file"), policy, 1)
    assert not should_retry(ValueError("x"), policy, 1)
    assert not should_retry(TimeoutError(), policy, 3)                 # retries used up
    assert should_retry(ConnectionResetError(), RetryPolicy(retry_on_errors=["network"]), 1)
    assert should_retry(KeyError("k"), RetryPolicy(retry_on_errors=["LookupError"]), 1)     # a base class name
    assert should_retry(KeyError("k"), RetryPolicy(retry_on_errors=[]), 1)                   # empty: any


def test_default_retry_policy_comes_from_the_orchestrator_config(ws):
    spec = chain(name="retrying")
    spec["stages"][0]["retry"] = {"max_retries": 5, "retry_delay": 0.5}
    pipeline = PipelineBuilder().load_from_dict(spec)
    assert pipeline.stage("a").retry == RetryPolicy(5, 0.5) and pipeline.stage("b").retry is None

    def retries(config):
        session = PipelineOrchestrator(config).session(pipeline)
        return {t["name"]: t["actions"][0][1][0]["retry"] for t in session.tasks()}
    default = retries(OrchestratorConfig(max_retries=3))
    assert default["a"] == vars(RetryPolicy(5, 0.5))
    assert default["b"] == vars(RetryPolicy(max_retries=3))
    assert retries(OrchestratorConfig(enable_auto_retry=False))["b"]["max_retries"] == 0


def test_a_timed_out_stage_is_retried_by_the_default_policy(ws):
    spec = {"pipeline": {"name": "timing"}, "stages": [
        {"id": "t", "type": "custom", "timeout": 0.5, "retry": {"max_retries": 1, "retry_delay": 0},
         "config": {"callable": "engine_callables:slow", "args": {"steps": 2, "delay": 2}, "output_dir": "out/t"}}]}
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(
        PipelineBuilder().load_from_dict(spec))
    assert result.status == PipelineState.FAILED and "timed out" in result.error_message
    assert result.stage_result("t").attempts == 2          # the "timeout" category matched the timeout


# -- checkpoints ---------------------------------------------------------------------------------------------
def test_checkpoint_manager_documented_methods(ws, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    pipeline = PipelineBuilder().load_from_dict(chain(name="ckpt"))
    pipeline.stage("a").outputs = {"output_dir": "out/a", "frame_count": 3}
    manager = CheckpointManager(checkpoint_dir=folder)
    paths = [manager.save_checkpoint(pipeline, ["a"]) for _ in range(4)]
    assert all(isinstance(p, Path) and p.name.endswith(".json.gz") for p in paths)
    assert manager.list_checkpoints(pipeline.id) == paths[1:]          # pruned to keep_last=3 automatically
    data = manager.load_checkpoint(paths[-1])
    assert {k: data[k] for k in ("pipeline_id", "completed_stages", "stage_outputs", "pipeline_state",
                                 "next_stage")} == {
        "pipeline_id": pipeline.id, "completed_stages": ["a"],
        "stage_outputs": {"a": {"output_dir": "out/a", "frame_count": 3}}, "pipeline_state": "pending",
        "next_stage": "b"}
    assert isinstance(data["checkpoint_time"], float) and data["definition"] == chain(name="ckpt")
    assert json.loads(gzip.decompress(paths[-1].read_bytes())) == data
    manager.prune_checkpoints(pipeline.id, keep_last=1)
    assert manager.list_checkpoints(pipeline.id) == paths[-1:]


def test_orchestrator_checkpoints_go_to_checkpoint_dir_paced_by_the_interval(ws, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    stages = [{"id": f"s{i}", "type": "custom", "depends_on": [f"s{i - 1}"] if i else [],
               "config": {"callable": "engine_callables:slow", "args": {"steps": 1, "delay": 0.3},
                          "output_dir": f"out/s{i}"}} for i in range(4)]
    pipeline = PipelineBuilder().load_from_dict({"pipeline": {"name": "paced"}, "stages": stages})

    def run(interval: float, keep: int) -> list[Path]:
        config = OrchestratorConfig(show_progress=False, checkpoint_dir=folder, checkpoint_interval=interval,
                                    checkpoint_keep_last=keep)
        orchestrator = PipelineOrchestrator(config)
        assert orchestrator.checkpoint_manager.checkpoint_dir == folder
        orchestrator.execute_pipeline(pipeline, force=True)
        return orchestrator.checkpoint_manager.list_checkpoints(pipeline.id)
    # a long interval: the first stage's checkpoint and the final one
    files = run(300, keep=10)
    assert [read_checkpoint(f).completed_stages for f in files] == [["s0"], ["s0", "s1", "s2", "s3"]]
    for f in files:
        f.unlink()
    # no interval: one after each stage (the last is the final one, written again at the end)
    files = run(0, keep=10)
    assert [len(read_checkpoint(f).completed_stages) for f in files] == [1, 2, 3, 4, 4]
    assert read_checkpoint(files[-1]).pipeline_state == "completed"
    assert len(run(0, keep=2)) == 2


# -- progress monitor and event bus ------------------------------------------------------------------------
class Estimated(StageExecutor):
    def estimate_duration(self) -> float:
        return float(self.config["seconds"])

    def execute(self, inputs):
        return self.result()


def test_progress_monitor_documented_methods(ws):
    builder = PipelineBuilder()
    builder.register_stage_executor("estimated", Estimated)
    pipeline = builder.load_from_dict({"pipeline": {"name": "mon"}, "stages": [
        {"id": "one", "type": "estimated", "config": {"seconds": 10}},
        {"id": "two", "type": "estimated", "depends_on": ["one"], "config": {"seconds": 30}},
        {"id": "three", "type": "custom", "depends_on": ["two"], "config": {"command": "true"}}]})
    bus = EventBus()
    seen = []
    bus.subscribe("*", seen.append)
    monitor = PipelineProgressMonitor(bus)
    monitor.start_pipeline(pipeline)
    status = monitor.get_pipeline_status(pipeline.id)
    # before any history, the executors' estimates make the ETA (a stage with none: unknown)
    assert status["progress_percent"] == 0 and status["current_stage"] is None and status["eta_seconds"] is None
    monitor.update_stage_progress("one", 0.5, {"done": 50, "total": 100})
    status = monitor.get_pipeline_status(pipeline.id)
    assert status["current_stage"] == "one" and status["stages"]["one"]["progress"] == 0.5
    assert status["throughput"] > 0 and "one" in status["stage_durations"]
    monitor.complete_stage("one", StageResult("one", ExecutionStatus.SUCCESS, 12.0, {}, {"items": 100}))
    status = monitor.get_pipeline_status(pipeline.id)
    assert status["progress_percent"] == pytest.approx(100 / 3, abs=0.01)
    assert status["stage_durations"]["one"] == 12.0
    assert status["eta_seconds"] == pytest.approx(30 + 12)        # "two" by its estimate, "three" by the mean
    assert status["resource_utilization"] == {}
    event = monitor.emit_event("pipeline.started", {"pipeline_id": pipeline.id, "name": "mon"})
    assert seen == [event] and event["name"] == "mon"
    with pytest.raises(PipelineError, match="no run of pipeline 'other'"):
        monitor.get_pipeline_status("other")


def test_status_eta_uses_the_estimate_before_a_stage_has_history(ws):
    from pipeline_tasks.engine.session import PipelineSession
    from pipeline_tasks.engine.status import _eta, expected_durations, pipeline_status
    builder = PipelineBuilder()
    builder.register_stage_executor("estimated", Estimated)
    pipeline = builder.load_from_dict({"pipeline": {"name": "eta"}, "stages": [
        {"id": "one", "type": "estimated", "config": {"seconds": 10, "output_dir": "out/one"}},
        {"id": "two", "type": "estimated", "depends_on": ["one"], "config": {"seconds": 30, "output_dir": "out/two"}}]})
    session = PipelineSession.open(pipeline)
    status = pipeline_status(session)
    assert expected_durations(session, status, {}) == {"one": 10.0, "two": 30.0}
    assert _eta(status, [], expected_durations(session, status, {})) == 40.0
    assert _eta(status, [], {}) is None                     # no estimate and no history: unknown
    # with history (the duration its manifest recorded) the estimate gives way
    assert expected_durations(session, status, {"two": 2.5}) == {"one": 10.0, "two": 2.5}


def test_event_bus_emit_takes_the_documented_dict():
    bus = EventBus()
    seen = []
    bus.subscribe("pipeline.*", seen.append)
    bus.emit("pipeline.started", {"pipeline_id": "p", "name": "n"})
    bus.emit("pipeline.stage_completed", {"stage_id": "s", "duration": 123.5})
    bus.emit("pipeline.completed", {"pipeline_id": "p", "duration": 3600.0})
    bus.emit("pipeline.failed", {"pipeline_id": "p", "error": "boom"})
    assert [(e["type"], e.get("duration"), e.get("error")) for e in seen] == [
        ("pipeline.started", None, None), ("pipeline.stage_completed", 123.5, None),
        ("pipeline.completed", 3600.0, None), ("pipeline.failed", None, "boom")]


# -- exports -----------------------------------------------------------------------------------------------
def test_built_in_executors_are_exported_under_the_documented_names():
    from pipeline_tasks.spec.registry import BUILTIN_STAGES, get_executor_class
    for name in ("FrameExtractionExecutor", "SegmentationExecutor", "ClusteringExecutor", "TrainingDataPrepExecutor",
                 "CustomExecutor"):
        assert name in pipeline_tasks.__all__
    assert pipeline_tasks.FrameExtractionExecutor is get_executor_class(StageType.FRAME_EXTRACTION)
    assert pipeline_tasks.TrainingDataPrepExecutor is get_executor_class("training_data_prep")
    for target in BUILTIN_STAGES.values():
        assert target.endswith("Executor")
        assert getattr(pipeline_tasks, target.partition(":")[2]).__name__ == target.partition(":")[2]


def test_runs_from_two_working_folders_keep_their_own_event_logs(tmp_path, monkeypatch):
    """The same pipeline (same id, relative state folder) run from two working folders by one
    process: each folder's event log holds its own run's events."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    counts = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        pipeline = PipelineBuilder().load_from_dict(chain(name="twice"))
        assert PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline).success
        log = folder / ".pipeline" / pipeline.id / "events.jsonl"
        counts.append(sum(1 for line in log.open() if '"pipeline.started"' in line))
    assert counts == [1, 1]
