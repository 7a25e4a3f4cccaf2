"""Batch stages (`foreach`): validation, expansion into per-item doit sub-tasks, per-item incremental
runs, gathers, orphans, failures under --keep-going, and the season demo."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pipeline_tasks import OrchestratorConfig, PipelineOrchestrator, PipelineState
from pipeline_tasks.engine.session import PipelineSession
from pipeline_tasks.errors import SpecError
from pipeline_tasks.spec.loader import load_pipeline
from pipeline_tasks.stages.gathered import labelled
from pipeline_tasks.state import events as ev

REPO = Path(__file__).resolve().parent.parent

BATCH = """
pipeline: {name: batch}
stages:
  - id: a
    type: custom
    foreach: {glob: "videos/*.mp4"}
    config:
      callable: "batch_callables:item"
      args: {text: "{item.name}"}
      output_dir: "out/a/{item}"
  - id: b
    type: custom
    foreach: a
    config:
      callable: "batch_callables:item"
      args: {text: "b-{item}", up: "{a.output_dir}"}
      output_dir: "out/b/{item}"
  - id: g
    type: custom
    depends_on: [b]
    config:
      callable: "batch_callables:gather"
      args: {dirs: "{b.output_dir}", files: "{b.output_dir}/out.txt"}
      output_dir: out/g
"""


def batch_ws(ws, episodes=("ep01", "ep02", "ep03"), text=BATCH) -> Path:
    for name in episodes:
        ws.write(f"videos/{name}.mp4", "x")
    return ws.write("batch.yaml", text)


def run(path, **config) -> object:
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False, **config))
    return orchestrator.execute_pipeline(load_pipeline(path, use_cache=False))


def started(ws) -> list[str]:
    """Stages that started in the latest run, from its events."""
    events = ws.events()
    last = max(i for i, e in enumerate(events) if e["type"] == ev.PIPELINE_STARTED)
    return sorted(e["stage_id"] for e in events[last:] if e["type"] == ev.STAGE_STARTED)


# -- validation ------------------------------------------------------------------------------------
def spec_error(ws, text: str) -> SpecError:
    path = ws.write("bad.yaml", text)
    with pytest.raises(SpecError) as info:
        load_pipeline(path, use_cache=False)
    return info.value


def test_duplicate_item_keys_name_both_files_and_a_key_template_fixes_it(ws):
    ws.write("season1/ep01.mp4", "x")
    ws.write("season2/ep01.mp4", "x")
    text = BATCH.replace("videos/*.mp4", "season*/*.mp4")
    err = spec_error(ws, text)
    assert "two items have the key 'ep01': season1/ep01.mp4 and season2/ep01.mp4" in err.message
    assert err.line == 5 and err.stage == "a"
    fixed = ws.write("fixed.yaml", text.replace('{glob: "season*/*.mp4"}',
                                                '{glob: "season*/*.mp4", key: "{parent}-{stem}"}'))
    pipeline = load_pipeline(fixed, use_cache=False)
    assert pipeline.batches["a"] == ["season1-ep01", "season2-ep01"]


def test_output_dir_without_item_is_an_error(ws):
    err = spec_error(ws, BATCH.replace('"out/b/{item}"', "out/b"))
    assert "output_dir of a foreach stage must contain {item}" in err.message
    assert (err.line, err.stage) == (16, "b")


def test_empty_glob_is_an_error_unless_allowed(ws):
    err = spec_error(ws, BATCH)
    assert "glob 'videos/*.mp4' matches no file" in err.message and "allow_empty" in err.message
    assert err.line == 5
    path = ws.write("empty.yaml", BATCH.replace('{glob: "videos/*.mp4"}', '{glob: "videos/*.mp4", allow_empty: true}'))
    pipeline = load_pipeline(path, use_cache=False)
    assert pipeline.batches == {"a": [], "b": []}
    assert pipeline.stage("g").config["args"]["dirs"] == []


@pytest.mark.parametrize("change, message, line", [
    ('foreach: a\n', "foreach names an unknown stage 'x'", 12),
    ("depends_on: [b]\n", "{item} is defined only in a stage with 'foreach'", 23),
    ('{glob: "videos/*.mp4"}', "foreach: unknown key 'glb'", 5),
    ('{glob: "videos/*.mp4"}', "item key 'ep 01' (from videos/ep 01.mp4) cannot name a task", 5),
    ('{glob: "videos/*.mp4"}', "'{item.size}': videos/ep01.mp4 has no field 'size'", 8),
])
def test_foreach_mistakes_name_file_and_line(ws, change, message, line):
    ws.write("videos/ep01.mp4", "x")
    if "unknown stage" in message:
        text = BATCH.replace(change, "foreach: x\n")
    elif "only in a stage" in message:
        text = BATCH.replace("out/g", "out/g/{item}")
    elif "unknown key" in message:
        text = BATCH.replace(change, '{glb: "videos/*.mp4"}')
    elif "cannot name a task" in message:
        ws.write("videos/ep 01.mp4", "x")
        text = BATCH
    else:
        text = BATCH.replace('text: "{item.name}"', 'text: "{item.size}"')
    err = spec_error(ws, text)
    assert message in err.message
    assert err.line == line


def test_foreach_over_a_stage_without_items_is_an_error(ws):
    text = BATCH.replace("foreach: a\n", "foreach: g0\n").replace("stages:\n", """stages:
  - id: g0
    type: custom
    config: {callable: "batch_callables:item"}
""")
    err = spec_error(ws, text)
    assert "stage 'g0' has no foreach" in err.message and err.stage == "b"


def test_items_from_vars_mapping_fields_and_typed_values(ws):
    path = ws.write("items.yaml", """
        pipeline: {name: items}
        vars:
          episodes: [{key: ep02, seed: 2}, {key: ep01, seed: 1}]
        stages:
          - id: v
            type: custom
            foreach: {items: "{vars.episodes}"}
            config:
              callable: "batch_callables:item"
              args: {seed: "{item.seed}", label: "s{item.seed}-{item}"}
              output_dir: "out/{item}"
          - id: n
            type: custom
            foreach: {items: [3, 1]}
            config:
              callable: "batch_callables:item"
              args: {n: "{item}"}
              output_dir: "out/n{item}"
        """)
    pipeline = load_pipeline(path, use_cache=False)
    assert [s.id for s in pipeline.stages] == ["v:ep01", "v:ep02", "n:1", "n:3"]
    assert pipeline.stage("v:ep01").config["args"] == {"seed": 1, "label": "s1-ep01"}
    assert pipeline.stage("n:3").config["args"] == {"n": 3}


# -- expansion ---------------------------------------------------------------------------------------
def test_item_wise_sees_its_item_and_a_gather_sees_every_item_sorted(ws):
    pipeline = load_pipeline(batch_ws(ws, ("ep02", "ep10", "ep01")), use_cache=False)
    assert [s.id for s in pipeline.stages] == ["a:ep01", "a:ep02", "a:ep10", "b:ep01", "b:ep02", "b:ep10", "g"]
    b = pipeline.stage("b:ep02")
    assert (b.group, b.item, b.depends_on) == ("b", "ep02", ["a:ep02"])
    assert b.config["args"]["up"] == "out/a/ep02"
    g = pipeline.stage("g")
    assert g.depends_on == ["b:ep01", "b:ep02", "b:ep10"]
    assert g.config["args"]["dirs"] == ["out/b/ep01", "out/b/ep02", "out/b/ep10"]
    assert g.config["args"]["files"] == ["out/b/ep01/out.txt", "out/b/ep02/out.txt", "out/b/ep10/out.txt"]


def test_doit_list_shows_stages_and_list_all_the_items(ws):
    batch_ws(ws)
    listed = ws.cli("doit", "batch.yaml", "--", "list", check=True).stdout.split("\n")
    assert [line.split()[0] for line in listed if line] == ["a", "b", "g"]
    listed = ws.cli("doit", "batch.yaml", "--", "list", "--all", check=True).stdout.split("\n")
    assert [line.split()[0] for line in listed if line] == [
        "a", "a:ep01", "a:ep02", "a:ep03", "b", "b:ep01", "b:ep02", "b:ep03", "g"]


# -- runs ----------------------------------------------------------------------------------------------
def test_first_run_noop_add_and_remove_an_item(ws):
    path = batch_ws(ws)
    result = run(path)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert started(ws) == ["a:ep01", "a:ep02", "a:ep03", "b:ep01", "b:ep02", "b:ep03", "g"]
    assert Path("out/g/all.txt").read_text().splitlines() == [
        "b ep01 b-ep01|EP01.MP4", "b ep02 b-ep02|EP02.MP4", "b ep03 b-ep03|EP03.MP4"]
    counts = [e for e in ws.events() if e["type"] == ev.STAGE_ITEMS]
    assert [(e["stage_id"], e["done"], e["total"]) for e in counts][-1] == ("b", 3, 3)
    # the gather's callable got inputs[stage][item]
    assert json.loads(Path("out/g/.stage.json").read_text())["outputs"]["items"] == 3

    result = run(path)
    assert result.executed == [] and started(ws) == []

    ws.write("videos/ep04.mp4", "x")
    result = run(path)
    assert started(ws) == ["a:ep04", "b:ep04", "g"]
    assert "b ep04 b-ep04|EP04.MP4" in Path("out/g/all.txt").read_text()

    os.remove("videos/ep02.mp4")
    Path("out/a/ep02/notes.txt").write_text("mine")      # a file the project did not write
    session = PipelineSession.open(load_pipeline(path, use_cache=False))
    plan = ws.cli("plan", "batch.yaml", check=True).stdout
    assert "orphan     a:ep02" in plan and "orphan     b:ep02" in plan
    result = run(path)
    assert started(ws) == ["g"]
    assert "ep02" not in Path("out/g/all.txt").read_text()
    status = ws.cli("status", "batch.yaml", check=True).stdout
    assert "up to date a  3/3 items" in status and "orphan     b:ep02" in status    # not run by the latest run
    assert Path("out/b/ep02/out.txt").exists()            # reported, not removed
    cleaned = ws.cli("clean", "batch.yaml", "--orphans", check=True).stdout
    assert "removed the outputs of 2 orphaned item(s): a:ep02 b:ep02" in cleaned
    assert not Path("out/b/ep02").exists() and not Path("out/a/ep02/out.txt").exists()
    assert Path("out/a/ep02/notes.txt").read_text() == "mine"
    assert "orphan" not in ws.cli("status", "batch.yaml", check=True).stdout
    assert session.pipeline.batches["a"] == ["ep01", "ep03", "ep04"]


def test_plan_summarises_items_per_stage(ws):
    path = batch_ws(ws)
    lines = ws.cli("plan", "batch.yaml", check=True).stdout.splitlines()
    assert lines[0] == "  run  a  3 of 3 items  (never run: ep01 ep02 ep03)"
    run(path)
    ws.write("videos/ep13.mp4", "x")
    ws.write("videos/ep4.mp4", "x")
    lines = ws.cli("plan", "batch.yaml", check=True).stdout.splitlines()
    assert lines[0] == "  run  a  2 of 5 items  (new input: ep4 ep13)"
    assert lines[1] == "  run  b  2 of 5 items  (new input: ep4 ep13)"
    assert lines[2] == "  run  g  (config changed; items added: b:ep4 b:ep13)"
    assert lines[3] == "5 of 11 stage(s) would run"


def test_an_item_known_to_the_last_run_but_not_finished_is_never_run_not_new(ws):
    batch_ws(ws, text=BATCH.replace('up: "{a.output_dir}"', 'fail_if: "broken/{item}"'))
    ws.write("broken/ep02", "")
    assert ws.cli("run", "batch.yaml", "--keep-going", "--no-progress").returncode == 1
    lines = ws.cli("plan", "batch.yaml", check=True).stdout.splitlines()
    assert lines[1] == "  run  b  1 of 3 items  (never run: ep02)"


def test_items_are_in_natural_key_order_everywhere(ws):
    """Digit runs compare as numbers: ep9 before ep10, in the stages, a gather's lists and inputs,
    status, plan and `doit list --all`."""
    path = batch_ws(ws, ("ep2", "ep10", "ep1", "ep9"))
    order = ["ep1", "ep2", "ep9", "ep10"]
    pipeline = load_pipeline(path, use_cache=False)
    assert pipeline.batches["a"] == order
    assert [s.id for s in pipeline.stages] == [f"{g}:{k}" for g in "ab" for k in order] + ["g"]
    assert pipeline.stage("g").depends_on == [f"b:{k}" for k in order]
    assert pipeline.stage("g").config["args"]["dirs"] == [f"out/b/{k}" for k in order]
    assert run(path).status == PipelineState.COMPLETED
    outputs = json.loads(Path("out/g/.stage.json").read_text())["outputs"]
    assert outputs["order"] == {"b": order}                     # the custom callable's inputs["b"]
    listed = ws.cli("doit", "batch.yaml", "--", "list", "--all", check=True).stdout.split("\n")
    assert [line.split()[0] for line in listed if line] == ["a", *(f"a:{k}" for k in order), "b",
                                                             *(f"b:{k}" for k in order), "g"]
    status = json.loads(ws.cli("status", "batch.yaml", "--json", check=True).stdout)
    assert [s["stage_id"] for s in status["stages"]][:4] == [f"a:{k}" for k in order]
    ws.write("videos/ep11.mp4", "x")
    ws.write("videos/ep3.mp4", "x")
    assert ws.cli("plan", "batch.yaml", check=True).stdout.splitlines()[0] == \
        "  run  a  2 of 6 items  (new input: ep3 ep11)"
    numbers = BATCH.replace('{glob: "videos/*.mp4"}', "{items: [10, 9, 1]}").replace("item.name", "item")
    numbers = ws.write("n.yaml", numbers)
    assert load_pipeline(numbers, use_cache=False).batches["a"] == ["1", "9", "10"]


def test_run_one_item(ws):
    path = batch_ws(ws)
    proc = ws.cli("run", "batch.yaml", "--stage", "b:ep02", "--no-progress", check=True)
    assert sorted(ws.runs()) == ["a:ep02", "b:ep02"], proc.stdout
    ws.reset_runs()
    result = run(path)
    assert sorted(result.executed) == ["a:ep01", "a:ep03", "b:ep01", "b:ep03", "g"]


def test_a_failing_item_fails_only_its_chain_and_resume_runs_the_rest(ws):
    batch_ws(ws, text=BATCH.replace('up: "{a.output_dir}"', 'fail_if: "broken/{item}"'))
    ws.write("broken/ep02", "")
    proc = ws.cli("run", "batch.yaml", "--keep-going", "--no-progress")
    assert proc.returncode == 1
    assert "failed items: b: ep02" in proc.stderr
    assert sorted(ws.runs()) == ["a:ep01", "a:ep02", "a:ep03", "b:ep01", "b:ep02", "b:ep03"]   # g never ran
    last = [e for e in ws.events() if e["type"] == ev.STAGE_ITEMS and e["stage_id"] == "b"][-1]
    assert (last["done"], last["failed"], last["total"]) == (2, ["ep02"], 3)
    status = json.loads(ws.cli("status", "batch.yaml", "--json", check=True).stdout)
    (b,) = [row for row in status["items"] if row["stage_id"] == "b"]
    assert (b["state"], b["items"], b["failed"], b["states"]) == ("failed", 3, ["ep02"], {"success": 2, "failed": 1})
    text = ws.cli("status", "batch.yaml", check=True).stdout
    assert "failed     b  2/3 items  failed: ep02" in text
    os.remove("broken/ep02")
    ws.reset_runs()
    ws.cli("resume", "batch.yaml", "--no-progress", check=True)
    assert sorted(ws.runs()) == ["b:ep02", "g"]


def test_spec_cache_sees_files_come_and_go(ws, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_TASKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PIPELINE_TASKS_NO_CACHE", raising=False)
    path = batch_ws(ws)
    assert load_pipeline(path).batches["a"] == ["ep01", "ep02", "ep03"]
    assert list((tmp_path / "cache").iterdir())                       # written
    ws.write("videos/ep04.mp4", "x")
    assert load_pipeline(path).batches["a"] == ["ep01", "ep02", "ep03", "ep04"]
    os.remove("videos/ep01.mp4")
    assert load_pipeline(path).batches["a"] == ["ep02", "ep03", "ep04"]


def test_labels_tell_gathered_folders_apart():
    assert labelled("work/characters") == [("", Path("work/characters"))]
    assert [label for label, _ in labelled(["work/characters/ep01", "work/characters/ep02"])] == ["ep01", "ep02"]
    assert [label for label, _ in labelled(["w/ep01/chars", "w/ep02/chars"])] == ["ep01", "ep02"]
    assert [label for label, _ in labelled(["w/s1/ep01/c", "w/s2/ep01/c"])] == ["s1", "s2"]
    assert [label for label, _ in labelled(["w/a", "w/a"])] == ["0-_", "1-_"]


# -- the season demo ------------------------------------------------------------------------------------
def season(ws, episodes: list[dict]) -> Path:
    """configs/season.yaml with the given episodes and smaller videos."""
    data = yaml.safe_load((REPO / "configs" / "season.yaml").read_text())
    data["vars"]["episodes"] = episodes
    video = data["stages"][0]["config"]
    video.update(duration=4, fps=12, width=256, height=144, num_scenes=2)
    data["stages"][3]["config"]["min_cluster_size"] = 3
    # crops of such small videos are mostly too small to train on: the batch behaviour is tested here
    data["stages"][4]["config"].update(target_size=6, min_cluster_size=2, on_low_quality="warn")
    return ws.write("season.yaml", yaml.safe_dump(data, sort_keys=False))


EPISODES = [{"key": "ep01", "seed": 11}, {"key": "ep02", "seed": 12}, {"key": "ep03", "seed": 13}]


@pytest.mark.slow
def test_season_rerun_add_and_remove_an_episode(ws):
    ws.write("season.yaml", "")
    path = season(ws, EPISODES)
    result = run(path)
    assert result.status == PipelineState.COMPLETED, result.error_message
    chain = ["characters:{0}", "episode:{0}", "frames:{0}"]
    assert started(ws) == sorted([c.format(e["key"]) for e in EPISODES for c in chain] + ["cluster", "dataset"])
    picks = [json.loads(line) for line in Path("work/season/dataset/selection.jsonl").read_text().splitlines()]
    assert picks and {p["item"] for p in picks} <= {"ep01", "ep02", "ep03"}
    assert all(f"_{p['item']}_" in p["file_name"] for p in picks)
    clusters = [json.loads(line) for line in Path("work/season/clusters/clusters.jsonl").read_text().splitlines()]
    assert {c["item"] for c in clusters} == {"ep01", "ep02", "ep03"}
    assert all(c["file"].startswith(c["item"] + "/") for c in clusters)

    assert run(path).executed == [] and started(ws) == []

    path = season(ws, EPISODES + [{"key": "ep04", "seed": 14}])
    result = run(path)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert started(ws) == ["characters:ep04", "cluster", "dataset", "episode:ep04", "frames:ep04"]

    path = season(ws, [EPISODES[0], EPISODES[2], {"key": "ep04", "seed": 14}])
    result = run(path)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert started(ws) == ["cluster", "dataset"]
    clusters = Path("work/season/clusters/clusters.jsonl").read_text()
    assert '"item": "ep02"' not in clusters and '"item": "ep04"' in clusters
    plan = ws.cli("plan", "season.yaml", check=True).stdout
    assert "orphan     episode:ep02" in plan and "3 orphaned item(s)" in plan


@pytest.mark.slow
def test_season_corrupt_episode_fails_only_its_chain(ws):
    path = season(ws, EPISODES)
    ws.cli("run", "season.yaml", "--stage", "episode", "--no-progress", check=True)
    video = Path("work/season/video/ep02/video.mp4")
    before = video.stat()
    video.write_bytes(os.urandom(before.st_size))
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))     # same size and mtime: the episode looks intact
    proc = ws.cli("run", "season.yaml", "--keep-going", "--no-progress", timeout=600)
    assert proc.returncode == 1
    assert "failed items: frames: ep02" in proc.stderr
    completed = sorted(e["stage_id"] for e in ws.events() if e["type"] == ev.STAGE_COMPLETED)
    assert completed == ["characters:ep01", "characters:ep03", "episode:ep01", "episode:ep02", "episode:ep03",
                         "frames:ep01", "frames:ep03"]
    failed = [e["stage_id"] for e in ws.events() if e["type"] == ev.STAGE_FAILED]
    assert failed == ["frames:ep02"]
    status = ws.cli("status", str(path), check=True).stdout
    assert "failed     frames  2/3 items  failed: ep02" in status


def test_graph_draws_a_batch_stage_as_one_node(ws):
    path = batch_ws(ws)
    run(path)
    dot = ws.cli("graph", "batch.yaml", "--status", check=True).stdout
    assert '"a" [label="a\\n[custom, 3 items]\\nsuccess"' in dot
    assert '"a" -> "b";' in dot and '"b" -> "g";' in dot and "ep01" not in dot


def test_a_gathers_inputs_may_lie_in_its_items_folders(ws):
    gather_inputs = 'inputs: "{b.output_dir}/out.txt"\n      output_dir: out/g'
    path = batch_ws(ws, text=BATCH.replace("output_dir: out/g", gather_inputs))
    pipeline = load_pipeline(path, use_cache=False)       # not written yet, but produced upstream
    assert pipeline.stage("g").config["inputs"] == ["out/b/ep01/out.txt", "out/b/ep02/out.txt", "out/b/ep03/out.txt"]
    err = spec_error(ws, BATCH.replace("output_dir: out/g", gather_inputs.replace("}/out", "}-x/out")))
    assert "input file 'out/b/ep01-x/out.txt' does not exist" in err.message


def test_items_run_in_parallel_processes(ws):
    path = batch_ws(ws)
    result = run(path, max_parallel_stages=2)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert sorted(ws.runs()) == ["a:ep01", "a:ep02", "a:ep03", "b:ep01", "b:ep02", "b:ep03", "g"]
    assert run(path, max_parallel_stages=2).executed == []


def test_item_values_are_literal_text_and_shell_quoted_in_commands(ws):
    path = ws.write("q.yaml", """
        pipeline: {name: q}
        vars: {n: 1}
        stages:
          - id: a
            type: custom
            foreach: {items: [{key: a, v: "x y; touch z"}, {key: b, v: "${HOME}{vars.n}"}]}
            config:
              command: "echo {item.v} > {output_dir}/o"
              output_dir: "out/{item}"
          - id: c
            type: custom
            foreach: a
            config:
              callable: "batch_callables:note"
              args: {v: "{item.v}", w: "<{item.v}>"}
              output_dir: "out/c/{item}"
        """)
    pipeline = load_pipeline(path, use_cache=False)
    assert pipeline.stage("a:a").config["command"] == "echo 'x y; touch z' > {output_dir}/o"
    # braces doubled: the custom stage's own placeholder pass reads them as literal text
    assert pipeline.stage("a:b").config["command"] == "echo '${{HOME}}{{vars.n}}' > {output_dir}/o"
    assert pipeline.stage("c:b").config["args"] == {"v": "${HOME}{vars.n}", "w": "<${HOME}{vars.n}>"}
    result = run(path)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert Path("out/a/o").read_text() == "x y; touch z\n" and not Path("z").exists()
    assert Path("out/b/o").read_text() == "${HOME}{vars.n}\n"
    assert json.loads(Path("out/c/b/args.json").read_text())["w"] == "<${HOME}{vars.n}>"


def test_recordings_config_runs_a_chain_per_file(ws):
    """configs/recordings.yaml: a folder of recordings, one extract -> transcribe -> subtitles chain each."""
    from conftest import SHARED_DATA
    for name in ("talk-a.wav", "talk-b.wav"):
        ws.write(f"recordings/{name}", "")
        (ws.root / "recordings" / name).write_bytes((SHARED_DATA / "speech_jfk" / "jfk.wav").read_bytes())
    pipeline = load_pipeline(REPO / "configs" / "recordings.yaml", use_cache=False)
    assert pipeline.batches == {s: ["talk-a", "talk-b"] for s in ("extract_audio", "transcribe", "subtitles")}
    assert pipeline.stage("extract_audio:talk-b").config["input"] == "recordings/talk-b.wav"
    assert pipeline.stage("subtitles:talk-a").depends_on == ["transcribe:talk-a"]
    assert pipeline.stage("subtitles:talk-a").config["input_dir"] == "work/recordings/transcript/talk-a"
    index = pipeline.stage("index")           # one index over every recording's subtitles
    assert index.depends_on == ["subtitles:talk-a", "subtitles:talk-b"]
    assert index.config["input_dir"] == ["work/recordings/subtitles/talk-a", "work/recordings/subtitles/talk-b"]
