"""A stage owns only what it wrote: which folders may be output folders, what a manifest records,
what `doit clean` removes, and who may write a folder at a time (one run, whose processes all end
with it)."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, wait_for

from pipeline_tasks.engine import manifest as mf

ONE_STAGE = """
pipeline: {name: own, version: "1"}
stages:
  - id: make
    type: custom
    config:
      command: "echo made > {output_dir}/made.txt && mkdir -p {output_dir}/sub && echo x > {output_dir}/sub/x.txt"
      output_dir: %s
"""


def manifest_paths(folder: Path) -> list[str]:
    return [f["path"] for f in json.loads((folder / ".stage.json").read_text())["files"]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


# -- which folders may be output folders (refused by `validate`, before anything runs) ------------------
def test_an_output_folder_holding_the_pipeline_file_is_refused(ws):
    ws.write("p.yaml", ONE_STAGE % '"."')
    ws.write("mine.txt", "the user's")
    for command in ("validate", "run"):
        proc = ws.cli(command, "p.yaml")
        assert proc.returncode == 2, proc.stderr
        assert "output_dir '.' holds the pipeline file" in proc.stderr and "Traceback" not in proc.stderr
    assert (ws.root / "mine.txt").read_text() == "the user's" and not (ws.root / ".stage.json").exists()


def test_an_output_folder_holding_or_inside_the_state_directory_is_refused(ws):
    ws.write("p.yaml", ONE_STAGE % "work")
    proc = ws.cli("--state-dir", "work/state", "validate", "p.yaml")
    assert proc.returncode == 2 and "output_dir 'work' holds the state directory" in proc.stderr
    ws.write("q.yaml", ONE_STAGE % ".pipeline/outputs")
    proc = ws.cli("validate", "q.yaml")
    assert proc.returncode == 2 and "output_dir '.pipeline/outputs' is inside the state directory" in proc.stderr


def test_a_symlinked_output_folder_is_refused(ws, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "precious.txt").write_text("keep")
    os.symlink(elsewhere, ws.root / "out")
    ws.write("p.yaml", ONE_STAGE % "out")
    proc = ws.cli("validate", "p.yaml")
    assert proc.returncode == 2 and f"output_dir 'out' is a symbolic link (to '{elsewhere}')" in proc.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]


def test_two_stages_one_folder_and_nested_folders_fail_validation_with_a_message(ws):
    ws.write("same.yaml", """
        pipeline: {name: same, version: "1"}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: out/x}}
          - {id: b, type: custom, config: {command: "true", output_dir: out/./x/}}
    """)
    proc = ws.cli("validate", "same.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "stage 'b', key 'output_dir': output_dir 'out/./x/' is already the output folder of stage 'a'" in proc.stderr
    assert "Traceback" not in proc.stderr
    ws.write("nested.yaml", """
        pipeline: {name: nested, version: "1"}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: out}}
          - {id: b, type: custom, config: {command: "true", output_dir: out/b}}
    """)
    proc = ws.cli("validate", "nested.yaml")
    assert proc.returncode == 2 and "lies inside the output folder of stage 'a' ('out')" in proc.stderr
    # the same folder reached through a linked parent is the same folder
    (ws.root / "real").mkdir()
    os.symlink(ws.root / "real", ws.root / "alias")
    ws.write("linked.yaml", """
        pipeline: {name: linked, version: "1"}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: real/x}}
          - {id: b, type: custom, config: {command: "true", output_dir: alias/x}}
    """)
    proc = ws.cli("validate", "linked.yaml")
    assert proc.returncode == 2 and "is already the output folder of stage 'a'" in proc.stderr


# -- what a manifest records, what clean removes ----------------------------------------------------------
def test_files_that_were_in_the_folder_first_are_not_outputs_and_clean_keeps_them(ws):
    out = ws.root / "out"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("the user's notes")
    (out / "sub" / "old.txt").write_text("the user's old file")
    (out / "empty_user_folder").mkdir()
    ws.write("p.yaml", ONE_STAGE % "out")
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    assert manifest_paths(out) == ["made.txt", "sub/x.txt"]
    # a rerun (the user's files still there) records the same
    ws.cli("run", "p.yaml", "--no-progress", "--always", check=True)
    assert manifest_paths(out) == ["made.txt", "sub/x.txt"]
    proc = ws.cli("doit", "p.yaml", "--", "clean", "make", check=True)
    assert "removed" in proc.stdout
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [".stage-files.jsonl", ".stage.lock", "empty_user_folder", "notes.txt", "sub", "sub/old.txt"]
    assert (out / "notes.txt").read_text() == "the user's notes"


def test_clean_removes_what_the_stage_wrote_and_the_folder_it_made(ws):
    ws.write("p.yaml", ONE_STAGE % "out/made_here")
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    assert manifest_paths(ws.root / "out/made_here") == ["made.txt", "sub/x.txt"]
    ws.cli("doit", "p.yaml", "--", "clean", "make", check=True)
    assert not (ws.root / "out/made_here").exists() and (ws.root / "out").is_dir()


def test_clean_never_follows_an_edited_manifest_or_a_link_out_of_the_folder(ws, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    victim = outside / "x.txt"
    victim.write_text("not the stage's")
    linked = outside / "linked.txt"
    linked.write_text("not the stage's either")
    ws.write("p.yaml", """
        pipeline: {name: own, version: "1"}
        stages:
          - id: make
            type: custom
            config: {command: "echo made > {output_dir}/made.txt; ln -s LINKED {output_dir}/link.txt", output_dir: out}
    """.replace("LINKED", str(linked)))
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    out = ws.root / "out"
    assert manifest_paths(out) == ["made.txt"]          # a link is no output: only regular files are
    manifest = json.loads((out / ".stage.json").read_text())
    rel = os.path.relpath(victim, out)
    manifest["files"] += [{"path": rel, "size": 15, "digest": "0" * 32},
                          {"path": "link.txt", "size": 22, "digest": "0" * 32},
                          {"path": str(victim), "size": 15, "digest": "0" * 32}]
    (out / ".stage.json").write_text(json.dumps(manifest))
    proc = ws.cli("doit", "p.yaml", "--", "clean", "make", check=True)
    assert victim.read_text() == "not the stage's" and linked.read_text() == "not the stage's either"
    assert f"kept {os.path.normpath(os.path.join('out', rel))}: outside the stage's output folder" in proc.stdout
    assert f"kept {victim}: outside the stage's output folder" in proc.stdout
    assert "kept out/link.txt: not a regular file" in proc.stdout
    assert not (out / "made.txt").exists() and (out / "link.txt").is_symlink()


def test_a_fifo_in_the_output_folder_is_not_an_output_and_does_not_hang_the_run(ws):
    ws.write("p.yaml", """
        pipeline: {name: own, version: "1"}
        stages:
          - {id: make, type: custom, config: {command: "mkfifo {output_dir}/pipe && echo ok > {output_dir}/ok.txt",
             output_dir: out}}
    """)
    ws.cli("run", "p.yaml", "--no-progress", check=True, timeout=60)
    assert manifest_paths(ws.root / "out") == ["ok.txt"]


def test_scan_records_only_regular_files_it_did_not_find_there(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    os.symlink(tmp_path / "a.txt", tmp_path / "l.txt")
    os.mkfifo(tmp_path / "f")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("b")
    (tmp_path / ".stage.lock").write_text("{}")
    files = mf.scan_files(tmp_path, exclude={"d/b.txt"})
    assert [f["path"] for f in files] == ["a.txt"]


# -- one writer per folder; its processes end with the run --------------------------------------------------
SLOW_COMMAND = """
pipeline: {name: busy, version: "1"}
stages:
  - id: busy
    type: custom
    config:
      command: "echo $$ > {pids}; sleep 600 & echo $! >> {pids}; touch {output_dir}/started; wait"
      params: {pids: %s}
      output_dir: %s
"""


def test_a_copy_of_the_pipeline_cannot_write_the_same_folders_at_once(ws):
    out = ws.root / "shared_out"
    ws.write("a/p.yaml", SLOW_COMMAND % (ws.root / "pids", out))
    # a copy under another name (another state dir), and a link (the same name: the same state dir)
    ws.write("b/p.yaml", (ws.root / "a/p.yaml").read_text().replace("name: busy", "name: busy-copy"))
    os.symlink(ws.root / "a/p.yaml", ws.root / "link.yaml")
    first = ws.popen("run", "a/p.yaml", "--no-progress")
    try:
        wait_for(lambda: (out / "started").exists(), timeout=30, what="the first run's command to start")
        second = ws.cli("run", "b/p.yaml", "--no-progress")
        assert second.returncode == 3, second.stderr
        assert f"output folder '{out}' is being written by another run: pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        second = ws.cli("run", "link.yaml", "--no-progress")
        assert second.returncode == 3, second.stderr
        assert f"pipeline 'busy' is already running: pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_kill_9_of_the_run_group_takes_the_command_and_its_children_with_it(ws):
    out = ws.root / "out"
    pids_file = ws.root / "pids"
    ws.write("p.yaml", SLOW_COMMAND % (pids_file, "out"))
    proc = ws.popen("run", "p.yaml", "--no-progress")
    wait_for(lambda: (out / "started").exists(), timeout=30, what="the command to start")
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2 and all(alive(p) for p in pids)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="the command's processes to end")
    # the folder is free again: a new run takes it (and completes, the command then being quick)
    ws.write("p.yaml", SLOW_COMMAND.replace("sleep 600 & echo $! >> {pids}; ", "") % (pids_file, "out"))
    ws.cli("run", "p.yaml", "--no-progress", check=True)


def test_kill_9_of_the_run_group_takes_a_timed_stage_and_its_children_with_it(ws):
    """A stage with a timeout runs in a forked child with a process group of its own."""
    pids_file = ws.root / "pids"
    ws.write("p.yaml", f"""
        pipeline: {{name: timed, version: "1"}}
        stages:
          - id: timed
            type: custom
            timeout: 600
            config: {{callable: "engine_callables:sleeper", args: {{pids: "{pids_file}"}}, output_dir: out}}
    """)
    proc = ws.popen("run", "p.yaml", "--no-progress")
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2, timeout=30,
             what="the stage to start")
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(p) for p in pids)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="the stage's processes to end")


def test_clean_leaves_a_folder_that_a_run_is_writing(ws):
    out = ws.root / "out"
    ws.write("p.yaml", SLOW_COMMAND % (ws.root / "pids", "out"))
    proc = ws.popen("run", "p.yaml", "--no-progress")
    try:
        wait_for(lambda: (out / "started").exists(), timeout=30, what="the command to start")
        cleaned = ws.cli("doit", "p.yaml", "--", "clean", "busy")
        assert "kept out: a run is writing it" in cleaned.stdout
        assert (out / "started").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("holder", ["", "[1, 2]", "not json"])
def test_a_damaged_lock_file_does_not_stop_a_run(ws, holder):
    ws.write("p.yaml", ONE_STAGE % "out")
    (ws.root / "out").mkdir()
    (ws.root / "out" / ".stage.lock").write_text(holder)
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    (state,) = ws.state_dirs()
    assert json.loads((ws.root / "out/.stage.lock").read_text()) == {"state_dir": str(state)}


GUARDED = """
import subprocess, sys, time
from pipeline_tasks import process_groups
procs = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(4)]
guards = [process_groups.Guard(p.pid) for p in procs]
guards[1].release()             # this one may outlive us: its stage let it go
guards[3].release()
print(" ".join(str(p.pid) for p in procs), flush=True)
time.sleep(600)
"""


def test_the_guard_kills_the_groups_it_still_watches_when_its_process_dies(tmp_path):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", GUARDED], stdout=subprocess.PIPE, text=True, start_new_session=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    try:
        assert len(pids) == 4 and all(alive(p) for p in pids)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not alive(pids[0]) and not alive(pids[2]), timeout=10, what="the watched groups to end")
        assert alive(pids[1]) and alive(pids[3])           # released: left alone
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_run_holds_no_open_file_per_output_folder(ws):
    """A batch with more output folders than the process may open files runs: a run names itself
    in each folder's lock file and holds only its state directory's lock."""
    (ws.root / "inputs").mkdir()
    for i in range(300):
        (ws.root / "inputs" / f"i{i:03d}.txt").write_text(str(i))
    ws.write("p.yaml", """
        pipeline: {name: many, version: "1"}
        stages:
          - id: a
            type: custom
            foreach: {glob: "inputs/*.txt"}
            config: {command: "cp {inputs} {output_dir}/", inputs: ["{item.path}"], output_dir: "out/a/{item}"}
          - id: b
            type: custom
            foreach: a
            config: {command: "ls {output_dir}", output_dir: "out/b/{item}"}
        """)

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "--no-progress"], cwd=ws.root,
                          env=cli_env(), capture_output=True, text=True, timeout=600, preexec_fn=few_files)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "600 stage(s) run" in proc.stdout
    assert (ws.root / "out/a/i299/i299.txt").read_text() == "299"
    (state,) = ws.state_dirs()
    assert json.loads((ws.root / "out/b/i000/.stage.lock").read_text()) == {"state_dir": str(state)}
