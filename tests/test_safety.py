"""The safety guard with real processes: pause and resume by hand, the disk guard on a real tmpfs."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import wait_for

from pipeline_tasks.engine.runtime import should_retry
from pipeline_tasks.errors import ResourceExhaustedError
from pipeline_tasks.models import RetryPolicy


def _events(ws, kind: str) -> list[dict]:
    if not list(ws.root.glob(".pipeline/*/events.jsonl")):
        return []
    return [e for e in ws.events() if e["type"] == kind]


def _stopped(path: Path, settle: float = 0.6) -> bool:
    """True when the file a stage rewrites every 0.05 s has not changed for `settle` seconds."""
    before = path.read_text()
    time.sleep(settle)
    return path.read_text() == before


@contextlib.contextmanager
def background_run(ws, *args: str):
    """`pipeline-tasks run ARGS` in the background; killed with its workers (a session of their
    own) if the test leaves it running."""
    run = ws.popen("run", *args)
    try:
        yield run
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


@pytest.mark.parametrize("jobs", [["-n", "2"], []], ids=["workers", "in-process"])
def test_pause_and_resume_by_hand_from_a_second_process(ws, jobs):
    ws.write("p.yaml", """
        pipeline: {name: handpause, version: '1'}
        safety: {check_interval: 0.2}
        stages:
          - id: w
            type: custom
            config: {callable: "resource_callables:wait_for_file", args: {until: go, wait: 60}, output_dir: out/w}
          - id: x
            type: custom
            depends_on: [w]
            config: {command: 'echo x', output_dir: out/x}
        """)
    with background_run(ws, "p.yaml", *jobs, "--no-progress") as run:
        alive = ws.root / "out/w/alive.txt"
        wait_for(alive.exists, timeout=60, what="the stage to start")
        paused = ws.cli("pause", "p.yaml")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.startswith("paused handpause")
        status = json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)
        assert status["state"] == "paused" and status["paused_reason"] == "paused by pipeline-tasks pause"
        assert status["held"]["cpu"] == 1 and status["capacity"]["cpu"] >= 1      # w holds its one cpu
        assert "  holding cpu 1 of" in ws.cli("status", "p.yaml", check=True).stdout
        time.sleep(0.5)                      # an in-process stage stops at its next progress report
        assert _stopped(alive), "the running stage went on while the run was paused"
        (ws.root / "go").write_text("")     # would let the stage finish, were it not stopped
        time.sleep(0.5)
        assert not (ws.root / "out/w/out.txt").exists()
        assert ws.cli("resume", "p.yaml").returncode == 0
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert (ws.root / "out/x/.stage.json").exists()
    (paused_event,) = _events(ws, "pipeline.paused")
    assert paused_event["by"] == "user" and "memory_percent" in paused_event["figures"]
    assert len(_events(ws, "pipeline.resumed")) == 1
    assert ws.cli("pause", "p.yaml").returncode == 1            # not running any more
    assert "is not running" in ws.cli("pause", "p.yaml").stderr


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MB tmpfs, mounted for the test and unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}): "
                    "the disk guard needs a small real file system")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _disk_pipeline(ws, disk: Path, pause_timeout: float) -> None:
    ws.write("p.yaml", f"""
        pipeline: {{name: diskguard, version: '1'}}
        safety: {{min_free_disk_gb: 0.006, check_interval: 0.2, pause_timeout: {pause_timeout}}}
        stages:
          - id: fill
            type: custom
            retry: {{max_retries: 0}}      # a resource_exhausted failure is retried by default
            config:
              callable: "resource_callables:fill_until"
              args: {{leave_mb: 5, max_mb: 6, until: {ws.root / 'go'}, wait: 60}}
              output_dir: {disk / 'fill'}
          - id: after
            type: custom
            depends_on: [fill]
            config: {{command: 'echo after', output_dir: {disk / 'after'}}}
        """)
    # 6 MB of someone else's data: the stage's writes take free space below 6.3 MB (0.006 GB)
    (disk / "filler.bin").write_bytes(b"\0" * 6 * 1024 * 1024)


def test_disk_guard_pauses_the_run_and_goes_on_once_space_is_freed(ws, small_disk):
    _disk_pipeline(ws, small_disk, pause_timeout=120)
    with background_run(ws, "p.yaml", "-n", "2", "--no-progress") as run:
        wait_for(lambda: _events(ws, "pipeline.paused"), timeout=60, what="the run to pause")
        (paused,) = _events(ws, "pipeline.paused")
        assert paused["by"] == "guard" and "min_free_disk_gb 0.006" in paused["reason"]
        assert paused["figures"]["free_disk_gb"][str(small_disk)] < 0.006
        assert paused["stopped_processes"] >= 1
        data = small_disk / "fill/data.bin"
        size = data.stat().st_size
        (ws.root / "go").write_text("")                      # the stage is stopped: it cannot see this
        time.sleep(0.6)
        assert not (small_disk / "fill/out.txt").exists() and data.stat().st_size == size
        assert json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)["state"] == "paused"
        (small_disk / "filler.bin").unlink()                 # space comes back: the run goes on by itself
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert len(_events(ws, "pipeline.resumed")) == 1
    manifest = json.loads((small_disk / "fill/.stage.json").read_text())
    assert manifest["outputs"]["written"] == data.stat().st_size == size     # nothing lost, nothing cut
    assert (small_disk / "after/.stage.json").exists()


def test_disk_guard_fails_the_run_after_pause_timeout_and_resume_finishes_it(ws, small_disk):
    _disk_pipeline(ws, small_disk, pause_timeout=1)
    proc = ws.cli("run", "p.yaml", "-n", "2", "--no-progress", timeout=120)
    assert proc.returncode == 1
    assert "resource exhausted for" in proc.stderr and "(safety.pause_timeout 1 s)" in proc.stderr
    assert "free disk on" in proc.stderr and "below min_free_disk_gb 0.006" in proc.stderr
    (failed,) = _events(ws, "pipeline.stage_failed")
    assert failed["stage_id"] == "fill" and failed["error_type"] == "ResourceExhaustedError"
    assert not (small_disk / "fill/.stage.json").exists()    # its partial data is not taken as output
    assert not (small_disk / "after/.stage.json").exists()
    assert len(_events(ws, "pipeline.paused")) == 1
    # with the space back, resume runs what is left
    (small_disk / "filler.bin").unlink()
    (ws.root / "go").write_text("")
    ws.cli("resume", "p.yaml", "--no-progress", check=True)
    assert (small_disk / "after/.stage.json").exists()


def test_disk_guard_with_on_exhaustion_cancel_reruns_the_stage_after_the_pause(ws, small_disk):
    _disk_pipeline(ws, small_disk, pause_timeout=120)
    text = (ws.root / "p.yaml").read_text().replace("pause_timeout: 120", "pause_timeout: 120, on_exhaustion: cancel")
    (ws.root / "p.yaml").write_text(text)
    with background_run(ws, "p.yaml", "-n", "2", "--no-progress") as run:
        wait_for(lambda: any(e.get("requeued") for e in _events(ws, "pipeline.stage_failed")), timeout=60,
                 what="the running stage to be interrupted")
        (paused,) = _events(ws, "pipeline.paused")
        assert paused["on_exhaustion"] == "cancel"
        (ws.root / "go").write_text("")
        (small_disk / "filler.bin").unlink()
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert ws.runs().count("fill") == 2                       # interrupted, then run again from the start
    assert (small_disk / "after/.stage.json").exists()


def test_resource_exhausted_is_retried_when_the_policy_lists_it():
    exc = ResourceExhaustedError("free disk below min_free_disk_gb", stage="s")
    assert should_retry(exc, RetryPolicy(max_retries=1, retry_on_errors=["resource_exhausted"]), 1)
    assert not should_retry(exc, RetryPolicy(max_retries=1, retry_on_errors=["ConnectionError"]), 1)


def test_a_full_disk_fails_the_stage_naming_the_path_and_the_free_space(ws, small_disk):
    ws.write("p.yaml", f"""
        pipeline: {{name: fulldisk, version: '1'}}
        safety: {{min_free_disk_gb: 0}}
        stages:
          - id: here
            type: custom
            config:
              {{callable: "resource_callables:write_and_spin", args: {{mb: 20}}, output_dir: {small_disk / 'here'}}}
          - id: forked
            type: custom
            timeout: 60
            config:
              {{callable: "resource_callables:write_and_spin", args: {{mb: 20}}, output_dir: {small_disk / 'forked'}}}
        """)
    proc = ws.cli("run", "p.yaml", "--keep-going", "--no-progress")
    assert proc.returncode == 1
    for name in ("here", "forked"):         # in the run's process, and in a child of its own (timeout)
        assert (f"stage '{name}': no space left on device writing in {small_disk / name} (" in proc.stderr)
        assert not (small_disk / name / ".stage.json").exists()
    assert "MB free on its file system); the stage's partial outputs are not taken as complete" in proc.stderr


def test_the_guard_watches_one_folder_per_file_system_the_nearest_existing(tmp_path, monkeypatch):
    from pipeline_tasks.engine.safety import watched_folders
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "a").mkdir(parents=True)
    # folders that do not exist yet (a first run's batch) count by their nearest existing ancestor
    folders = ["out/a", "out/b/1", "out/b/2", str(tmp_path / "new" / "x" / "y")]
    assert watched_folders(folders) == [str(tmp_path / "out" / "a")]
    other = "/proc/self"                    # another file system
    assert watched_folders(["out/b/1", other + "/missing/x"]) == [str(tmp_path / "out"), other]
