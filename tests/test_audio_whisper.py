"""The faster_whisper backend end to end with a tiny random Whisper the test builds and converts
itself (ctranslate2's converter): model loading from a local directory, language detection,
explicit languages, word timestamps, chunks and resume. Accuracy is not judged (random weights)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_tasks.errors import StageConfigError
from pipeline_tasks.stages.transcription import TranscriptionExecutor

try:
    from .audio_fixtures import JFK, build_tiny_whisper, long_speech_wav, needs_ml
except ImportError:
    from audio_fixtures import JFK, build_tiny_whisper, long_speech_wav, needs_ml


pytestmark = needs_ml


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("models") / "faster-whisper-tiny-random")


def transcribe(out: Path, model: Path, **config):
    config = {"output_dir": str(out), "backend": "faster_whisper", "model_dir": str(model), "beam_size": 1,
              **config}
    stage = TranscriptionExecutor("transcribe", config)
    stage.validate_config()
    return stage.execute({})


def check_segments(path: Path, duration: float) -> list[dict]:
    segments = [json.loads(line) for line in path.read_text().splitlines()]
    for seg in segments:
        assert 0 <= seg["start"] <= seg["end"] <= duration + 0.05
        assert seg["text"].strip()
        for w in seg["words"]:
            assert seg["start"] - 0.05 <= w["start"] <= w["end"] <= seg["end"] + 0.05
            assert 0.0 <= w["probability"] <= 1.0
    return segments


def test_language_detection_and_word_timestamps(tmp_path, whisper_dir):
    from faster_whisper import WhisperModel

    assert WhisperModel(str(whisper_dir), device="cpu", compute_type="int8").model.is_multilingual
    result = transcribe(tmp_path / "auto", whisper_dir, input=str(JFK), language="auto")
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    assert result.outputs["language"] in _LANGUAGE_CODES      # detected (a random model picks any)
    segments = check_segments(tmp_path / "auto" / "segments.jsonl", 11.0)
    assert result.outputs["segments"] == len(segments)
    assert segments and any(seg["words"] for seg in segments)  # word timestamps were asked for and given
    text = (tmp_path / "auto" / "transcript.txt").read_text()
    assert text.split() == " ".join(s["text"] for s in segments).split()


def test_explicit_language_is_used(tmp_path, whisper_dir):
    result = transcribe(tmp_path / "de", whisper_dir, input=str(JFK), language="de", word_timestamps=False)
    assert result.outputs["language"] == "de"
    segments = check_segments(tmp_path / "de" / "segments.jsonl", 11.0)
    assert all(not seg["words"] for seg in segments)


def test_unknown_language_is_a_config_error(tmp_path, whisper_dir):
    with pytest.raises(StageConfigError, match="does not know language 'xx'"):
        transcribe(tmp_path, whisper_dir, input=str(JFK), language="xx")


def test_chunks_and_resume_with_whisper(tmp_path, whisper_dir):
    wav, _ = long_speech_wav(tmp_path / "long.wav")
    first = transcribe(tmp_path / "t", whisper_dir, input=str(wav), language="en", chunk_seconds=10)
    n = first.metrics["chunks"]
    assert n >= 3 and first.metrics["chunks_computed"] == n
    # lose the last two chunk results, as a crash would: only they are recomputed
    for p in sorted((tmp_path / "t" / "chunks").glob("chunk_*.json"))[-2:]:
        p.unlink()
    before = (tmp_path / "t" / "segments.jsonl").read_bytes()
    second = transcribe(tmp_path / "t", whisper_dir, input=str(wav), language="en", chunk_seconds=10)
    assert second.metrics["chunks_reused"] == n - 2 and second.metrics["chunks_computed"] == 2
    assert (tmp_path / "t" / "segments.jsonl").read_bytes() == before
