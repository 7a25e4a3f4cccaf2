"""configs/audio.yaml through the engine: spec loading, all four stages on real speech, and an
up-to-date second run. Translation uses a tiny MarianMT the test builds (fidelity not judged)."""
from __future__ import annotations

import json
from pathlib import Path

import pysubs2
import pytest

from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator
from pipeline_tasks.errors import PipelineError

try:
    from .audio_fixtures import JFK, build_tiny_marian, needs_ml
except ImportError:
    from audio_fixtures import JFK, build_tiny_marian, needs_ml

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "audio.yaml"


def test_missing_translation_models_are_reported_at_load(ws, monkeypatch):
    monkeypatch.setenv("AUDIO_INPUT", str(JFK))
    monkeypatch.delenv("AUDIO_MT_DE", raising=False)
    with pytest.raises(PipelineError) as err:
        PipelineBuilder().load_from_yaml(CONFIG)
    text = str(err.value)
    assert "translation model directory not found: models/opus-mt-en-de" in text
    assert "audio.yaml:" in text and "Helsinki-NLP/opus-mt-en-de" in text


@needs_ml
@pytest.mark.slow
def test_audio_pipeline_end_to_end(ws, monkeypatch):
    marian = build_tiny_marian(ws.root / "models" / "tiny-marian")
    monkeypatch.setenv("AUDIO_INPUT", str(JFK))
    monkeypatch.setenv("AUDIO_MT_DE", str(marian))
    monkeypatch.setenv("AUDIO_MT_FR", str(marian))
    config = ws.write("audio.yaml", CONFIG.read_text())
    pipeline = PipelineBuilder().load_from_yaml(config)
    assert [s.id for s in pipeline.stages] == ["extract_audio", "transcribe", "subtitles", "translate"]
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    result = orchestrator.execute_pipeline(pipeline)
    assert result.success, result.error
    work = ws.root / "work" / "audio"
    transcript = (work / "transcript" / "transcript.txt").read_text()
    assert "country" in transcript
    subs = pysubs2.load(str(work / "subtitles" / "subtitles.srt"))
    assert len(subs) >= 2
    for lang in ("de", "fr"):
        translated = pysubs2.load(str(work / "translated" / f"subtitles.{lang}.vtt"))
        assert 1 <= len(translated) <= len(subs)
        assert {e.start for e in translated} <= {e.start for e in subs}
    manifest = json.loads((work / "transcript" / ".stage.json").read_text())
    assert manifest["outputs"]["language"] == "en"
    again = orchestrator.execute_pipeline(PipelineBuilder().load_from_yaml(config))
    assert again.success and again.executed == []
    # early cutoff: a config change that leaves the extracted audio identical reruns extraction only
    config.write_text(CONFIG.read_text().replace("channels: 1", "channels: 1\n      silence_threshold_db: -70"))
    third = orchestrator.execute_pipeline(PipelineBuilder().load_from_yaml(config))
    assert third.success, third.error
    assert third.executed == ["extract_audio"]
