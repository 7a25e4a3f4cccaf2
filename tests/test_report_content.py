"""The report's content on a real run of generated media: batch stages folded to one node with an
item summary (a failed item named and linked), the scene filmstrip over the detector's score curve,
cluster sizes and noise as a chart, the audio section (player, speech spans, transcript, cues),
click-to-enlarge with the file's path, sections with nothing to show left out; checked as HTML and
in headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from urllib.parse import unquote

import pytest
from audio_fixtures import LIBRI
from test_report import CHROMIUM_FLAGS, _chromium, parse

from pipeline_tasks.report import build_report
from pipeline_tasks.stages.audio.subtitle_files import read_cues
from pipeline_tasks.stages.audio.transcript import read_segments
from pipeline_tasks.stages.video.formats import read_scenes, read_scores

SPEECH = LIBRI[1]           # a three-second LibriVox sentence

PIPELINE = """
pipeline: {name: report-content}
stages:
  - id: episode
    type: synthetic_video
    foreach: {items: [{key: ep2, seed: 2}, {key: ep10, seed: 10}, {key: ep1, seed: 1}]}
    config: {output_dir: "out/video/{item}", seed: "{item.seed}", cast_seed: 5, width: 160, height: 96, fps: 12,
             duration: 3.0, num_scenes: 3, num_characters: 2, transition: cut}
  - id: frames
    type: frame_extraction
    foreach: episode
    config: {input_video: "{episode.output_dir}/video.mp4", output_dir: "out/frames/{item}", mode: hybrid,
             interval: 0.5, min_scene_len: 6, dedup_threshold: -1, detector: content}
  - id: check                   # fails for one item
    type: custom
    foreach: frames
    config: {command: "test {item} != ep10", output_dir: "out/check/{item}"}
  - id: characters
    type: segmentation
    foreach: frames
    config: {input_dir: "{frames.output_dir}", output_dir: "out/characters/{item}"}
  - id: cluster
    type: clustering
    depends_on: [characters]
    config: {input_dir: "{characters.output_dir}", output_dir: out/clusters, min_cluster_size: 3}
  - id: extract_audio
    type: audio_extraction
    config: {input: speech.wav, output_dir: out/audio, sample_rate: 16000, channels: 1,
             vad: {enabled: true, method: silero}}
  - id: transcribe
    type: transcription
    depends_on: [extract_audio]
    config: {input_dir: "{extract_audio.output_dir}", output_dir: out/transcript, backend: pocketsphinx,
             language: en}
  - id: subtitles
    type: subtitle_generation
    depends_on: [transcribe]
    config: {input_dir: "{transcribe.output_dir}", output_dir: out/subtitles}
"""
ORDER = ["ep1", "ep2", "ep10"]


@pytest.fixture(scope="module")
def content_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_content")
    (root / "p.yaml").write_text(textwrap.dedent(PIPELINE))
    shutil.copy(SPEECH, root / "speech.wav")
    proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "--keep-going", "--no-progress"],
                          cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1 and "failed items: check: ep10" in proc.stderr, proc.stdout + proc.stderr
    (state_dir,) = [p for p in (root / ".pipeline").iterdir() if p.is_dir()]
    old = os.getcwd()
    os.chdir(root)
    try:
        page = build_report(state_dir, None, root / "report" / "report.html")
    finally:
        os.chdir(old)
    return {"root": root, "page": page, "html": page.read_text(), "state_dir": state_dir}


def manifest(root: Path, folder: str) -> dict:
    return json.loads((root / folder / ".stage.json").read_text())


def target(page: Path, href: str) -> Path:
    return (page.parent / unquote(href)).resolve()


def test_batch_stages_are_one_node_with_an_item_summary(content_run):
    doc, page = parse(content_run["html"]), content_run["page"]
    nodes = {a["data-stage"]: a["data-state"] for a in doc.find("g", **{"class": "dag-node"})}
    assert nodes == {"episode": "success", "frames": "success", "check": "failed", "characters": "success",
                     "cluster": "success", "extract_audio": "success", "transcribe": "success",
                     "subtitles": "success"}
    edges = {(a["data-from"], a["data-to"]) for a in doc.find("path", **{"class": "dag-edge"})}
    assert {("episode", "frames"), ("frames", "check"), ("characters", "cluster")} <= edges
    batches = {a["data-stage"]: a for a in doc.find("div", **{"class": "batch"})}
    assert list(batches) == ["episode", "frames", "check", "characters"]
    assert (batches["check"]["data-items"], batches["check"]["data-done"]) == ("3", "2")
    rows = [a for a in doc.find("tr") if a.get("data-item")]
    check_rows = [a for a in rows if a["id"].startswith("item-check-")]
    assert [a["data-item"] for a in check_rows] == ORDER                # natural order: ep2 before ep10
    assert [a["data-state"] for a in check_rows] == ["success", "success", "failed"]
    assert '<p class="note">failed: <a href="#item-check-ep10">ep10</a></p>' in content_run["html"]
    # each item links its output folder and, where it wrote one, its log, relative to the page
    links = re.findall(r'<tr id="item-(\w+)-(\w+)".*?</tr>', content_run["html"])
    assert len(links) == 12
    for stage, key in links:
        row = re.search(rf'<tr id="item-{stage}-{key}".*?</tr>', content_run["html"]).group(0)
        for kind, href in re.findall(r'<a class="(out|log)" href="([^"]+)"', row):
            assert target(page, href).exists(), (stage, key, kind, href)
        if not (stage == "check" and key == "ep10"):
            (out,) = re.findall(r'<a class="out" href="([^"]+)"', row)
            assert target(page, out) == (content_run["root"] / "out" / {"episode": "video"}.get(stage, stage)
                                         / key).resolve()
    log = re.search(r'<tr id="item-check-ep10".*?<a class="log" href="([^"]+)"', content_run["html"]).group(1)
    assert target(page, log) == content_run["state_dir"] / "logs" / "check:ep10.log"


def test_scene_filmstrip_over_the_detector_score_curve(content_run):
    root, html = content_run["root"], content_run["html"]
    blocks = re.findall(r'<div class="frames-block" data-stage="frames:(\w+)">(.*?)(?=<div class="frames-block"|'
                        r'</section>)', html, re.S)
    assert [key for key, _ in blocks] == ORDER
    for key, block in blocks:
        out = manifest(root, f"out/frames/{key}")["outputs"]
        scenes = read_scenes(root / out["scenes_csv"])
        scores = read_scores(root / out["scene_scores_csv"])
        # one filmstrip frame per scene, each from its scene
        strip = re.search(r'<div class="filmstrip">(.*?)</div>', block).group(1)
        captions = re.findall(r'<figcaption class="caption">scene (\d+) · frames (\d+)–(\d+)', strip)
        assert [(int(a), int(b), int(c) + 1) for a, b, c in captions] == \
            [(r.scene_index, r.start_frame, r.end_frame) for r in scenes]
        # the curve: a score for every frame decoded, the cuts where the score reached the threshold
        doc = parse(block)
        (svg,) = doc.find("svg", **{"class": "chart score-curve"})
        assert int(svg["data-frames"]) == len(scores) == manifest(root, f"out/frames/{key}")["metrics"][
            "decoded_frames"]
        cuts = [int(a["data-frame"]) for a in doc.find("line", **{"class": "cut"})]
        assert cuts == out["cuts"] and len(cuts) == len(scenes) - 1
        (line,) = doc.find("line", **{"class": "threshold"})
        assert float(line["data-value"]) == out["detector_threshold"] == 27.0
        by_frame = dict(scores)
        assert all(by_frame[c] >= out["detector_threshold"] for c in cuts)
        assert sum(1 for s in by_frame.values() if s >= out["detector_threshold"]) == len(cuts)


def test_cluster_sizes_and_noise_as_a_chart(content_run):
    out = manifest(content_run["root"], "out/clusters")["outputs"]
    doc = parse(content_run["html"])
    bars = {a["data-cluster"]: int(a["data-size"]) for a in doc.find("g", **{"class": "cluster-bar"})}
    sizes = {k: v for k, v in out["cluster_sizes"].items() if k != "noise"}
    assert {k: v for k, v in bars.items() if k != "noise"} == sizes and sizes
    assert bars.get("noise", 0) == out["noise_count"]            # a noise bar exactly when there is noise
    assert sum(bars.values()) == out["crop_count"]
    listed = [json.loads(line) for line in (content_run["root"] / "out/clusters/clusters.jsonl").read_text()
              .splitlines()]
    assert bars.get("noise", 0) == sum(1 for c in listed if c["cluster"] == -1)


def test_audio_section_player_speech_spans_transcript_and_cues(content_run):
    root, html = content_run["root"], content_run["html"]
    doc = parse(html)
    (player,) = doc.find("audio")
    assert player["src"].startswith("data:audio/wav;base64,")
    assert player["data-path"] == str(root / "out/audio/audio.wav")
    speech = json.loads((root / "out/audio/audio.json").read_text())["speech"]
    spans = doc.find("rect", data_kind="vad")
    assert [[float(a["data-start"]), float(a["data-end"])] for a in spans] == \
        [[round(a, 3), round(b, 3)] for a, b in speech] and spans
    segments = read_segments(root / "out/transcript/segments.jsonl")
    cues = read_cues(root / "out/subtitles/cues.jsonl")
    assert len(doc.find("rect", data_kind="segments")) == len(segments) == len(doc.find("p", **{"class": "segment"}))
    assert len(doc.find("rect", data_kind="cues")) == len(cues) == len(doc.find("tr", **{"class": "cue"})) > 0
    for s in segments:
        assert s.text in html


def test_empty_sections_are_left_out(content_run):
    headings = re.findall(r"<h2>([^<]+)</h2>", content_run["html"])
    assert headings == ["Stages", "Timeline", "Batch items", "Quality", "Scenes and sample frames", "Clusters", "Audio"]


def test_report_content_in_headless_chromium(content_run):
    """After the page's JS ran: images decoded, the recording's duration read by the browser, and
    the page opened at `#img-N` shows that image enlarged with its file's path."""
    exe = _chromium()
    page = content_run["page"]
    with tempfile.TemporaryDirectory() as profile:
        flags = CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--autoplay-policy=no-user-gesture-required"]
        dom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=180, check=False)
        assert dom.returncode == 0, dom.stderr[-2000:]
        doc = parse(dom.stdout)
        (root,) = doc.find("html")
        assert root.get("data-images-loaded") == "true" and int(root["data-images-total"]) > 20
        (player,) = doc.find("audio")
        duration = json.loads((content_run["root"] / "out/audio/audio.json").read_text())["duration"]
        assert abs(float(player["data-loaded-duration"]) - duration) < 0.05
        (closed,) = doc.find("div", id="lightbox")
        assert closed.get("class") in (None, "")
        # the third scene of the first item's filmstrip, enlarged
        figure = re.search(r'<div class="filmstrip">(?:.*?<img id="(img-\d+)"[^>]*data-path="([^"]+)"){3}',
                           content_run["html"]).groups()
        zoom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri() + "#" + figure[0]], capture_output=True,
                              text=True, timeout=180, check=False)
    assert zoom.returncode == 0, zoom.stderr[-2000:]
    box = re.search(r'<div id="lightbox"[^>]*>.*?</div></div>', zoom.stdout, re.S).group(0)
    (opened,) = parse(box).find("div", id="lightbox")
    assert (opened["class"], opened["data-image"]) == ("open", figure[0])
    assert f"<code>{figure[1]}</code>" in box and "scene 2 · frames" in box
    (full,) = parse(box).find("img")
    assert target(page, full["src"]) == Path(figure[1])      # the original file (a failed load shows the thumbnail)
