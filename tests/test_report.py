"""The HTML report: built from a real pipeline run (synthetic video -> frames -> evaluate, generated
clusters -> training_data_prep, and the report stage), checked as HTML and in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator
from pipeline_tasks.engine.session import PipelineSession
from pipeline_tasks.errors import PipelineNotFoundError
from pipeline_tasks.orchestrator import status_results
from pipeline_tasks.report import build_report, collect, run_of
from pipeline_tasks.report.timeline_svg import lanes

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_INSTALL = "apt-get install -y chromium chromium-driver"

PIPELINE_YAML = """
pipeline:
  name: report-demo
  version: "1"
stages:
  - id: video
    type: synthetic_video
    config: {output_dir: out/video, width: 160, height: 96, fps: 12, duration: 4.0, num_scenes: 3,
             num_characters: 2, seed: 5, transition: cut}
  - id: frames
    type: frame_extraction
    depends_on: [video]
    config: {input_video: "{video.output_dir}/video.mp4", output_dir: out/frames, mode: hybrid, interval: 0.5,
             min_scene_len: 6, dedup_threshold: -1}
  - id: crops
    type: custom
    config: {callable: "dataset_fixtures:crops_stage", output_dir: out/crops,
             args: {sleep: 1.5, sizes: {0: 6, 1: 5, 2: 4}, noise: 2}}
  - id: prep
    type: training_data_prep
    depends_on: [crops]
    config: {input_dir: "{crops.output_dir}/clu", output_dir: out/dataset, target_size: 9, resolution: 96,
             cluster_names: {0: alice, 1: bob, 2: carol}, trigger_word: tok}
  - id: eval
    type: evaluate
    depends_on: [frames, video]
    config: {ground_truth: "{video.output_dir}/ground_truth.json", frames_dir: "{frames.output_dir}",
             output_dir: out/eval}
  - id: report
    type: report
    depends_on: [prep, eval]
    config: {output_dir: out/report, title: "Report demo"}
"""


class _Collector(HTMLParser):
    """Elements with their attributes, and the text inside figcaptions."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        self._in_caption = tag == "figcaption"
        if self._in_caption:
            self.captions.append("")

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions[-1] += data

    def find(self, tag=None, **attrs):
        return [a for t, a in self.elements if (tag is None or t == tag)
                and all(a.get(k.replace("_", "-")) == v if v is not True else k.replace("_", "-") in a
                        for k, v in attrs.items())]


def parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the pipeline once for the module (the report stage writes out/report/report.html)."""
    import os
    import sys
    root = tmp_path_factory.mktemp("report_run")
    (root / "pipeline.yaml").write_text(textwrap.dedent(PIPELINE_YAML))
    old = os.getcwd()
    tests_dir = str(Path(__file__).resolve().parent)
    added = tests_dir not in sys.path
    if added:
        sys.path.insert(0, tests_dir)
    os.chdir(root)
    try:
        pipeline = PipelineBuilder().load_from_yaml(root / "pipeline.yaml")
        # Two stages in parallel, through the CLI in a fresh process: doit's process runner forks,
        # and forking this pytest process (which holds PyAV decoder threads from earlier tests)
        # can deadlock a worker inside libavcodec. See docs/architecture.md, "Parallel runs".
        proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", "run", "pipeline.yaml", "-n", "2",
                               "--no-progress"], cwd=root, capture_output=True, text=True, timeout=600,
                              env={**os.environ,
                                   "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = {r.stage_id: r for r in status_results(PipelineSession.open(pipeline))}
        (state_dir,) = [p for p in (root / ".pipeline").iterdir() if p.is_dir()]
        yield {"root": root, "pipeline": pipeline, "state_dir": state_dir, "results": results}
    finally:
        os.chdir(old)
        if added:
            sys.path.remove(tests_dir)


def _events(state_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (state_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_report_stage_writes_a_self_contained_page(demo_run):
    root = demo_run["root"]
    html = (root / "out/report/report.html").read_text()
    doc = parse(html)
    # self-contained: every image is a data URI, no external scripts / stylesheets / links
    imgs = doc.find("img")
    assert imgs and all(a["src"].startswith("data:image/") for a in imgs)
    assert not doc.find("script", src=True) and not doc.find("link")
    # the DAG: a node per stage with its state; edges as in the YAML
    nodes = {a["data-stage"]: a["data-state"] for a in doc.find("g", **{"class": "dag-node"})}
    assert set(nodes) == {"video", "frames", "crops", "prep", "eval", "report"}
    assert all(nodes[s] == "success" for s in nodes)      # final: the report stage too, never "running"
    assert doc.find("span", id="run-state")[0]["class"].endswith("completed")
    edges = {(a["data-from"], a["data-to"]) for a in doc.find("path", **{"class": "dag-edge"})}
    assert edges == {("video", "frames"), ("crops", "prep"), ("frames", "eval"), ("video", "eval"),
                     ("prep", "report"), ("eval", "report")}
    # the timeline: one bar per stage that ran, lanes = the overlap the events record
    bars = {a["data-stage"]: a for a in doc.find("g", **{"class": "timeline-bar"})}
    assert set(bars) == set(nodes)
    completed = [e for e in _events(demo_run["state_dir"]) if e["type"] == "pipeline.stage_completed"]
    finished = [(e["started"], e["finished"]) for e in completed]
    lanes_svg = int(doc.find("svg", id="timeline")[0]["data-lanes"])
    assert lanes_svg == _max_overlap(finished)     # the report stage starts after all of them
    assert lanes_svg >= 2                           # video and crops ran side by side (-n 2)
    assert bars["video"]["data-lane"] != bars["crops"]["data-lane"]
    # ground-truth scores from the evaluate stage, with the unscored parts named
    eval_out = demo_run["results"]["eval"].outputs
    assert f'{eval_out["scene_f1"]:.3g}' in html
    assert "masks</b>: not scored — instances not configured" in html
    # contact sheets: one per cluster; dataset sample captions are the dataset's captions
    sheets = [c for c in doc.captions if c.startswith("cluster_")]
    assert sorted(c.split(" ")[0] for c in sheets) == ["cluster_000", "cluster_001", "cluster_002"]
    assert "cluster_000 · 6 crops" in sheets
    meta = [json.loads(line) for line in (root / "out/dataset/metadata.jsonl").read_text().splitlines()]
    texts = {m["text"] for m in meta}
    dataset_captions = [c for c in doc.captions if c.startswith("tok, ")]
    assert len(dataset_captions) == 9 and set(dataset_captions) <= texts
    # sample frames with their frame index / scene
    frame_caps = [c for c in doc.captions if c.startswith("frame ")]
    assert 1 <= len(frame_caps) <= 12


def test_build_report_after_the_run(demo_run, tmp_path):
    """The library function on the finished run: the report stage is now complete too."""
    out = build_report(demo_run["state_dir"], demo_run["pipeline"], tmp_path / "r.html")
    doc = parse(out.read_text())
    nodes = {a["data-stage"]: a["data-state"] for a in doc.find("g", **{"class": "dag-node"})}
    assert set(nodes.values()) == {"success"}
    assert doc.find("span", id="run-state")[0]["class"].endswith("completed")
    # without the Pipeline object it is reloaded from the YAML the run record names
    pipeline, status, notes = run_of(demo_run["state_dir"])
    run = collect(status, pipeline, notes)
    assert run.edges_known and run.stage("eval").depends_on == ["frames", "video"]
    assert run.stage("prep").outputs["dataset_size"] == 9


def test_report_without_pipeline_source(tmp_path):
    """A state dir whose run came from a dict: no edges, stages in run order, a note saying so."""
    import os
    import sys
    tests_dir = str(Path(__file__).resolve().parent)
    sys.path.insert(0, tests_dir)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        spec = {"pipeline": {"name": "dict-run", "version": "1"},
                "stages": [{"id": "crops", "type": "custom",
                            "config": {"callable": "dataset_fixtures:crops_stage", "output_dir": "out/crops",
                                       "args": {"sizes": {0: 3, 1: 3}, "noise": 0}}},
                           {"id": "prep", "type": "training_data_prep", "depends_on": ["crops"],
                            "config": {"input_dir": "{crops.output_dir}/clu", "output_dir": "out/ds",
                                       "target_size": 4, "resolution": 64}}]}
        pipeline = PipelineBuilder().load_from_dict(spec)
        assert PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline).success
        (state_dir,) = [p for p in (tmp_path / ".pipeline").iterdir() if p.is_dir()]
        out = build_report(state_dir, None, tmp_path / "r.html")
    finally:
        os.chdir(old)
        sys.path.remove(tests_dir)
    html = out.read_text()
    doc = parse(html)
    assert [a["data-stage"] for a in doc.find("g", **{"class": "dag-node"})] == ["crops", "prep"]
    assert not doc.find("path", **{"class": "dag-edge"})
    assert "stage dependencies are not known" in html
    # sections with nothing to show are left out: no scores, frames, audio or batch items here
    headings = re.findall(r"<h2>([^<]+)</h2>", html)
    assert headings == ["Stages", "Timeline", "Quality", "Clusters", "Dataset sample"]
    assert not doc.find("section", id="frames") and not doc.find("section", id="audio")
    assert len([c for c in doc.captions if c.startswith("character_")]) == 4


def test_not_a_state_dir(tmp_path):
    with pytest.raises(PipelineNotFoundError, match="no pipeline state here"):
        build_report(tmp_path, None, tmp_path / "r.html")


def test_lane_assignment():
    assert lanes([("a", 0, 2), ("b", 1, 3), ("c", 2, 4), ("d", 2.5, 3)]) == {"a": 0, "b": 1, "c": 0, "d": 2}
    assert lanes([("a", 0, 1), ("b", 1, 2)]) == {"a": 0, "b": 0}


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(f"chromium is not installed; the report's browser test needs it: {CHROMIUM_INSTALL}")
    return exe


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]


def test_report_in_headless_chromium(demo_run):
    """Load the report in Chromium: after its JS ran every image has decoded, the DAG, the cluster
    sheets and the captions are in the DOM; the screenshot is kept under test-artifacts/."""
    exe = _chromium()
    page = (demo_run["root"] / "out/report/report.html").resolve()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        flags = CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]
        dom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180,
                             check=False)
        assert dom.returncode == 0, dom.stderr[-2000:]
        subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                       capture_output=True, text=True, timeout=180, check=True)
    doc = parse(dom.stdout)
    (root,) = doc.find("html")
    n_imgs = len(doc.find("img"))
    assert root.get("data-images-loaded") == "true", (root, [a.get("alt") for a in doc.find("img", data_broken="true")])
    assert int(root["data-images-total"]) == n_imgs > 0 and root["data-images-broken"] == "0"
    assert len(doc.find("g", **{"class": "dag-node"})) == 6
    assert len([c for c in doc.captions if c.startswith("cluster_")]) == 3
    assert len([c for c in doc.captions if c.startswith("tok, ")]) == 9
    # the screenshot is a real rendering, not a blank page
    from PIL import Image, ImageStat
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        stat = ImageStat.Stat(im.convert("L"))
        assert stat.stddev[0] > 10
        colours = len(im.convert("RGB").resize((320, 600)).getcolors(1 << 20) or [])
        assert colours > 50


def test_report_stage_state_dir_from_config_or_error(demo_run, tmp_path):
    from pipeline_tasks.errors import StageInputError
    from pipeline_tasks.report.stage import ReportExecutor
    with pytest.raises(StageInputError, match="no state dir to report on"):
        ReportExecutor("r", {"output_dir": str(tmp_path / "a")}).execute({})
    with pytest.raises(StageInputError, match="no pipeline state here"):
        ReportExecutor("r", {"output_dir": str(tmp_path / "a"), "state_dir": str(tmp_path)}).execute({})
    res = ReportExecutor("r", {"output_dir": str(tmp_path / "b"), "state_dir": str(demo_run["state_dir"]),
                            "filename": "x.html", "max_frames": 2}).execute({})
    doc = parse(Path(res.outputs["report"]).read_text())
    assert res.outputs["report"] == str(tmp_path / "b" / "x.html")
    assert len([c for c in doc.captions if c.startswith("frame ")]) == 2


def test_report_of_a_failed_run(ws):
    """A stage that fails: the report shows it failed with its error, its dependent as blocked."""
    path = ws.write("p.yaml", """
        pipeline: {name: failing, version: "1"}
        stages:
          - {id: ok, type: custom, config: {command: "echo hi > {output_dir}/x.txt", output_dir: out/ok}}
          - {id: broken, type: custom, depends_on: [ok],
             config: {command: "echo 'disk on fire' >&2; exit 3", output_dir: out/broken}}
          - {id: after, type: custom, depends_on: [broken], config: {command: "true", output_dir: out/after}}
    """)
    pipeline = PipelineBuilder().load_from_yaml(path)
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)
    assert not result.success
    (state_dir,) = ws.state_dirs()
    html = build_report(state_dir, None, ws.root / "r.html").read_text()
    doc = parse(html)
    nodes = {a["data-stage"]: a["data-state"] for a in doc.find("g", **{"class": "dag-node"})}
    assert nodes == {"ok": "success", "broken": "failed", "after": "blocked"}
    assert "disk on fire" in html
    assert doc.find("span", id="run-state")[0]["class"] == "state failed"
    assert {a["data-stage"] for a in doc.find("g", **{"class": "timeline-bar"})} == {"ok", "broken"}
