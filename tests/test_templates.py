"""`pipeline-tasks new TEMPLATE [DIR] [--set name=value]`: each built-in template written,
validated and run end to end through the CLI on generated media (a short synthetic cartoon, the
speech the repository ships), and a second run doing nothing."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, cli_env

try:
    from audio_fixtures import build_tiny_marian, needs_ml
except ImportError:
    from .audio_fixtures import build_tiny_marian, needs_ml


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_new_lists_the_templates_and_writes_one_with_its_parameters(ws):
    listing = ws.cli("new", check=True).stdout
    for name in ("characters", "subtitles", "frames"):
        assert listing.count(f"{name} ") >= 1
    assert "parameters: name=frames videos=videos mode=hybrid interval=1.0" in listing
    out = ws.cli("new", "frames", "proj", "--set", "interval=0.5", "--set", "name=my-frames", check=True).stdout
    assert "put the inputs in proj/videos, then: cd proj && pipeline-tasks run pipeline.yaml" in out
    text = (ws.root / "proj/pipeline.yaml").read_text()
    assert text.startswith("# Frames of a folder of videos")          # the template's comments kept
    data = yaml.safe_load(text)
    assert data["pipeline"]["name"] == "my-frames" and data["vars"]["interval"] == 0.5
    assert data["vars"]["videos"] == "videos" and (ws.root / "proj/videos").is_dir()
    again = ws.cli("new", "frames", "proj")
    assert again.returncode == 1 and "proj/pipeline.yaml exists; not writing over it" in again.stderr
    assert yaml.safe_load((ws.root / "proj/pipeline.yaml").read_text())["vars"]["interval"] == 0.5
    wrong = ws.cli("new", "frames", "other", "--set", "intervall=1")
    assert wrong.returncode == 1 and "template 'frames' has no parameter 'intervall'" in wrong.stderr
    assert "its parameters: name=\"frames\", videos=\"videos\"" in wrong.stderr
    unknown = ws.cli("new", "subtitle")
    assert unknown.returncode == 1 and "no template 'subtitle'" in unknown.stderr and "subtitles:" in unknown.stderr


@pytest.mark.slow
def test_frames_template_end_to_end(ws, cut_clip):
    videos = ws.root / "clips"
    videos.mkdir()
    for name in ("one", "two"):
        shutil.copy(cut_clip["outputs"]["video"], videos / f"{name}.mp4")
    out = cli(ws.root, "new", "frames", "proj", "--set", f"videos={videos}", "--set", "interval=2").stdout
    assert "ok: pipeline 'frames' with 2 stage(s)" in out
    proj = ws.root / "proj"
    cli(proj, "validate", "pipeline.yaml")
    cli(proj, "run", "pipeline.yaml")
    for name in ("one", "two"):
        rows = [json.loads(line) for line in (proj / f"work/frames/{name}/frames.jsonl").read_text().splitlines()]
        assert len(rows) >= 6 and all((proj / f"work/frames/{name}" / r["file"]).is_file() for r in rows)
    assert "1 of 1 stage(s) would run" not in cli(proj, "plan", "pipeline.yaml").stdout
    assert "0 of " in cli(proj, "plan", "pipeline.yaml").stdout


@pytest.mark.slow
def test_characters_template_end_to_end(ws, cut_clip):
    proj = ws.root / "proj"
    cli(ws.root, "new", "characters", "proj", "--set", "min_cluster_size=5", "--set", "target_size=20",
        "--set", "resolution=128", "--set", "trigger_word=toon")
    shutil.copy(cut_clip["outputs"]["video"], proj / "videos" / "ep1.mp4")
    cli(proj, "validate", "pipeline.yaml")
    cli(proj, "run", "pipeline.yaml")
    dataset = proj / "work/dataset"
    rows = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    assert rows and all((dataset / r["file_name"]).is_file() and r["text"].startswith("toon") for r in rows)
    assert "<svg" in (proj / "work/report/report.html").read_text()
    assert "0 of 5 stage(s) would run" in cli(proj, "plan", "pipeline.yaml").stdout


@needs_ml
@pytest.mark.slow
def test_subtitles_template_end_to_end_translation_joins_when_its_model_arrives(ws):
    proj = ws.root / "proj"
    cli(ws.root, "new", "subtitles", "proj")
    shutil.copy(REPO_ROOT / "data" / "speech" / "jfk.flac", proj / "recordings" / "jfk.flac")
    first = cli(proj, "run", "pipeline.yaml")
    assert "notice: stage 'translate' is left out: enabled: auto, and translation model directory not found: " \
        "models/opus-mt-en-de" in first.stderr
    assert "country" in (proj / "work/transcript/jfk/transcript.txt").read_text()
    assert (proj / "work/subtitles/jfk/subtitles.srt").read_text().strip()
    assert not (proj / "work/translated").exists()
    index = (proj / "work/index/subtitles.txt").read_text()        # the gather ends the chain
    assert "jfk" in index and "country" in index
    build_tiny_marian(proj / "models" / "opus-mt-en-de")                 # the model arrives
    second = cli(proj, "run", "pipeline.yaml")
    assert "left out" not in second.stderr
    assert (proj / "work/translated/jfk/subtitles.de.srt").read_text().strip()
    assert "4 up to date" in second.stdout                               # only the translation ran
