"""Behaviour across processes: kill -9 durability, cancel/resume, the run lock, parallel stages,
status from another terminal, plain doit in the repo root."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, cli_env, wait_for

pytestmark = pytest.mark.slow

SLOW_CHAIN = """
pipeline: {name: slowchain, version: "1"}
stages:
  - id: first
    type: custom
    config: {callable: "engine_callables:write_text", args: {text: one}, output_dir: out/first}
  - id: second
    type: custom
    depends_on: [first]
    config: {callable: "engine_callables:write_text", args: {text: two}, output_dir: out/second}
  - id: long
    type: custom
    depends_on: [second]
    config: {callable: "engine_callables:slow", args: {steps: %(steps)d, delay: 0.1}, output_dir: out/long}
  - id: last
    type: custom
    depends_on: [long]
    config: {callable: "engine_callables:write_text", args: {text: end}, output_dir: out/last}
"""


def test_kill_9_mid_stage_then_rerun_executes_only_unfinished(ws):
    ws.write("p.yaml", SLOW_CHAIN % {"steps": 200})
    proc = ws.popen("run", "p.yaml", "--no-progress")
    wait_for(lambda: (ws.root / "out/long/started").exists(), timeout=60, what="stage 'long' to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ws.runs() == ["first", "second", "long"]
    assert not (ws.root / "out/long/.stage.json").exists()
    status = json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)
    assert status["state"] == "interrupted"
    assert [s["state"] for s in status["stages"]] == ["success", "success", "interrupted", "pending"]
    ws.reset_runs()
    ws.write("fast", "")          # same config, no sleeping
    done = ws.cli("run", "p.yaml", "--no-progress", check=True, timeout=120)
    assert ws.runs() == ["long", "last"], done.stdout
    assert "first (up to date)" in done.stdout and "second (up to date)" in done.stdout
    # the killed run's records went from the journal into doit's database at this run's end
    journals = list((ws.root / ".pipeline").rglob("*-journal.jsonl"))
    assert journals and all(j.stat().st_size == 0 for j in journals)
    ws.reset_runs()
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    assert ws.runs() == []


def test_concurrent_run_is_refused_naming_the_process(ws):
    ws.write("p.yaml", SLOW_CHAIN % {"steps": 100})
    proc = ws.popen("run", "p.yaml", "--no-progress")
    try:
        wait_for(lambda: (ws.root / "out/long/started").exists(), timeout=60, what="first run to reach 'long'")
        second = ws.cli("run", "p.yaml")
        assert second.returncode == 3
        assert f"is already running: pid {proc.pid}" in second.stderr
        assert "pipeline-tasks cancel" in second.stderr and "Traceback" not in second.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_status_from_another_terminal_then_cancel_and_resume(ws):
    ws.write("p.yaml", SLOW_CHAIN % {"steps": 100})
    proc = ws.popen("run", "p.yaml", "--no-progress")
    wait_for(lambda: (ws.root / "out/long/started").exists() and
             int((ws.root / "out/long/started").read_text() or 0) >= 3, timeout=60, what="progress in 'long'")
    time.sleep(0.6)   # at least one throttled progress event
    status = json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)
    assert status["state"] == "running" and status["current"] == ["long"]
    assert status["running_pid"] == proc.pid and status["done"] == 2 and status["percent"] == 50.0
    long_stage = next(s for s in status["stages"] if s["stage_id"] == "long")
    assert long_stage["progress"]["total"] == 100 and long_stage["progress"]["done"] >= 1
    assert status["eta"] is not None and status["eta"] > 0
    text = ws.cli("status", "p.yaml", check=True).stdout
    assert "running" in text and "ETA" in text

    cancel = ws.cli("cancel", "p.yaml", check=True)
    assert "cancelled" in cancel.stdout
    assert proc.wait(timeout=30) == 130
    listed = ws.cli("list", "--state", "cancelled", check=True).stdout
    assert "slowchain " in listed
    kinds = [e["type"] for e in ws.events()]
    assert kinds[-1] == "pipeline.cancelled"
    assert ws.runs() == ["first", "second", "long"]

    ws.reset_runs()
    ws.write("fast", "")
    (pipeline_id,) = [p.name for p in ws.state_dirs()]
    resumed = ws.cli("resume", pipeline_id, "--no-progress", check=True, timeout=120)
    assert ws.runs() == ["long", "last"], resumed.stdout
    status = json.loads(ws.cli("status", pipeline_id, "--json", check=True).stdout)
    assert status["state"] == "completed" and status["percent"] == 100.0


def test_resume_from_checkpoint_file(ws):
    ws.write("p.yaml", SLOW_CHAIN % {"steps": 2})
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    (state,) = ws.state_dirs()
    ws.reset_runs()
    (ws.root / "out/last/out.txt").unlink()
    ws.cli("resume", str(state / "checkpoint.json"), "--no-progress", check=True)
    assert ws.runs() == ["last"]


PARALLEL = """
pipeline: {name: parallel, version: "1"}
stages:
%s
"""


def test_independent_stages_run_in_parallel_processes(ws):
    stages = "\n".join(
        f"  - id: w{i}\n    type: custom\n    config: {{callable: \"engine_callables:slow\", "
        f"args: {{steps: 10, delay: 0.1}}, output_dir: out/w{i}}}" for i in range(2))
    ws.write("p.yaml", PARALLEL % stages)
    ws.cli("run", "p.yaml", "-n", "2", "--no-progress", check=True)
    spans = {}
    for event in ws.events():
        if event["type"] == "pipeline.stage_completed":
            spans[event["stage_id"]] = (event["started"], event["finished"], event["pid"])
    (s0, e0, p0), (s1, e1, p1) = spans["w0"], spans["w1"]
    assert p0 != p1                          # separate worker processes
    assert s1 < e0 and s0 < e1               # their runs overlapped in time


def test_plain_doit_in_repo_root_runs_and_manages_stages(ws):
    """`doit config=...` with the repository's dodo.py: run, list --status, info, forget, clean."""
    ws.write("p.yaml", SLOW_CHAIN % {"steps": 2})
    env = cli_env()

    def doit(*args):
        return subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO_ROOT / "dodo.py"), "-d", str(ws.root),
                               f"config={ws.root / 'p.yaml'}", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    first = doit()
    assert first.returncode == 0, first.stderr
    assert ws.runs() == ["first", "second", "long", "last"]
    listing = doit("list", "--status")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["U"] * 4
    info = doit("info", "long")
    assert "out/second/.stage.json" in info.stdout and "up-to-date" in info.stdout
    ws.reset_runs()
    assert doit("forget", "long").returncode == 0
    assert doit().returncode == 0
    assert ws.runs() == ["long"]               # forgotten stage reran, identical output: no cutoff
    ws.reset_runs()
    clean = doit("clean", "last")
    assert clean.returncode == 0 and not (ws.root / "out/last/out.txt").exists()
    assert not (ws.root / "out/last/.stage.json").exists()
    assert doit().returncode == 0
    assert ws.runs() == ["last"]
    # the CLI sees the same state as plain doit
    status = json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)
    assert status["state"] == "completed" and status["done"] == 4


def test_resource_tokens_keep_parallel_stages_apart(ws):
    stages = "\n".join(
        f"  - id: g{i}\n    type: custom\n    resources: {{gpu: 1}}\n"
        f"    config: {{callable: \"engine_callables:slow\", "
        f"args: {{steps: 5, delay: 0.1, record_span: true}}, output_dir: out/g{i}}}" for i in range(2))
    ws.write("p.yaml", "pipeline: {name: tokens, version: '1'}\nresources: {gpu: 1}\nstages:\n" + stages + "\n")
    ws.cli("run", "p.yaml", "-n", "2", "--no-progress", check=True)      # the scheduler holds the second back
    work = sorted(tuple(map(float, (ws.root / f"out/g{i}/work_span.txt").read_text().split())) for i in range(2))
    assert work[0][1] <= work[1][0], f"work overlapped: {work}"          # one gpu: one at a time
    # doit's own runner (no scheduler): each worker takes a stage, and the tokens keep them apart
    ws.cli("doit", "p.yaml", "--", "run", "--always-execute", "-n", "2", "-P", "process", check=True)
    work = sorted(tuple(map(float, (ws.root / f"out/g{i}/work_span.txt").read_text().split())) for i in range(2))
    assert work[0][1] <= work[1][0], f"work overlapped: {work}"
    runs = [e for e in ws.events() if e["type"] == "pipeline.stage_completed"][-2:]
    assert len({e["pid"] for e in runs}) == 2                               # yet both ran in workers


def test_resource_request_above_capacity_is_a_spec_error(ws):
    ws.write("p.yaml", "pipeline: {name: tokens}\nresources: {gpu: 1}\nstages:\n"
             "  - {id: a, type: custom, resources: {gpu: 2}, config: {command: 'true'}}\n")
    proc = ws.cli("validate", "p.yaml")
    assert proc.returncode == 2 and "p.yaml:4:" in proc.stderr
    assert "asks for 2 'gpu' but the pipeline has only 1" in proc.stderr


def test_output_into_a_closed_pipe_ends_quietly(ws):
    """`pipeline-tasks plan P | head -1`: the reader goes away; no traceback, exit 141 (SIGPIPE)."""
    lines = ["pipeline: {name: wide, version: '1'}", "stages:"]
    for i in range(200):
        lines.append(f"  - {{id: stage_number_{i:05d}, type: custom, config: {{command: 'true'}}}}")
    ws.write("wide.yaml", "\n".join(lines) + "\n")
    for command in ("plan", "graph", "validate"):
        proc = ws.popen(command, "wide.yaml")
        proc.stdout.close()                  # the reader is gone before the CLI writes
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and "BrokenPipe" not in err, (command, err)
        assert proc.returncode == 141, (command, proc.returncode, err)
