"""The command line a Snakemake or DVC user expects, through the real CLI: `--set`, `--until`,
`run --dry-run`, every problem of a pipeline in one `validate`, `run --stage` past a stage that
cannot load, our own error for an unknown stage name, and `enabled`."""
from __future__ import annotations

import pytest

PIPELINE = """
pipeline: {name: habits, version: "1"}
vars: {greeting: hello}
stages:
  - id: a
    type: custom
    config:
      callable: "engine_callables:write_text"
      args: {text: "{vars.greeting}"}
      output_dir: out/a
  - id: b
    type: custom
    depends_on: [a]
    config: {callable: "engine_callables:write_text", args: {text: b}, output_dir: out/b}
  - id: c
    type: custom
    depends_on: [b]
    config: {callable: "engine_callables:write_text", args: {text: c}, output_dir: out/c}
  - id: side
    type: custom
    depends_on: [a]
    config: {callable: "engine_callables:write_text", args: {text: side}, output_dir: out/side}
"""


@pytest.fixture
def pipeline(ws):
    ws.write("p.yaml", PIPELINE)
    return ws


def test_set_overrides_a_config_value_for_one_run_as_an_edit_of_the_file_would(pipeline):
    ws = pipeline
    ws.cli("run", "p.yaml", check=True)
    ws.reset_runs()
    ws.cli("run", "p.yaml", "--set", "a.args.text=HELLO", "--set", "c.args.text=see", check=True)
    assert (ws.root / "out/a/out.txt").read_text() == "HELLO"
    assert (ws.root / "out/c/out.txt").read_text().startswith("see|")
    assert sorted(ws.runs()) == ["a", "b", "c", "side"]  # a's output changed: all downstream reruns
    ws.reset_runs()
    ws.cli("run", "p.yaml", "--set", "a.args.text=HELLO", "--set", "c.args.text=see", check=True)
    assert ws.runs() == []                               # the same values: recorded, up to date
    ws.cli("run", "p.yaml", check=True)                  # without them: back to the file's values
    assert (ws.root / "out/a/out.txt").read_text() == "hello"
    ws.reset_runs()
    ws.cli("run", "p.yaml", "--set", "vars.greeting=hi", "--set", "b.args.text='7'", check=True)
    assert (ws.root / "out/a/out.txt").read_text() == "hi" and ws.runs()[0] == "a"
    assert (ws.root / "out/b/out.txt").read_text().startswith("7|")


def test_set_names_what_is_wrong(pipeline):
    ws = pipeline
    unknown = ws.cli("run", "p.yaml", "--set", "bb.args.text=x")
    assert unknown.returncode != 0 and "no stage 'bb'; did you mean 'b'?" in unknown.stderr
    assert "stages: a, b, c, side" in unknown.stderr and "Traceback" not in unknown.stderr
    malformed = ws.cli("run", "p.yaml", "--set", "a=1")
    assert malformed.returncode != 0 and "expected STAGE.KEY=VALUE" in malformed.stderr
    bad_value = ws.cli("validate", "p.yaml", "--set", "a.callable=7")
    assert bad_value.returncode == 2
    assert "p.yaml:" in bad_value.stderr and "stage 'a', key 'callable': expected string, got integer 7" \
        in bad_value.stderr
    assert not (ws.root / "out").exists()


def test_until_runs_a_stage_and_what_it_needs_only(pipeline):
    ws = pipeline
    ws.cli("run", "p.yaml", "--until", "b", check=True)
    assert ws.runs() == ["a", "b"]
    assert not (ws.root / "out/c/out.txt").exists() and not (ws.root / "out/side/out.txt").exists()


def test_run_dry_run_is_plan_and_runs_nothing(pipeline):
    ws = pipeline
    dry = ws.cli("run", "p.yaml", "--dry-run", check=True)
    assert dry.stdout == ws.cli("plan", "p.yaml", check=True).stdout
    assert "4 of 4 stage(s) would run" in dry.stdout
    assert ws.runs() == [] and not (ws.root / "out").exists()


def test_unknown_stage_name_gets_our_error_with_the_stage_list(pipeline):
    ws = pipeline
    proc = ws.cli("run", "p.yaml", "--stage", "sied")
    assert proc.returncode != 0
    assert "unknown stage 'sied'; did you mean 'side'?" in proc.stderr
    assert "the stages: a, b, c, side" in proc.stderr
    assert "invalid parameter" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert ws.runs() == []
    assert "unknown stage 'zz'" in ws.cli("run", "p.yaml", "--until", "zz").stderr


BROKEN = PIPELINE + """
  - id: late
    type: custom
    depends_on: [side]
    config: {callable: "engine_callables:write_text", args: {text: "{side.no_such_key}"}, output_dir: out/late}
  - id: later
    type: custom
    depends_on: [late]
    config: {callable: "engine_callables:write_text", output_dir: out/later}
"""


def test_run_stage_runs_past_an_unrelated_stage_that_cannot_load(ws):
    ws.write("p.yaml", BROKEN)
    whole = ws.cli("run", "p.yaml")
    assert whole.returncode == 2 and "stage 'late'" in whole.stderr and "no key 'no_such_key'" in whole.stderr
    assert ws.runs() == []
    part = ws.cli("run", "p.yaml", "--stage", "b", check=True)
    assert ws.runs() == ["a", "b"]
    assert "notice: stage 'late' is left out: not needed by this run and has a problem:" in part.stderr
    assert "notice: stage 'later' is left out" in part.stderr
    needs = ws.cli("run", "p.yaml", "--stage", "later")
    assert needs.returncode == 2 and "no key 'no_such_key'" in needs.stderr


def test_validate_reports_every_problem_in_one_pass(ws):
    ws.write("bad.yaml", """
        pipeline: {name: bad}
        stages:
          - id: one
            type: custom
            timeout: -1
            config: {callable: "engine_callables:write_text", output_dir: out/one}
          - id: two
            type: custom
            retyr: {max_retries: 1}
            config: {callable: "engine_callables:write_text", output_dir: out/two}
        """)
    proc = ws.cli("validate", "bad.yaml")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: bad.yaml:") for line in lines)
    assert "stage 'one'" in lines[0] and "must be at least 0" in lines[0]
    assert "stage 'two'" in lines[1] and "unknown key 'retyr'; did you mean 'retry'?" in lines[1]

    ws.write("bad.yaml", """
        pipeline: {name: bad}
        stages:
          - id: one
            type: custom
            config: {callable: 5, outptu_dir: out/one}
          - id: two
            type: custom
            config: {callable: "engine_callables:write_text", output_dir: out/two, args: [1]}
          - id: three
            type: custom
            depends_on: [one]
            config: {callable: "engine_callables:write_text", output_dir: "{one.nothing}"}
          - id: four
            type: no_such_type
        """)
    proc = ws.cli("validate", "bad.yaml")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert all(line.startswith("error: bad.yaml:") for line in lines), lines
    text = proc.stderr
    assert "stage 'one', key 'outptu_dir': unknown key 'outptu_dir'; did you mean 'output_dir'?" in text
    assert "stage 'one', key 'callable': expected string, got integer 5" in text
    assert "stage 'two', key 'args': expected mapping" in text
    assert "stage 'four'" in text and "no_such_type" in text
    assert "stage 'three'" not in text       # downstream of a stage with problems: not checked
    assert len(lines) == 4


def test_enabled_false_leaves_a_stage_and_its_dependants_out(pipeline):
    ws = pipeline
    proc = ws.cli("run", "p.yaml", "--set", "b.enabled=false", check=True)
    assert sorted(ws.runs()) == ["a", "side"]
    assert "notice: stage 'b' is left out: enabled: false" in proc.stderr
    assert "notice: stage 'c' is left out: upstream stage 'b' is left out" in proc.stderr
    bad = ws.cli("validate", "p.yaml", "--set", "b.enabled=sometimes")
    assert bad.returncode == 2 and "stage 'b'" in bad.stderr and "must be one of True, False, 'auto'" in bad.stderr


def test_plan_says_what_may_run_under_early_cutoff_and_respects_doit_ignore(pipeline):
    ws = pipeline
    ws.cli("run", "p.yaml", check=True)
    ws.reset_runs()
    lines = ws.cli("plan", "p.yaml", "--set", "b.args.text=bee", check=True).stdout.splitlines()
    assert "  skip a  (up to date)" in lines and "  run  b  (config changed)" in lines
    assert "  may  c  (upstream 'b' will run; this stage runs only if that changes its input)" in lines
    assert lines[-1] == "1 of 4 stage(s) would run, 1 more may run (if what runs before them changes their input)"
    ws.cli("doit", "p.yaml", "--", "ignore", "b", check=True)
    lines = ws.cli("plan", "p.yaml", "--set", "b.args.text=bee", check=True).stdout.splitlines()
    assert "  skip b  (ignored with `doit ignore`; `doit forget` ends that)" in lines
    assert "  skip c  (upstream 'b' is ignored)" in lines and lines[-1] == "0 of 4 stage(s) would run"
    ws.cli("run", "p.yaml", "--set", "b.args.text=bee", check=True)
    assert ws.runs() == []                                   # what plan said: doit skips both


def test_plan_names_a_batch_stage_once_not_each_item(ws):
    from test_foreach import BATCH
    for name in ("ep01", "ep02", "ep03"):
        ws.write(f"videos/{name}.mp4", "x")
    ws.write("batch.yaml", BATCH)
    ws.cli("run", "batch.yaml", check=True)
    (ws.root / "out/b/ep01/out.txt").write_text("edited")
    (ws.root / "out/b/ep02/out.txt").write_text("edited")
    lines = ws.cli("plan", "batch.yaml", check=True).stdout.splitlines()
    assert "  run  b  2 of 3 items  (output missing or changed: ep01 ep02)" in lines
    assert "  may  g  (upstream 'b' (2 items) will run; this stage runs only if that changes its input)" in lines


def test_a_never_run_dependant_of_a_failed_stage_is_blocked_not_failed(ws):
    ws.write("f.yaml", """
        pipeline: {name: blocked}
        stages:
          - id: bad
            type: custom
            config: {callable: "engine_callables:broken", output_dir: out/bad}
          - id: after
            type: custom
            depends_on: [bad]
            config: {callable: "engine_callables:write_text", output_dir: out/after}
          - id: last
            type: custom
            depends_on: [after]
            config: {callable: "engine_callables:write_text", output_dir: out/last}
        """)
    stopped = ws.cli("run", "f.yaml")                    # stops at the failure: the others never start
    assert stopped.returncode == 1 and "FAILED after" not in stopped.stdout
    status = ws.cli("status", "f.yaml", check=True).stdout
    assert "  failed     bad" in status and "  blocked    after" in status and "  blocked    last" in status
    proc = ws.cli("run", "f.yaml", "--keep-going")       # doit reports the stages it cannot run
    assert proc.returncode == 1
    assert "FAILED bad:" in proc.stdout and "FAILED after" not in proc.stdout and "FAILED last" not in proc.stdout
    assert "blocked after: needs bad, which did not complete" in proc.stdout
    assert "failed: 0 stage(s) run, 0 up to date, 1 failed, 2 blocked" in proc.stdout
    status = ws.cli("status", "f.yaml", check=True).stdout
    assert "  failed     bad" in status and "  blocked    after" in status and "  blocked    last" in status


SLOW = """
pipeline: {name: watched}
stages:
  - id: up
    type: custom
    config: {callable: "engine_callables:slow", args: {steps: STEPS, delay: 0.05}, output_dir: out/up}
  - id: down
    type: custom
    depends_on: [up]
    config: {callable: "engine_callables:write_text", output_dir: out/down}
"""


@pytest.mark.slow
def test_status_watch_redraws_in_place_and_a_stage_behind_a_rerunning_one_is_stale(ws):
    import json
    import os
    import pty
    import subprocess
    import sys

    from conftest import cli_env, wait_for
    ws.write("fast", "")
    ws.write("s.yaml", SLOW.replace("STEPS", "3"))
    ws.cli("run", "s.yaml", check=True)
    (ws.root / "fast").unlink()
    ws.write("s.yaml", SLOW.replace("STEPS", "400"))           # up reruns, slowly; down waits
    run = ws.popen("run", "s.yaml", "--no-progress")
    try:
        def state(stage):
            data = json.loads(ws.cli("status", "s.yaml", "--json", check=True).stdout)
            return next(s["state"] for s in data["stages"] if s["stage_id"] == stage)
        wait_for(lambda: state("up") == "running", timeout=60, what="up running")
        assert state("down") == "stale"                           # not "up to date": its input is being redone
        leader, follower = pty.openpty()
        command = [sys.executable, "-m", "pipeline_tasks", "status", "--watch", "s.yaml", "--interval", "0.2"]
        watch = subprocess.Popen(command, cwd=ws.root, env=cli_env(), stdout=follower, stderr=follower)
        os.close(follower)
        seen = b""
        while seen.count(b"watched: running") < 3:
            seen += os.read(leader, 4096)
        ws.write("fast", "")                                        # let the run finish
        assert run.wait(timeout=120) == 0
        assert watch.wait(timeout=60) == 0
        assert b"\x1b[" in seen and b"F\x1b[J" in seen              # later frames drawn over the first
    finally:
        if run.poll() is None:
            run.kill()
    assert state("down") in ("success", "up to date")
