"""The runtime around a stage: retries, failures, timeouts, secrets, events, checkpoint."""
from __future__ import annotations

import gzip
import json
import time

import psutil
from conftest import wait_for

from pipeline_tasks import (
    CheckpointData,
    CheckpointManager,
    EventBus,
    ExecutionStatus,
    OrchestratorConfig,
    PipelineBuilder,
    PipelineOrchestrator,
    PipelineState,
)
from pipeline_tasks.state.checkpoint import read_checkpoint
from pipeline_tasks.state.events import latest_run_events, read_events


def execute(ws, text: str, **config):
    path = ws.write("p.yaml", text)
    pipeline = PipelineBuilder().load_from_yaml(path)
    return PipelineOrchestrator(OrchestratorConfig(show_progress=False, **config)).execute_pipeline(pipeline)


def test_retry_then_success_with_backoff(ws):
    result = execute(ws, """
        pipeline: {name: retry, version: "1"}
        stages:
          - id: flaky
            type: custom
            retry: {max_retries: 3, retry_delay: 0.05, backoff_multiplier: 2, retry_on_errors: [ConnectionError]}
            config:
              callable: "engine_callables:flaky"
              args: {fail_times: 2}
              output_dir: out/flaky
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert ws.runs() == ["flaky"] * 3
    stage = result.stage_result("flaky")
    assert stage.attempts == 3 and stage.outputs["calls"] == 3
    retries = [e for e in ws.events() if e["type"] == "pipeline.stage_retry"]
    assert [e["delay"] for e in retries] == [0.05, 0.1]
    assert "ConnectionError: transient failure 1" in retries[0]["error"]


def test_retry_exhausted_keeps_partial_output_without_manifest(ws):
    result = execute(ws, """
        pipeline: {name: retry, version: "1"}
        stages:
          - id: flaky
            type: custom
            retry: {max_retries: 1, retry_delay: 0, retry_on_errors: []}
            config:
              callable: "engine_callables:flaky"
              args: {fail_times: 5}
              output_dir: out/flaky
          - id: after
            type: custom
            depends_on: [flaky]
            config: {callable: "engine_callables:write_text", output_dir: out/after}
    """)
    assert result.status == PipelineState.FAILED
    assert ws.runs() == ["flaky", "flaky"]
    assert "ConnectionError: transient failure 2" in result.error_message
    assert (ws.root / "out/flaky/partial.txt").read_text() == "attempt 2"     # kept for inspection
    assert not (ws.root / "out/flaky/.stage.json").exists()                   # never taken as complete
    assert result.stage_result("flaky").status == ExecutionStatus.FAILED
    assert result.stage_result("after").status == ExecutionStatus.PENDING
    (state,) = ws.state_dirs()
    report = (state / "errors" / "flaky.txt").read_text()
    assert "attempts: 2" in report and "Traceback" in report and "p.yaml:3]" in report
    checkpoint = json.loads((state / "checkpoint.json").read_text())
    assert checkpoint["pipeline_state"] == "failed" and checkpoint["next_stage"] == "flaky"


def test_retry_not_attempted_for_unlisted_error(ws):
    result = execute(ws, """
        pipeline: {name: retry, version: "1"}
        stages:
          - id: broken
            type: custom
            retry: {max_retries: 3, retry_delay: 0, retry_on_errors: [ConnectionError]}
            config: {callable: "engine_callables:broken", output_dir: out/broken}
    """)
    assert result.status == PipelineState.FAILED
    assert ws.runs() == ["broken"]
    assert "ValueError: bad things" in result.error_message


def test_timeout_kills_the_stage_and_its_children(ws):
    started = time.monotonic()
    result = execute(ws, """
        pipeline: {name: timeout, version: "1"}
        stages:
          - id: sleepy
            type: custom
            timeout: 1
            retry: {max_retries: 0}
            config:
              command: "echo $$ > {output_dir}/pid; sleep 60"
              output_dir: out/sleepy
    """)
    assert time.monotonic() - started < 30
    assert result.status == PipelineState.FAILED
    assert "timed out after 1 s" in result.error_message
    shell_pid = int((ws.root / "out/sleepy/pid").read_text())
    # the shell is gone, or dead and waiting to be reaped (a zombie) where PID 1 does not reap orphans
    wait_for(lambda: not _alive(shell_pid), timeout=10, what="the timed-out shell to die")
    assert not (ws.root / "out/sleepy/.stage.json").exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_timeout_not_hit_passes_result_back(ws):
    result = execute(ws, """
        pipeline: {name: timeout, version: "1"}
        stages:
          - id: quick
            type: custom
            timeout: 30
            config: {callable: "engine_callables:write_text", args: {text: hi}, output_dir: out/quick}
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert result.stage_result("quick").outputs["chars"] == 2


def test_command_values_are_shell_quoted(ws):
    ws.write("in dir/input file.txt", "data")
    result = execute(ws, """
        pipeline: {name: quoting, version: "1"}
        vars: {evil: "x; touch pwned; $(touch pwned2) 'q'"}
        stages:
          - id: src
            type: custom
            config:
              command: "cp {inputs} {output_dir}/copy.txt && printf '%s' {label} > {output_dir}/label.txt"
              inputs: ["in dir/input file.txt"]
              params: {label: "{vars.evil}"}
              output_dir: "out/with space"
          - id: use
            type: custom
            depends_on: [src]
            config:
              command: "cat {src.output_dir}/copy.txt > {output_dir}/again.txt"
              output_dir: out/use
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert (ws.root / "out/with space/label.txt").read_text() == "x; touch pwned; $(touch pwned2) 'q'"
    assert (ws.root / "out/use/again.txt").read_text() == "data"
    assert not (ws.root / "pwned").exists() and not (ws.root / "pwned2").exists()


def test_command_failure_reports_stderr(ws):
    result = execute(ws, """
        pipeline: {name: fails, version: "1"}
        stages:
          - id: bad
            type: custom
            config: {command: "echo oops >&2; exit 3", output_dir: out/bad}
    """)
    assert result.status == PipelineState.FAILED
    assert "command exited with status 3: oops" in result.error_message


def test_secrets_never_written_to_state_or_outputs_metadata(ws, monkeypatch):
    secret = "s3cr3t-T0KEN-value"
    monkeypatch.setenv("API_TOKEN", secret)
    result = execute(ws, """
        pipeline: {name: secrets, version: "1"}
        stages:
          - id: use
            type: custom
            config:
              callable: "engine_callables:echo_secret"
              args: {token: "${secret:API_TOKEN}"}
              output_dir: out/use
          - id: cmd
            type: custom
            depends_on: [use]
            config:
              command: "echo token=${secret:API_TOKEN}; echo {output_dir} > {output_dir}/x.txt"
              output_dir: out/cmd
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    written = [p for p in ws.root.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in written) and any(p.suffix == ".log" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), f"secret leaked into {path}"
    manifest = json.loads((ws.root / "out/use/.stage.json").read_text())
    assert manifest["outputs"]["token_echo"] == "***"
    log = next(p for p in written if p.name == "use.log").read_text()
    assert "using token ***" in log


def test_events_and_checkpoint_written(ws):
    result = execute(ws, """
        pipeline: {name: events, version: "1"}
        stages:
          - id: a
            type: custom
            config: {callable: "engine_callables:slow", args: {steps: 3, delay: 0.01}, output_dir: out/a}
          - id: b
            type: custom
            depends_on: [a]
            config: {callable: "engine_callables:write_text", output_dir: out/b}
    """)
    assert result.status == PipelineState.COMPLETED
    kinds = [e["type"] for e in ws.events()]
    assert kinds[0] == "pipeline.started" and kinds[-1] == "pipeline.completed"
    assert kinds.count("pipeline.stage_started") == 2 and kinds.count("pipeline.stage_completed") == 2
    progress = [e for e in ws.events() if e["type"] == "stage.progress"]
    assert progress[-1]["done"] == 3 and progress[-1]["total"] == 3 and progress[-1]["stage_id"] == "a"
    (state,) = ws.state_dirs()
    checkpoint = read_checkpoint(state / "checkpoint.json")
    assert checkpoint.completed_stages == ["a", "b"] and checkpoint.pipeline_state == "completed"
    assert checkpoint.stage_outputs["a"]["steps"] == 3 and checkpoint.next_stage is None


def test_event_bus_subscribe_and_file(tmp_path):
    bus = EventBus(tmp_path / "events.jsonl", redact=["hidden"])
    seen, stage_seen = [], []
    bus.subscribe("*", seen.append)
    unsubscribe = bus.subscribe("pipeline.stage_completed", stage_seen.append)
    bus.emit("pipeline.stage_completed", stage_id="x", note="hidden value")
    unsubscribe()
    bus.emit("pipeline.stage_completed", stage_id="y")
    assert [e["stage_id"] for e in seen] == ["x", "y"] and [e["stage_id"] for e in stage_seen] == ["x"]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "hidden" not in lines[0] and json.loads(lines[0])["note"] == "*** value"


def test_reading_events_of_some_types_skips_the_others_and_damaged_lines(tmp_path):
    bus = EventBus(tmp_path / "events.jsonl")
    bus.emit("pipeline.started", pipeline_id="p")
    bus.emit("pipeline.stage_started", stage_id="a")
    bus.emit("pipeline.stage_completed", stage_id="a", note='says "pipeline.stage_started" inside')
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"type": "pipeline.stage_failed", "stage_id": "b"\n')       # torn
        fh.write('{"type": "pipeline.stage_failed", "stage_id": "c"}\n')
    events = read_events(tmp_path / "events.jsonl", types=["pipeline.stage_failed", "pipeline.stage_completed"])
    assert [(e["type"], e["stage_id"]) for e in events] == [("pipeline.stage_completed", "a"),
                                                            ("pipeline.stage_failed", "c")]
    latest = latest_run_events(tmp_path / "events.jsonl", None, ["pipeline.stage_started"])
    assert [e["type"] for e in latest] == ["pipeline.started", "pipeline.stage_started"]
    assert len(read_events(tmp_path / "events.jsonl")) == 4


def test_checkpoint_manager_saves_compressed_files_lists_and_prunes(tmp_path):
    manager = CheckpointManager(checkpoint_dir=tmp_path, keep_last=3)
    for i in range(5):
        manager.save_checkpoint(CheckpointData(pipeline_id="p", completed_stages=[f"s{i}"]), [f"s{i}"])
    files = manager.list_checkpoints("p")
    assert len(files) == 3 and all(f.name.endswith(".json.gz") for f in files)       # pruned automatically
    assert gzip.decompress(files[-1].read_bytes()).startswith(b"{")
    assert manager.load_checkpoint(files[-1])["completed_stages"] == ["s4"]
    assert [manager.load_checkpoint(f)["completed_stages"] for f in files] == [["s2"], ["s3"], ["s4"]]
    assert manager.prune_checkpoints("p", keep_last=1) == files[:2] and manager.list_checkpoints("p") == files[2:]
    assert manager.list_checkpoints("other") == []


def test_same_named_pipelines_of_two_folders_in_one_process_keep_their_own_events(tmp_path, monkeypatch):
    """Their state dirs have the same relative path (.pipeline/<name>): each run's events go to its own folder."""
    import json

    from pipeline_tasks import OrchestratorConfig, PipelineOrchestrator
    from pipeline_tasks.spec.loader import load_pipeline
    for folder in ("one", "two"):
        root = tmp_path / folder
        root.mkdir()
        (root / "p.yaml").write_text('pipeline: {name: same}\nstages:\n  - {id: x, type: custom, '
                                     'config: {command: "echo ' + folder + ' > {output_dir}/o", output_dir: out}}\n')
        monkeypatch.chdir(root)
        result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(
            load_pipeline(root / "p.yaml", use_cache=False))
        assert result.success, result.error_message
        events = [json.loads(line) for line in (root / ".pipeline/same/events.jsonl").read_text().splitlines()]
        assert [e["stage_id"] for e in events if e["type"] == "pipeline.stage_completed"] == ["x"]
