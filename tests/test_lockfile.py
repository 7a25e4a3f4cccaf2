"""The lock file beside a pipeline (`<name>.lock.json`) and `pipeline-tasks verify`: two clean runs in
two clones write the same outputs and lock, verify passes in a moved clone and names what changed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from conftest import Workspace

CHAIN = """
pipeline: {name: locked, version: "1"}
stages:
  - id: source
    type: custom
    config:
      output_dir: out/source
      command: "cat input.txt > {output_dir}/copy.txt"
  - id: upper
    type: custom
    depends_on: [source]
    config:
      output_dir: out/upper
      command: "tr a-z A-Z < out/source/copy.txt > {output_dir}/upper.txt"
"""

MEDIA = """
pipeline: {name: media, version: "1"}
stages:
  - id: video
    type: synthetic_video
    config: {output_dir: work/video, duration: 3, fps: 12, width: 160, height: 96, num_scenes: 3,
             num_characters: 2, seed: 5}
  - id: frames
    type: frame_extraction
    depends_on: [video]
    config: {input_video: "{video.output_dir}/video.mp4", output_dir: work/frames, mode: hybrid, interval: 0.5,
             dedup_threshold: -1}
  - id: segment
    type: segmentation
    depends_on: [frames]
    config: {input_dir: "{frames.output_dir}", output_dir: work/characters, min_area: 40}
"""


def _clone(root: Path, pipeline: str = CHAIN) -> Workspace:
    ws = Workspace(root)
    ws.write("pipe.yaml", pipeline)
    ws.write("input.txt", "hello\n")
    return ws


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a project but its per-machine state (the state folder, the output folders'
    run locks, which name the process holding them) and the manifests' run facts (metrics, duration)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".pipeline"]
        for name in files:
            if name == ".stage.lock":
                continue
            path = Path(folder) / name
            data = path.read_bytes()
            if name == ".stage.json":
                manifest = json.loads(data)
                manifest.pop("metrics")
                manifest.pop("duration", None)
                data = json.dumps(manifest, sort_keys=True).encode()
            out[path.relative_to(root).as_posix()] = data
    return out


def test_two_clones_write_the_same_lock_and_verify_passes_after_a_move(tmp_path):
    clones = [_clone(tmp_path / "one"), _clone(tmp_path / "two" / "deeper")]
    for ws in clones:
        ws.cli("run", "pipe.yaml", "--no-progress", check=True)
    lock = [(ws.root / "pipe.lock.json").read_bytes() for ws in clones]
    assert lock[0] == lock[1]
    stages = json.loads(lock[0])["stages"]
    assert set(stages) == {"source", "upper"}
    assert stages["upper"]["upstream"] == {"source": stages["source"]["output"]}
    assert stages["source"]["type"] == "custom" and stages["source"]["version"] == "1"
    assert str(tmp_path) not in lock[0].decode()
    moved = Workspace(tmp_path / "moved")
    shutil.move(clones[0].root, moved.root)
    out = moved.cli("verify", "pipe.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: the workspace is what pipe.lock.json records (2 stage(s))" in out.stdout


def test_verify_names_each_difference_and_fails(tmp_path):
    ws = _clone(tmp_path)
    assert "no lock file" in ws.cli("verify", "pipe.yaml").stdout
    ws.cli("run", "pipe.yaml", "--no-progress", check=True)
    (ws.root / "out/upper/upper.txt").write_text("tampered\n")
    out = ws.cli("verify", "pipe.yaml")
    assert out.returncode == 1
    assert out.stdout.splitlines() == ["pipe.lock.json: 1 difference(s):",
                                       "  upper: output file upper.txt changed or missing"]
    ws.write("pipe.yaml", CHAIN.replace("tr a-z A-Z", "tr a-y A-Y"))
    (ws.root / "out/source/copy.txt").unlink()
    out = ws.cli("verify", "pipe.yaml", "--max", "2")
    assert out.returncode == 1
    assert out.stdout.splitlines() == ["pipe.lock.json: 3 difference(s), the first 2:",
                                       "  source: output file copy.txt changed or missing",
                                       "  upper: config changed since the lock"]
    # a run brings the workspace and the lock back in step
    ws.cli("run", "pipe.yaml", "--no-progress", check=True)
    assert ws.cli("verify", "pipe.yaml").returncode == 0


def test_the_lock_records_the_libraries_and_verify_names_those_that_differ(tmp_path):
    """Another build of a library may write other bytes: the lock records the installed versions
    of the libraries that compute outputs; when outputs are not the locked ones, verify names
    first the libraries that differ. A run that builds nothing keeps the recorded versions."""
    import importlib.metadata
    ws = _clone(tmp_path)
    ws.cli("run", "pipe.yaml", "--no-progress", check=True)
    lock_file = ws.root / "pipe.lock.json"
    lock = json.loads(lock_file.read_text())
    numpy = importlib.metadata.version("numpy")
    assert lock["libraries"]["numpy"] == numpy and "doit" not in lock["libraries"]
    # the workspace as another build of numpy would have locked it: other bytes of `upper`
    lock["libraries"]["numpy"] = "0.1"
    lock["stages"]["upper"]["output"] = "0" * 32
    lock_file.write_text(json.dumps(lock))
    out = ws.cli("verify", "pipe.yaml")
    assert out.returncode == 1
    assert out.stdout.splitlines()[1:] == [
        f"  libraries: numpy {numpy} here, 0.1 in the lock (another build may write other bytes: install the "
        "locked versions)", "  upper: outputs are not the locked ones (out/upper/.stage.json differs)"]
    ws.cli("run", "pipe.yaml", "--no-progress", check=True)          # up to date: builds nothing
    assert json.loads(lock_file.read_text())["libraries"]["numpy"] == "0.1"
    ws.cli("run", "pipe.yaml", "--always", "--no-progress", check=True)
    assert json.loads(lock_file.read_text())["libraries"]["numpy"] == numpy


def test_a_partial_run_keeps_the_entries_of_stages_it_did_not_reach(tmp_path):
    ws = _clone(tmp_path)
    ws.cli("run", "pipe.yaml", "--no-progress", check=True)
    before = json.loads((ws.root / "pipe.lock.json").read_text())["stages"]
    ws.cli("run", "pipe.yaml", "--stage", "source", "--no-progress", check=True)
    assert json.loads((ws.root / "pipe.lock.json").read_text())["stages"] == before
    (ws.root / "out/upper/.stage.json").unlink()            # its outputs are gone: no entry
    ws.cli("run", "pipe.yaml", "--stage", "source", "--no-progress", check=True)
    assert set(json.loads((ws.root / "pipe.lock.json").read_text())["stages"]) == {"source"}


def test_media_stages_write_byte_identical_outputs_in_two_clones(tmp_path):
    clones = [_clone(tmp_path / "a", MEDIA), _clone(tmp_path / "b" / "c", MEDIA)]
    for ws in clones:
        ws.cli("run", "pipe.yaml", "--no-progress", check=True, timeout=300)
    first, second = (_files(ws.root) for ws in clones)
    assert any(name.endswith("annotations.coco.json") for name in first)
    assert any(name.endswith("scenes.edl") for name in first)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert clones[0].cli("verify", "pipe.yaml").returncode == 0


FACES = """
pipeline: {name: faces, version: "1"}
stages:
  - id: crops
    type: custom
    config: {output_dir: out/crops, command: "true"}
  - id: cluster
    type: clustering
    depends_on: [crops]
    config: {input_dir: out/crops, output_dir: out/clusters, use_face_detection: FACES}
"""


def test_the_lock_records_the_packages_a_stage_computes_with(tmp_path):
    """A stage that computes with a package beyond the project's own (clustering's face detector:
    animeface) has its version in the lock, and verify names it when it differs; a pipeline whose
    stages do not use it does not record it."""
    import importlib.metadata

    from pipeline_tasks import PipelineBuilder
    from pipeline_tasks.engine import lockfile
    from pipeline_tasks.engine.session import PipelineSession
    animeface = importlib.metadata.version("animeface")
    for faces in (True, False):
        ws = Workspace(tmp_path / str(faces))
        path = ws.write("faces.yaml", FACES.replace("FACES", str(faces).lower()))
        session = PipelineSession.open(PipelineBuilder().load_from_yaml(path), ws.root / ".pipeline")
        specs = session.lock_specs()
        assert [spec["packages"] for spec in specs] == [[], ["animeface"] if faces else []]
        lock = ws.root / "faces.lock.json"
        assert lockfile.write(lock, "faces", specs, session.manifests(), ["crops", "cluster"], [],
                              lockfile.InputDigests(None))
        libraries = json.loads(lock.read_text())["libraries"]
        assert libraries.get("animeface") == (animeface if faces else None)
        assert "numpy" in libraries and "torch" not in libraries
    assert lockfile.library_differences({"animeface": "0.1"}) == [f"animeface {animeface} here, 0.1 in the lock"]
