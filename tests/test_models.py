"""Model catalogue, cache and fetch, offline: a loopback HTTP server (127.0.0.1, stopped by each
test, and by itself after a minute at most) serves a small ONNX model built here. Fetch, an
interrupted fetch resumed with a Range request, a corrupt download and a wrong sha256 rejected,
a cache hit with the server gone; a config naming the model by its catalogue name runs it; the
CLI's `models list | fetch | verify`; `validate` naming the fetch command and missing packages."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from character_fixtures import run_segmentation
from test_segmentation import make_onnx, read_instances, square_frames

from pipeline_tasks.errors import ModelWeightsError, StageConfigError
from pipeline_tasks.weights import catalogue, store
from pipeline_tasks.weights.catalogue import ModelEntry
from pipeline_tasks.weights.fetch import ModelFetchError, fetch

REPO = Path(__file__).resolve().parent.parent


class ModelServer:
    """Serves `payload` at /<name>. `cut_after`: a whole-file answer stops after that many bytes
    (the connection drops); `corrupt`: one byte of every answer is flipped; `ranges`: the Range
    headers received."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.cut_after: int | None = None
        self.corrupt = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = bytearray(server.payload)
                if server.corrupt:
                    data[len(data) // 2] ^= 0xFF
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                body = bytes(data[start:])
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None and not rng:
                    self.wfile.write(body[:server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.timer = threading.Timer(60, self.stop)          # stops by itself whatever happens
        self.timer.daemon = True
        self.timer.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def model_bytes(tmp_path) -> bytes:
    return make_onnx(tmp_path / "tiny.onnx").read_bytes()


@pytest.fixture
def server(model_bytes):
    srv = ModelServer(model_bytes)
    yield srv
    srv.stop()


def entry_for(server: ModelServer, payload: bytes, **changes) -> ModelEntry:
    values = dict(name="tiny-isnet", file="tiny-isnet.onnx", url=server.url("tiny-isnet.onnx"), size=len(payload),
                  sha256=hashlib.sha256(payload).hexdigest(), licence="test", used_by="segmentation model: isnet")
    return ModelEntry(**{**values, **changes})


def write_catalogue(path: Path, entry: ModelEntry) -> Path:
    path.write_text(yaml.safe_dump([entry.__dict__]))
    return path


def test_fetch_verifies_and_a_second_fetch_needs_no_network(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes)
    seen = []
    path, how = fetch(entry, models_dir, progress=lambda done, total: seen.append((done, total)))
    assert how == "downloaded" and path.read_bytes() == model_bytes
    assert seen[-1] == (len(model_bytes), len(model_bytes))
    assert store.state_of(entry, models_dir).state == "verified"
    server.stop()                                             # no network from here on
    assert fetch(entry, models_dir) == (path, "cached")
    assert store.verified_file(entry, models_dir) == path


def test_interrupted_fetch_resumes_with_a_range_request(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes)
    half = len(model_bytes) // 2
    server.cut_after = half
    with pytest.raises(ModelFetchError) as err:
        fetch(entry, models_dir)
    assert f"interrupted after {half} of {len(model_bytes)} bytes" in str(err.value)
    assert "run the same command again to resume" in str(err.value)
    part = models_dir / "tiny-isnet.onnx.part"
    assert part.stat().st_size == half and not (models_dir / "tiny-isnet.onnx").exists()
    assert store.state_of(entry, models_dir).state == "partial"
    path, how = fetch(entry, models_dir)
    assert how == "resumed" and server.ranges[-1] == f"bytes={half}-"
    assert path.read_bytes() == model_bytes and not part.exists()


def test_corrupt_download_is_rejected_and_deleted(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes)
    server.corrupt = True
    with pytest.raises(ModelWeightsError) as err:
        fetch(entry, models_dir)
    assert "is not the catalogue's file" in str(err.value) and "sha256" in str(err.value)
    assert list(models_dir.iterdir()) == []                   # nothing kept, not even the .part
    server.corrupt = False
    assert fetch(entry, models_dir)[1] == "downloaded"


def test_wrong_sha256_in_the_catalogue_is_rejected(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes, sha256="0" * 64)
    with pytest.raises(ModelWeightsError) as err:
        fetch(entry, models_dir)
    assert f"the catalogue says {'0' * 64}" in str(err.value)
    assert not (models_dir / "tiny-isnet.onnx").exists()


def test_wrong_size_is_rejected(server, model_bytes, models_dir):
    with pytest.raises(ModelWeightsError) as err:
        fetch(entry_for(server, model_bytes, size=len(model_bytes) + 1), models_dir)
    assert f"{len(model_bytes)} bytes, the catalogue says {len(model_bytes) + 1}" in str(err.value)


def test_unpinned_model_records_its_digest_and_later_changes_are_caught(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes, sha256=None, size=None)
    path, _ = fetch(entry, models_dir)
    assert store.state_of(entry, models_dir, rehash=True).state == "verified"
    damaged = bytearray(model_bytes)
    damaged[10] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(ModelWeightsError) as err:
        store.verified_file(entry, models_dir)
    assert "is damaged" in str(err.value) and "pipeline-tasks models fetch tiny-isnet" in str(err.value)


def test_a_changed_cached_file_is_digested_again_before_use(server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes)
    path, _ = fetch(entry, models_dir)
    damaged = bytearray(model_bytes)
    damaged[-1] ^= 1                                          # same size, new mtime
    path.write_bytes(bytes(damaged))
    assert store.state_of(entry, models_dir).state == "unchecked"
    with pytest.raises(ModelWeightsError):
        store.verified_file(entry, models_dir)
    assert fetch(entry, models_dir)[1] == "downloaded"        # the damaged copy is replaced
    assert path.read_bytes() == model_bytes


def test_unreachable_server_names_the_model(models_dir):
    entry = ModelEntry("gone", "gone.onnx", "http://127.0.0.1:9/gone.onnx", 10, None, "x", "segmentation model: isnet")
    with pytest.raises(ModelFetchError) as err:
        fetch(entry, models_dir, timeout=5)
    assert "cannot fetch model 'gone'" in str(err.value)


def test_catalogue_file_entries_are_checked(tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text(yaml.safe_dump([{"name": "x", "file": "../x.onnx", "url": "http://127.0.0.1/x"}]))
    with pytest.raises(Exception) as err:
        catalogue.load(bad)
    assert "plain file name" in str(err.value)
    assert {e.name for e in catalogue.BUILTIN} <= set(catalogue.load())
    assert all(name in catalogue.load() for name in catalogue.DEFAULTS.values())


# -- stages name models ------------------------------------------------------------------------------

def test_config_names_a_catalogue_model_and_runs_it(tmp_path, server, model_bytes, models_dir, monkeypatch):
    entry = entry_for(server, model_bytes)
    monkeypatch.setenv("PIPELINE_TASKS_MODEL_CATALOGUE", str(write_catalogue(tmp_path / "cat.yaml", entry)))
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40), (10, 60, 30, 30)])
    with pytest.raises(ModelWeightsError) as err:             # not fetched: validation says how
        run_segmentation(frames, tmp_path / "out", model="isnet", weights="tiny-isnet")
    assert "fetch it with `pipeline-tasks models fetch tiny-isnet`" in str(err.value)
    fetch(entry, models_dir)
    server.stop()
    result = run_segmentation(frames, tmp_path / "out", model="isnet", weights="tiny-isnet")
    assert result.outputs["character_count"] == 2 == len(read_instances(tmp_path / "out"))


def test_default_entry_of_a_backend_named_without_weights(tmp_path, server, model_bytes, models_dir, monkeypatch):
    # a catalogue file may replace a built-in entry: here the isnet default, isnet-anime, by the tiny model
    entry = entry_for(server, model_bytes, name="isnet-anime", file="isnet-anime.onnx")
    monkeypatch.setenv("PIPELINE_TASKS_MODEL_CATALOGUE", str(write_catalogue(tmp_path / "cat.yaml", entry)))
    fetch(entry, models_dir)
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    stage = SegmentationExecutor("seg", {"input_dir": "x", "output_dir": "y", "model": "isnet"})
    stage.validate_config()
    assert stage.input_files() == [str(models_dir / "isnet-anime.onnx")]


MISSING_PACKAGE_CASES = [
    ("segmentation", {"model": "sam2"}, "sam2", "model 'sam2' needs the Python package sam2", "model"),
    ("segmentation", {"model": "isnet"}, "onnxruntime", "model 'isnet' needs the Python package onnxruntime", "model"),
    ("clustering", {"embedder": "facenet"}, "facenet_pytorch", "embedder 'facenet' needs the Python package "
     "facenet-pytorch", "embedder"),
    ("clustering", {"use_face_detection": True, "face_detector": "mtcnn"}, "facenet_pytorch",
     "face_detector 'mtcnn' needs the Python package facenet-pytorch", "face_detector"),
    ("training_data_prep", {"face_detector": "animeface"}, "animeface",
     "face_detector 'animeface' needs the Python package animeface", "face_detector"),
    ("transcription", {"input": "talk.wav", "backend": "faster_whisper"}, "faster_whisper",
     "backend 'faster_whisper' needs the Python package faster-whisper", "backend"),
    ("translation", {"input": "x.srt", "target_languages": ["de"], "backend": "transformers"}, "transformers",
     "backend 'transformers' needs the Python package transformers", "backend"),
    ("audio_extraction", {"input": "talk.wav", "vad": {"enabled": True, "method": "silero"}}, "faster_whisper",
     "VAD method 'silero' needs the Python package faster-whisper", "vad.method"),
]


@pytest.mark.parametrize("stage_type,config,module,message,key", MISSING_PACKAGE_CASES)
def test_validate_names_a_missing_package(tmp_path, monkeypatch, stage_type, config, module, message, key):
    """An optional package a config needs is reported by validation, before any work."""
    from pipeline_tasks.spec.registry import get_executor_class
    from pipeline_tasks.weights import packages
    cls = get_executor_class(stage_type)
    cfg = {"output_dir": str(tmp_path / "out"), **config}
    if "input" not in cfg:
        cfg["input_dir"] = str(tmp_path)
    real = packages.installed
    monkeypatch.setattr(packages, "installed", lambda name: name != module and real(name))
    with pytest.raises(StageConfigError) as err:
        cls(stage_type, cfg).validate_config()
    assert message in str(err.value) and "not installed here" in str(err.value) and err.value.key == key


# -- the command line ---------------------------------------------------------------------------------

def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_tasks", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def test_cli_list_fetch_verify(tmp_path, server, model_bytes, models_dir):
    entry = entry_for(server, model_bytes)
    cat = write_catalogue(tmp_path / "cat.yaml", entry)
    listed = json.loads(cli("models", "--catalogue", str(cat), "list", "--json").stdout)
    rows = {r["name"]: r for r in listed["models"]}
    assert listed["cache_dir"] == str(models_dir)
    assert rows["tiny-isnet"]["state"] == "missing" and rows["isnet-anime"]["default_for"] == "isnet"
    assert rows["sam-vit-b"]["size"] == 375_042_383
    out = cli("models", "--catalogue", str(cat), "fetch", "tiny-isnet")
    assert out.returncode == 0, out.stderr
    assert "tiny-isnet: downloaded and verified" in out.stdout
    assert (models_dir / "tiny-isnet.onnx").read_bytes() == model_bytes
    assert cli("models", "--catalogue", str(cat), "verify").stdout.strip() == \
        f"tiny-isnet: ok {models_dir / 'tiny-isnet.onnx'}"
    (models_dir / "tiny-isnet.onnx").write_bytes(b"x" * len(model_bytes))
    bad = cli("models", "--catalogue", str(cat), "verify", "tiny-isnet")
    assert bad.returncode == 1 and "DAMAGED" in bad.stdout
    unknown = cli("models", "fetch", "no-such-model")
    assert unknown.returncode == 1 and "unknown model 'no-such-model'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_cli_validate_says_which_command_fetches_a_missing_model(tmp_path):
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump({
        "pipeline": {"name": "seg"},
        "stages": [{"id": "segment", "type": "segmentation",
                    "config": {"input_dir": str(frames), "output_dir": str(tmp_path / "out"), "model": "isnet"}}]}))
    out = cli("validate", str(pipeline), cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "pipeline-tasks models fetch isnet-anime" in out.stderr and "p.yaml:" in out.stderr
