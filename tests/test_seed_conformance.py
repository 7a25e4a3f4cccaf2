"""The design's own example, as written: its pipeline YAML on a generated video, its six CLI commands,
its Python snippets (builder -> orchestrator -> result fields, checkpoint manager, progress monitor,
event bus), and docs/design-mapping.md, whose every named location must exist.

The video is made here: two characters (a red figure, a yellow one), one per scene, over 28 scenes
with textured backgrounds, so `mode: scene` yields one frame a scene and clustering with
`min_cluster_size: 12` finds both. Segmentation keeps `model: "isnet"` and is given `weights:`, a
tiny ISNet-layout ONNX model built here (a per-pixel "red-and-not-blue" detector: it finds both
figures and none of the blue-green backgrounds), as no real weights file ships. Output paths are
relative and rooted by `create --output-dir`, as the design's CLI example does."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, cli_env, wait_for
from test_segmentation import make_onnx
from video_fixtures import write_video

from pipeline_tasks import (
    CheckpointManager,
    EventBus,
    ExecutionStatus,
    OrchestratorConfig,
    PipelineBuilder,
    PipelineOrchestrator,
    PipelineProgressMonitor,
    PipelineState,
)

pytestmark = pytest.mark.slow

# the design's example pipeline, verbatim but for the paths and the model
DESIGN_YAML = """\
pipeline:
  name: "character_dataset_preparation"
  version: "1.0"

stages:
  - id: "extract_frames"
    type: "frame_extraction"
    depends_on: []
    config:
      input_video: "/path/to/video.mp4"
      output_dir: "/path/to/frames"
      mode: "scene"
      scene_threshold: 0.3
      quality: "high"

  - id: "segment_characters"
    type: "segmentation"
    depends_on: ["extract_frames"]
    config:
      input_dir: "{extract_frames.output_dir}"
      output_dir: "/path/to/segmented"
      model: "isnet"
      alpha_threshold: 0.15
      extract_characters: true

  - id: "cluster_identities"
    type: "clustering"
    depends_on: ["segment_characters"]
    config:
      input_dir: "{segment_characters.output_dir}/characters"
      output_dir: "/path/to/clustered"
      min_cluster_size: 12
      use_face_detection: true

  - id: "prepare_training_data"
    type: "training_data_prep"
    depends_on: ["cluster_identities"]
    config:
      input_dir: "{cluster_identities.output_dir}"
      output_dir: "/path/to/training_data"
      generate_captions: true
      target_size: 400
"""
PIPELINE_ID = "character_dataset_preparation"
STAGES = ["extract_frames", "segment_characters", "cluster_identities", "prepare_training_data"]
SCENES = 28
DOCUMENTED_OUTPUTS = {"extract_frames": {"output_dir", "frame_count"},
                      "segment_characters": {"output_dir", "character_count"},
                      "cluster_identities": {"output_dir", "cluster_count", "cluster_sizes"},
                      "prepare_training_data": {"output_dir", "dataset_size"}}


def design_pipeline(video: Path, weights: Path) -> str:
    text = DESIGN_YAML.replace('"/path/to/video.mp4"', json.dumps(str(video)))
    for name in ("frames", "segmented", "clustered", "training_data"):
        text = text.replace(f'"/path/to/{name}"', f'"{name}"')
    return text.replace('model: "isnet"\n', f'model: "isnet"\n      weights: {json.dumps(str(weights))}\n')


def make_video(path: Path) -> Path:
    """28 scenes of 2 s at 10 fps, drawn at 160x96 and scaled to 1280x768 (crops large enough for
    512 px training images): a blue-green background with a texture of its own each (so no two
    scenes' frames look alike to the duplicate filter), and one figure walking right, the red one
    in even scenes, the yellow one in odd ones."""
    import cv2
    rng = np.random.default_rng(3)
    palette = [(40, 90, 220), (30, 200, 80), (40, 160, 200), (70, 70, 160), (20, 120, 60), (60, 200, 200)]
    frames = []
    for scene in range(SCENES):
        background = np.array(palette[scene % len(palette)]) + rng.integers(-15, 15, 3)
        texture = np.kron(rng.integers(-10, 10, (6, 10)), np.ones((16, 16), int))[:, :, None]
        x, y = int(rng.integers(20, 120)), int(rng.integers(-12, 12))
        for step in range(20):
            img = (np.broadcast_to(background, (96, 160, 3)) + texture).clip(0, 255).astype(np.uint8)
            cx = x + step
            if scene % 2 == 0:
                cv2.ellipse(img, (cx, 62 + y), (12, 20), 0, 0, 360, (230, 30, 30), -1)
                cv2.circle(img, (cx, 34 + y), 9, (250, 90, 40), -1)
            else:
                cv2.rectangle(img, (cx - 12, 44 + y), (cx + 12, 82 + y), (250, 200, 20), -1)
                cv2.rectangle(img, (cx - 8, 26 + y), (cx + 8, 42 + y), (250, 230, 60), -1)
            frames.append(cv2.resize(img, (1280, 768), interpolation=cv2.INTER_NEAREST))   # crops big enough
    return write_video(path, frames, fps=10)


def cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", *args], cwd=root, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def status_of(root: Path) -> dict:
    return json.loads(cli(root, "status", "--pipeline-id", PIPELINE_ID, "--json").stdout)


@pytest.fixture(scope="module")
def design_run(tmp_path_factory):
    """The design's CLI session: create, run, list, status, cancel mid-run, resume from the
    checkpoint, run again. What each command said is kept for the tests."""
    root = tmp_path_factory.mktemp("design")
    (root / "media").mkdir()
    video = make_video(root / "media" / "video.mp4")
    weights = make_onnx(root / "media" / "isnet-tiny.onnx")
    (root / "pipeline_definition.yaml").write_text(design_pipeline(video, weights))
    seen: dict = {}
    seen["create"] = cli(root, "create", "--config", "pipeline_definition.yaml", "--output-dir", "outputs")
    seen["list_pending"] = cli(root, "list", "--state", "pending")
    run = subprocess.Popen([sys.executable, "-m", "pipeline_tasks", "run", "--pipeline-id", PIPELINE_ID,
                            "--no-progress"], cwd=root, env=cli_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: PIPELINE_ID in cli(root, "list", "--state", "running").stdout, timeout=120,
                 what="the run to show in `list --state running`")
        seen["list_running"] = cli(root, "list", "--state", "running")
        seen["status_running"] = cli(root, "status", "--pipeline-id", PIPELINE_ID)
        seen["cancel"] = cli(root, "cancel", "--pipeline-id", PIPELINE_ID, check=False)
        seen["run_out"] = run.communicate(timeout=120)
        assert seen["cancel"].returncode == 0, (seen["cancel"].stderr, seen["run_out"])
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    seen["run_code"] = run.returncode
    seen["list_cancelled"] = cli(root, "list", "--state", "cancelled")
    seen["resume"] = cli(root, "resume", "--checkpoint", f".pipeline/{PIPELINE_ID}/checkpoint.json", "--no-progress")
    seen["status"] = cli(root, "status", "--pipeline-id", PIPELINE_ID)
    seen["status_json"] = status_of(root)
    seen["rerun"] = cli(root, "run", "--pipeline-id", PIPELINE_ID, "--no-progress")
    return {"root": root, "seen": seen}


def events(root: Path) -> list[dict]:
    lines = (root / ".pipeline" / PIPELINE_ID / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# -- the six commands --------------------------------------------------------------------------------------
def test_the_design_cli_commands(design_run):
    root, seen = design_run["root"], design_run["seen"]
    assert seen["create"].stdout.strip() == PIPELINE_ID
    assert PIPELINE_ID in seen["list_pending"].stdout and "pending" in seen["list_pending"].stdout
    assert "running" in seen["list_running"].stdout
    assert seen["status_running"].stdout.startswith(f"{PIPELINE_ID}: running")
    assert f"cancelled; continue with: pipeline-tasks resume {PIPELINE_ID}" in seen["cancel"].stdout
    assert seen["run_code"] == 130 and PIPELINE_ID in seen["list_cancelled"].stdout
    assert "completed:" in seen["resume"].stdout
    assert seen["status"].stdout.startswith(f"{PIPELINE_ID}: completed, 4/4 stages (100%)")
    states = [(s["stage_id"], s["state"]) for s in seen["status_json"]["stages"]]
    assert states[-1] == ("prepare_training_data", "success")        # the cancel stopped the run before it
    assert [stage for stage, _ in states] == STAGES and {state for _, state in states} <= {"up to date", "success"}
    assert "0 stage(s) run, 4 up to date" in seen["rerun"].stdout
    # --output-dir rooted every output folder, and nothing was written beside the pipeline file
    for folder in ("frames", "segmented", "clustered", "training_data"):
        assert (root / "outputs" / folder / ".stage.json").is_file()
        assert not (root / folder).exists()


def test_the_design_events(design_run):
    log = events(design_run["root"])
    started = [e for e in log if e["type"] == "pipeline.started"]
    assert started and all(e["pipeline_id"] == PIPELINE_ID and e["name"] == PIPELINE_ID for e in started)
    completed = [e for e in log if e["type"] == "pipeline.stage_completed"]
    assert {e["stage_id"] for e in completed} == set(STAGES)
    assert all(isinstance(e["duration"], float) and e["duration"] > 0 for e in completed)
    assert [e["type"] for e in log if e["type"] in ("pipeline.cancelled", "pipeline.completed")] == [
        "pipeline.cancelled", "pipeline.completed", "pipeline.completed"]
    assert all(e["duration"] >= 0 for e in log if e["type"] == "pipeline.completed")


# -- the Python snippets -------------------------------------------------------------------------------------
def test_the_design_python_api(design_run, monkeypatch):
    root = design_run["root"]
    monkeypatch.chdir(root)
    builder = PipelineBuilder(output_root=root / "outputs")
    pipeline = builder.load_from_yaml(root / "pipeline_definition.yaml")
    assert (pipeline.id, pipeline.name, pipeline.version) == (PIPELINE_ID, PIPELINE_ID, "1.0")
    assert pipeline.state == PipelineState.PENDING and pipeline.created_at > 0
    assert [s.type for s in pipeline.stages] == ["frame_extraction", "segmentation", "clustering",
                                                 "training_data_prep"]
    assert builder.validate_dag(pipeline) is True
    assert builder.build_execution_plan(pipeline) == [[s] for s in STAGES]

    bus = EventBus()
    seen = []
    bus.subscribe("pipeline.*", seen.append)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False), event_bus=bus)
    assert isinstance(orchestrator.progress_monitor, PipelineProgressMonitor)
    assert isinstance(orchestrator.checkpoint_manager, CheckpointManager)
    assert orchestrator.executor_registry["segmentation"].__name__ == "SegmentationExecutor"
    result = orchestrator.execute_pipeline(pipeline, resume=True)
    assert result.pipeline_id == PIPELINE_ID and result.status == PipelineState.COMPLETED
    assert result.error_message is None and result.total_duration > 0
    assert [r.stage_id for r in result.stage_results] == STAGES
    assert {r.status for r in result.stage_results} == {ExecutionStatus.SKIPPED}     # all done by the CLI
    assert {r.stage_id: r.duration for r in result.stage_results} == dict.fromkeys(STAGES)   # none ran here
    outputs = {r.stage_id: r.outputs for r in result.stage_results}
    for stage_id, keys in DOCUMENTED_OUTPUTS.items():
        assert keys <= set(outputs[stage_id]), stage_id
    frames = outputs["extract_frames"]
    assert frames["frame_count"] == len(list(Path(frames["output_dir"]).glob("*.png"))) == SCENES
    segmented = outputs["segment_characters"]
    assert segmented["character_count"] == len(list((Path(segmented["output_dir"]) / "characters").glob("*.png"))) \
        == SCENES
    clusters = outputs["cluster_identities"]
    sizes = {k: v for k, v in clusters["cluster_sizes"].items() if k != "noise"}
    assert clusters["cluster_count"] == 2 and sorted(sizes.values()) == [SCENES // 2, SCENES // 2]
    assert outputs["prepare_training_data"]["dataset_size"] > 0
    assert result.final_outputs == {"prepare_training_data": outputs["prepare_training_data"]}
    assert pipeline.progress_percent == 100 and pipeline.state == PipelineState.COMPLETED
    assert [e["type"] for e in seen] == ["pipeline.started", "pipeline.completed"]
    assert seen[0]["name"] == PIPELINE_ID and seen[1]["duration"] >= 0
    status = orchestrator.progress_monitor.get_pipeline_status(PIPELINE_ID)
    assert status["progress_percent"] == 100.0 and status["current_stage"] is None
    assert {"eta_seconds", "throughput", "stage_durations", "resource_utilization"} <= set(status)

    # the checkpoint manager on the checkpoints those runs wrote
    manager = CheckpointManager(checkpoint_dir=root / ".pipeline")
    files = manager.list_checkpoints(PIPELINE_ID)
    assert 1 <= len(files) <= 3 and all(f.name.endswith(".json.gz") for f in files)
    latest = manager.load_checkpoint(files[-1])
    assert latest["pipeline_id"] == PIPELINE_ID and latest["completed_stages"] == STAGES
    assert latest["pipeline_state"] == "completed" and latest["next_stage"] is None
    assert isinstance(latest["checkpoint_time"], float)
    assert latest["stage_outputs"]["extract_frames"]["frame_count"] == frames["frame_count"]
    assert latest["stage_outputs"]["segment_characters"]["character_count"] == segmented["character_count"]
    resumed = orchestrator.resume_from_checkpoint(files[-1])
    assert resumed.id == PIPELINE_ID and {s.status for s in resumed.stages} == {ExecutionStatus.SUCCESS}
    assert resumed.stage("cluster_identities").config["input_dir"] == str(root / "outputs/segmented/characters")


# -- the mapping page ----------------------------------------------------------------------------------------
def test_every_location_the_design_mapping_names_exists():
    text = (REPO_ROOT / "docs" / "design-mapping.md").read_text()
    names = sorted(set(re.findall(r"`(pipeline_tasks(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", text)))
    assert len(names) > 60
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):          # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"{name}: no '{attr}'"
                obj = getattr(obj, attr)
            break
    for command in ("create --config FILE --output-dir DIR", "run --pipeline-id ID", "resume --checkpoint PATH",
                    "status --pipeline-id ID", "list --state running", "cancel --pipeline-id ID"):
        assert f"`{command}`" in text
    for field_list in ("Pipeline(id, name, version, stages, config, created_at, state, checkpoint_dir)",
                       "StageResult(stage_id, status, duration, outputs, metrics, error_message, checkpoints)",
                       "PipelineResult(pipeline_id, status, total_duration, stage_results, final_outputs, "
                       "error_message)"):
        assert field_list in text
