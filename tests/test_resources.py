"""Measured resources, capacity-aware scheduling and GPU grants, with real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from conftest import cli_env

from pipeline_tasks.engine.capacity import Capacity, Need, parse_option
from pipeline_tasks.engine.manifest import read as read_manifest
from pipeline_tasks.engine.runtime import _gpu_env
from pipeline_tasks.engine.scheduler import ResourcePool, _Ready


def _custom(stage_id: str, func: str, args: dict, extra: str = "", output: str | None = None) -> str:
    out = output or f"out/{stage_id}"
    return (f"  - id: {stage_id}\n    type: custom\n{extra}"
            f"    config: {{callable: \"resource_callables:{func}\", args: {json.dumps(args)}, output_dir: {out}}}\n")


def _pipeline(name: str, *stages: str, head: str = "") -> str:
    return f"pipeline: {{name: {name}, version: '1'}}\n{head}stages:\n" + "".join(stages)


def test_stage_past_its_mem_gb_is_stopped_and_resume_reruns_only_it(ws):
    ws.write("p.yaml", _pipeline(
        "memory",
        _custom("big", "allocate", {"mb": 400, "hold": 30},
                "    resources: {mem_gb: 0.15}\n    retry: {max_retries: 0}\n"),   # not the default retry policy's
        _custom("small", "write_and_spin", {"mb": 1}),
        _custom("after_small", "write_and_spin", {"mb": 1}, "    depends_on: [small]\n")))
    (ws.root / "allocate").write_text("")
    proc = ws.cli("run", "p.yaml", "--keep-going", "--no-progress")
    assert proc.returncode == 1
    assert "stage 'big': stopped: its processes used" in proc.stderr
    assert "above its limit mem_gb: 0.15 (154 MB)" in proc.stderr
    failed = [e for e in ws.events() if e["type"] == "pipeline.stage_failed"]
    assert [e["stage_id"] for e in failed] == ["big"]
    assert failed[0]["error_type"] == "ResourceExhaustedError"
    peak = failed[0]["usage"]["peak_rss_mb"]
    assert 154 < peak < 400 + 200, peak                 # measured past the limit, stopped well before the end
    assert not (ws.root / "out/big/.stage.json").exists()  # no manifest: not taken as done
    assert (ws.root / "out/after_small/.stage.json").exists()
    # the run (and the machine) survived: resume reruns only the stopped stage
    (ws.root / "allocate").unlink()
    ws.reset_runs()
    ws.cli("resume", "p.yaml", "--no-progress", check=True)
    assert ws.runs() == ["big"]


def test_stages_with_one_gpu_each_never_overlap_on_a_one_gpu_machine(ws):
    stages = [_custom(f"g{i}", "gpu_span", {"hold": 0.3}, "    resources: {gpu: 1}\n") for i in range(3)]
    ws.write("p.yaml", _pipeline("onegpu", *stages))
    ws.cli("run", "p.yaml", "-n", "3", "--resources", "gpu=1,cpu=3", "--no-progress", check=True)
    seen = [(ws.root / f"out/g{i}/seen.txt").read_text().split("\n") for i in range(3)]
    assert {s[0] for s in seen} == {"0"}                            # each saw the one GPU
    spans = sorted(tuple(map(float, s[1].split())) for s in seen)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"GPU stages overlapped: {spans}"
    assert sorted(ws.runs()) == ["g0", "g1", "g2"]


def test_two_gpu_stages_run_together_on_different_devices_of_a_two_gpu_machine(ws):
    room = str(ws.root / "room")
    stages = [_custom(name, "meet", {"room": room, "peers": ["a", "b"], "wait": 60}, "    resources: {gpu: 1}\n")
              for name in ("a", "b")]
    ws.write("p.yaml", _pipeline("twogpu", *stages))
    ws.cli("run", "p.yaml", "-n", "2", "--resources", "gpu=2,cpu=2", "--no-progress", check=True)
    seen = {name: (ws.root / f"out/{name}/seen.txt").read_text().split("\n") for name in ("a", "b")}
    assert seen["a"][1] == seen["b"][1] == "True"                    # each saw the other running
    assert {seen["a"][0], seen["b"][0]} == {"0", "1"}                # on a device of its own
    manifests = {name: read_manifest(str(ws.root / f"out/{name}/.stage.json")) for name in ("a", "b")}
    assert {m["metrics"]["usage"]["device"] for m in manifests.values()} == {"gpu"}
    assert sorted(d for m in manifests.values() for d in m["metrics"]["usage"]["gpu_devices"]) == ["0", "1"]


def test_declared_cpu_capacity_bounds_parallel_stages(ws):
    room = str(ws.root / "room")
    # three stages of 2 cpu on 4 cpu: two at a time, the third after; the rendezvous of the first
    # two proves they overlapped, the spans that the third did not
    stages = [_custom(n, "meet", {"room": room, "peers": ["a", "b"], "wait": 60}, "    resources: {cpu: 2}\n")
              for n in ("a", "b")]
    stages.append(_custom("c", "gpu_span", {"hold": 0.2}, "    resources: {cpu: 3}\n    priority: -1\n"))
    ws.write("p.yaml", _pipeline("cpus", *stages))
    ws.cli("run", "p.yaml", "-n", "3", "--resources", "cpu=4", "--no-progress", check=True)
    assert all((ws.root / f"out/{n}/seen.txt").read_text().split("\n")[1] == "True" for n in ("a", "b"))
    events = ws.events()
    starts = {e["stage_id"]: e["time"] for e in events if e["type"] == "pipeline.stage_started"}
    ends = {e["stage_id"]: e["time"] for e in events if e["type"] == "pipeline.stage_completed"}
    assert starts["c"] >= max(ends["a"], ends["b"]) or starts["c"] >= min(ends["a"], ends["b"])
    c_start = starts["c"]
    running_with_c = [s for s in ("a", "b") if starts[s] < c_start < ends[s]]
    assert not running_with_c, "a 3-cpu stage started while a 2-cpu stage held half of 4 cpus"


def test_priority_decides_which_ready_stage_starts_first(ws):
    stages = [_custom(name, "write_and_spin", {"mb": 0}, f"    priority: {prio}\n")
              for name, prio in (("low", -5), ("plain", 0), ("urgent", 10), ("high", 3))]
    ws.write("p.yaml", _pipeline("prio", *stages))
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    assert ws.runs() == ["urgent", "high", "plain", "low"]


def test_a_stage_needing_more_than_the_capacity_is_a_validation_error(ws):
    ws.write("p.yaml", _pipeline("toobig", _custom("a", "gpu_span", {}, "    resources: {gpu: 2}\n")))
    proc = ws.cli("run", "p.yaml", "--resources", "gpu=1", "--no-progress")
    assert proc.returncode == 2
    assert "p.yaml:3: stage 'a': needs 2 gpu but the run has 1 (declared); it could never start" in proc.stderr
    assert not (ws.root / "runs.log").exists()
    ws.write("q.yaml", _pipeline("cores", _custom("a", "gpu_span", {}, "    resources: {cpu: 100000}\n")))
    proc = ws.cli("validate", "q.yaml")
    assert proc.returncode == 2 and "needs 100000 cpu but the run has" in proc.stderr and "(detected)" in proc.stderr
    proc = ws.cli("run", "q.yaml", "--resources", "cpu=lots")
    assert proc.returncode == 2 and "--resources: 'cpu=lots' is not NAME=NUMBER" in proc.stderr


def test_usage_of_each_stage_is_measured_into_manifest_events_and_status(ws):
    ws.write("p.yaml", _pipeline("usage", _custom("w", "write_and_spin", {"mb": 3, "count": 3_000_000})))
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    usage = read_manifest(str(ws.root / "out/w/.stage.json"))["metrics"]["usage"]
    assert usage["cpu_s"] > 0.05                      # counted to three million
    assert usage["wall_s"] >= usage["cpu_s"] * 0.5
    assert usage["peak_rss_mb"] > 10                  # an interpreter at least
    assert usage["disk_write_mb"] >= 3 or usage["disk_write_mb"] == 0   # 0 where the file system keeps no count
    completed = [e for e in ws.events() if e["type"] == "pipeline.stage_completed"]
    assert completed[0]["usage"] == usage
    status = json.loads(ws.cli("status", "p.yaml", "--json", check=True).stdout)
    assert status["stages"][0]["usage"] == usage


def test_pool_grants_whole_needs_and_auto_takes_a_free_gpu_or_the_cpu():
    pool = ResourcePool(Capacity({"cpu": 4, "gpu": 2, "mem_gb": 8}, ("3", "5")))
    first = pool.take(Need({"cpu": 1, "gpu": 1}))
    assert first.gpu_devices == ("3",)
    auto = pool.take(Need({"cpu": 1}, gpu_auto=True))
    assert auto.gpu_devices == ("5",) and _gpu_env(auto.payload()) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert pool.take(Need({"gpu": 1})) is None                       # both GPUs are held
    on_cpu = pool.take(Need({"cpu": 1}, gpu_auto=True))              # auto without a free GPU: the CPU
    assert on_cpu.gpu_devices == () and _gpu_env(on_cpu.payload()) == {"CUDA_VISIBLE_DEVICES": ""}
    assert pool.take(Need({"cpu": 2})) is None and pool.take(Need({"mem_gb": 9})) is None
    pool.give(first)
    assert pool.take(Need({"gpu": 1})).gpu_devices == ("3",)
    assert pool.peak == {"cpu": 3, "gpu": 2, "mem_gb": 0}
    no_gpu_machine = ResourcePool(Capacity({"cpu": 1}))
    assert _gpu_env(no_gpu_machine.take(Need({}, gpu_auto=True)).payload()) == {}
    assert parse_option("gpu=1, mem_gb=16.5") == {"gpu": 1.0, "mem_gb": 16.5}


def test_device_auto_takes_the_free_gpu_or_runs_on_the_cpu_at_once(ws):
    room = ws.root / "room"
    stages = "".join(f"  - {{id: {n}, type: auto_device_probe, config: {{output_dir: out/{n}, room: '{room}', "
                     f"peers: [a, b]}}}}\n" for n in ("a", "b"))
    ws.write("p.yaml", _pipeline("auto", stages))
    # a fresh process: the API runs stages in worker processes only where forking is safe
    ws.write("run_auto.py", """
        from resource_callables import AutoDeviceProbe
        from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator
        builder = PipelineBuilder()
        builder.register_stage_executor("auto_device_probe", AutoDeviceProbe)
        config = OrchestratorConfig(show_progress=False, max_parallel_stages=2, resources={"gpu": 1, "cpu": 2})
        result = PipelineOrchestrator(config).execute_pipeline(builder.load_from_yaml("p.yaml"))
        raise SystemExit(0 if result.success else 1)
    """)
    subprocess.run([sys.executable, "run_auto.py"], cwd=ws.root, env=cli_env(), check=True, timeout=120)
    seen = {n: (ws.root / f"out/{n}/seen.txt").read_text().split("\n") for n in ("a", "b")}
    assert seen["a"][1] == seen["b"][1] == "True"           # neither waited for the one GPU
    assert sorted(s[0] for s in seen.values()) == ["", "0"]  # one on GPU 0, the other shown no GPU
    devices = {n: read_manifest(str(ws.root / f"out/{n}/.stage.json"))["metrics"]["usage"] for n in ("a", "b")}
    by_device = {u["device"]: u for u in devices.values()}
    assert set(by_device) == {"gpu", "cpu"} and by_device["gpu"]["gpu_devices"] == ["0"]


def test_stage_types_default_needs_and_a_stage_overrides_them():
    from pipeline_tasks.engine.capacity import stage_need
    from pipeline_tasks.models import PipelineStage

    def need(stage_type, config, resources=None):
        return stage_need(PipelineStage("s", stage_type, config=config, resources=resources or {}))

    io = {"input_dir": "in", "output_dir": "out"}
    assert need("segmentation", {**io, "model": "sam", "device": "cuda"}) == Need({"cpu": 1, "gpu": 1},
                                                                                  cpu_from_type=True)
    assert need("segmentation", {**io, "model": "sam2", "device": "auto"}) == Need({"cpu": 1}, gpu_auto=True,
                                                                                  cpu_from_type=True)
    # the weight-free backend holds a core a scene worker: one a usable core (at most 4) by default
    cores = min(4, len(os.sched_getaffinity(0)))
    assert need("segmentation", {**io, "model": "background"}) == Need({"cpu": cores}, cpu_from_type=True)
    assert need("segmentation", {**io, "model": "background", "workers": 1}) == Need({"cpu": 1}, cpu_from_type=True)
    assert need("segmentation", {**io, "model": "background"}, {"cpu": 1}) == Need({"cpu": 1})
    assert need("clustering", {**io, "device": "cuda"}) == Need({"cpu": 1, "gpu": 1}, cpu_from_type=True)
    assert need("custom", {"command": "true"}, {"cpu": 0, "mem_gb": 2}) == Need({"mem_gb": 2})
    assert need("segmentation", {**io, "model": "sam", "device": "auto"}, {"gpu": 0}) == Need({"cpu": 1},
                                                                                              cpu_from_type=True)


def test_a_run_of_fewer_cores_gives_a_stage_type_s_default_need_those_cores(ws, char_frames):
    """The background model asks by default for a core a scene worker (3 here). A run given 1 cpu
    runs it on that core, in one process, rather than refusing it; a need the stage itself
    declares is still one the run must meet."""
    seg = (f"  - id: seg\n    type: segmentation\n{{}}"
           f"    config: {{{{input_dir: {char_frames}, output_dir: out/seg, workers: 3}}}}\n")
    ws.write("p.yaml", _pipeline("fewer", seg.format("")))
    ws.cli("run", "p.yaml", "--resources", "cpu=1", "--no-progress", check=True)
    assert "scene_workers" not in read_manifest(str(ws.root / "out/seg/.stage.json"))["metrics"]
    started = [e for e in ws.events() if e["type"] == "pipeline.stage_started"]
    assert started[0]["granted"] == {"cpu": 1}
    ws.write("q.yaml", _pipeline("declared", seg.format("    resources: {cpu: 3}\n")))
    proc = ws.cli("run", "q.yaml", "--resources", "cpu=1", "--no-progress")
    assert proc.returncode == 2 and "stage 'seg': needs 3 cpu but the run has 1 (declared)" in proc.stderr


def test_stages_that_could_start_together_share_a_type_s_default_cores():
    """A type's default `cpu` (the cores it can use) is shared among the stages that could start
    now; a declared `cpu` is not; a lone stage gets every free core it can use."""
    def node(name):
        return SimpleNamespace(task=SimpleNamespace(name=name))
    wish = Need({"cpu": 4.0}, cpu_from_type=True)
    needs = {"seg:a": wish, "seg:b": wish, "seg:c": wish, "fixed": Need({"cpu": 4.0})}
    pool = ResourcePool(Capacity({"cpu": 4.0}))
    ready = _Ready(needs)
    for name in ("seg:a", "seg:b", "seg:c"):
        ready.add(node(name))
    a, grant_a = ready.pop_fitting(pool, slots=2)           # two of three may start: half the cores each
    b, grant_b = ready.pop_fitting(pool, slots=1)
    assert (a.task.name, grant_a.amounts) == ("seg:a", {"cpu": 2.0})
    assert (b.task.name, grant_b.amounts) == ("seg:b", {"cpu": 2.0})
    assert ready.pop_fitting(pool, slots=1) is None          # no core free: even a wish waits
    pool.give(grant_a)
    assert ready.pop_fitting(pool, slots=2)[1].amounts == {"cpu": 2.0}   # the last one: what is free
    pool.give(grant_b)
    ready.add(node("fixed"))
    assert ready.pop_fitting(pool, slots=2) is None          # a declared need is whole or nothing
    solo = ResourcePool(Capacity({"cpu": 4.0}))
    assert solo.share(wish, 1) is wish and solo.share(wish, 3).amounts == {"cpu": 1.0}


def test_a_batch_run_with_two_jobs_runs_two_items_side_by_side_on_a_core_each(ws, char_frames):
    """Each item of a weight-free segmentation batch can use both cores (two scene workers). Under
    `-n 2` the items share them: both start at once, on one core each, rather than one after the
    other holding both."""
    ws.write("p.yaml", _pipeline("shared", (
        "  - id: seg\n    type: segmentation\n    foreach: {items: [a, b]}\n"
        f"    config: {{input_dir: {char_frames}, output_dir: 'out/seg/{{item}}', workers: 2}}\n")))
    ws.cli("run", "p.yaml", "-n", "2", "--resources", "cpu=2", "--no-progress", check=True)
    events = ws.events()
    started = {e["stage_id"]: e for e in events if e["type"] == "pipeline.stage_started"}
    ended = {e["stage_id"]: e["time"] for e in events if e["type"] == "pipeline.stage_completed"}
    assert {k: e["granted"] for k, e in started.items()} == {"seg:a": {"cpu": 1}, "seg:b": {"cpu": 1}}
    assert max(e["time"] for e in started.values()) < min(ended.values())       # side by side
    for item in ("a", "b"):
        assert "scene_workers" not in read_manifest(str(ws.root / f"out/seg/{item}/.stage.json"))["metrics"]
    ws.cli("run", "p.yaml", "--always", "--resources", "cpu=2", "--no-progress", check=True)  # one at a time
    started = [e for e in ws.events()[len(events):] if e["type"] == "pipeline.stage_started"]
    assert [e["granted"] for e in started] == [{"cpu": 2}, {"cpu": 2}]


def test_doit_s_own_runner_holds_the_declared_capacity_too(ws):
    """Run by doit's own parallel runner (no scheduler of ours), stages still never hold more
    together than the pipeline file's capacity: three stages of one `slot` on one, in turn."""
    stages = [_custom(f"s{i}", "gpu_span", {"hold": 0.3}, "    resources: {slots: 1}\n") for i in range(3)]
    ws.write("p.yaml", _pipeline("slots", *stages, head="resources: {slots: 1}\n"))
    ws.cli("doit", "p.yaml", "--", "run", "-n", "3", "-P", "process", check=True)
    spans = sorted(tuple(map(float, (ws.root / f"out/s{i}/seen.txt").read_text().split("\n")[1].split()))
                   for i in range(3))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"stages of one slot overlapped: {spans}"
