"""transcription on real speech: pocketsphinx accuracy and timings, chunking, resume after
SIGKILL, language/model errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cerberus
import numpy as np
import pytest

from pipeline_tasks.errors import ModelWeightsError, StageConfigError, StageInputError
from pipeline_tasks.stages.audio.decode import load_mono, write_wav
from pipeline_tasks.stages.audio.wer import corpus_wer, wer
from pipeline_tasks.stages.audio_extraction import AudioExtractionExecutor
from pipeline_tasks.stages.transcription import TranscriptionExecutor

try:
    from .audio_fixtures import JFK, JFK_TEXT, LIBRI, SINTEL, libri_reference, long_speech_wav, silent_wav
except ImportError:
    from audio_fixtures import JFK, JFK_TEXT, LIBRI, SINTEL, libri_reference, long_speech_wav, silent_wav

REPO = Path(__file__).resolve().parent.parent


def transcribe(out: Path, **config):
    config.setdefault("output_dir", str(out))
    stage = TranscriptionExecutor("transcribe", config)
    stage.validate_config()
    return stage.execute({})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_librivox_sentences_are_recognised_with_word_timings(tmp_path):
    results = []
    for wav in LIBRI:
        out = tmp_path / wav.stem
        result = transcribe(out, input=str(wav))
        segments = read_jsonl(out / "segments.jsonl")
        hyp = " ".join(s["text"] for s in segments)
        results.append((libri_reference(wav), hyp))
        assert result.outputs["language"] == "en"
        assert (out / "transcript.txt").read_text().split() == hyp.split()
        duration = result.outputs["duration"]
        last_end = 0.0
        for seg in segments:
            assert seg["words"] and seg["text"] == " ".join(w["word"] for w in seg["words"])
            assert seg["start"] == seg["words"][0]["start"] and seg["end"] == seg["words"][-1]["end"]
            for w in seg["words"]:
                assert last_end - 1e-6 <= w["start"] < w["end"] <= duration + 1e-6
                last_end = w["end"]
        assert wer(*results[-1]) < 0.5, results[-1]
        assert result.metrics["real_time_factor"] > 0
    assert corpus_wer(results) < 0.35


def test_word_times_agree_with_forced_alignment(tmp_path):
    wav = LIBRI[1]   # 0880 with machine word alignment in its .json
    transcribe(tmp_path, input=str(wav))
    words = [w for s in read_jsonl(tmp_path / "segments.jsonl") for w in s["words"]]
    aligned = [w for w in json.loads(wav.with_suffix(".json").read_text())["w"] if not w["t"].startswith("<")]
    by_word = {w["t"].split("(")[0]: w["b"] for w in aligned}
    matched = [(w["start"], by_word[w["word"]]) for w in words if w["word"] in by_word]
    assert len(matched) >= 4
    assert max(abs(a - b) for a, b in matched) < 0.15


def test_pipeline_from_extracted_audio_of_jfk(tmp_path):
    AudioExtractionExecutor("extract", {"input": str(JFK), "output_dir": str(tmp_path / "x"),
                                     "vad": {"enabled": True}}).execute({})
    estimate = TranscriptionExecutor("t", {"input_dir": str(tmp_path / "x"), "output_dir": "o"}).estimate_duration()
    assert estimate == pytest.approx(11.0 * 0.4)      # audio.json duration x pocketsphinx's typical RTF
    transcribe(tmp_path / "t", input_dir=str(tmp_path / "x"))
    text = (tmp_path / "t" / "transcript.txt").read_text()
    assert wer(JFK_TEXT, text) < 0.4, text
    assert "country" in text
    summary = json.loads((tmp_path / "t" / "transcript.json").read_text())
    assert summary["backend"] == "pocketsphinx" and summary["duration"] == pytest.approx(11.0)


def test_rerun_reuses_every_chunk_and_is_identical(tmp_path):
    wav, _ = long_speech_wav(tmp_path / "long.wav", files=LIBRI[:3])     # 15.4 s of speech, 1.8 s of gaps
    first = transcribe(tmp_path / "t", input=str(wav), chunk_seconds=5)
    assert first.metrics["chunks"] >= 3 and first.metrics["chunks_computed"] == first.metrics["chunks"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "t").rglob("*") if p.is_file()}
    second = transcribe(tmp_path / "t", input=str(wav), chunk_seconds=5)
    assert second.metrics["chunks_reused"] == first.metrics["chunks"] and second.metrics["chunks_computed"] == 0
    after = {p.name: p.read_bytes() for p in (tmp_path / "t").rglob("*") if p.is_file()}
    assert before == after
    # a different chunk size is a different plan: old chunk results are not trusted
    third = transcribe(tmp_path / "t", input=str(wav), chunk_seconds=8)
    assert third.metrics["chunks_computed"] >= 1
    assert len(list((tmp_path / "t" / "chunks").glob("chunk_*.json"))) == third.metrics["chunks"]


CHILD = """
import sys
from pipeline_tasks.stages.transcription import TranscriptionExecutor
TranscriptionExecutor("transcribe", {"input": sys.argv[1], "output_dir": sys.argv[2], "chunk_seconds": 6}).execute({})
print("finished")
"""


@pytest.mark.slow
def test_resume_after_sigkill_redoes_only_missing_chunks(tmp_path):
    wav, refs = long_speech_wav(tmp_path / "long.wav")
    out = tmp_path / "killed"
    chunks = out / "chunks"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(wav), str(out)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while len(list(chunks.glob("chunk_?????.json"))) < 2:
            assert child.poll() is None, child.communicate()
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "segments.jsonl").exists()
    done = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in chunks.glob("chunk_?????.json")}
    resumed = transcribe(out, input=str(wav), chunk_seconds=6)
    total = resumed.metrics["chunks"]
    assert 2 <= len(done) < total
    assert resumed.metrics["chunks_reused"] == len(done)
    assert resumed.metrics["chunks_computed"] == total - len(done)
    for name, (data, mtime) in done.items():        # finished chunks were not redone
        assert (chunks / name).read_bytes() == data and (chunks / name).stat().st_mtime_ns == mtime
    assert not [p for p in chunks.iterdir() if ".part-" in p.name]
    # the resumed result is the one an uninterrupted run gives
    fresh = transcribe(tmp_path / "fresh", input=str(wav), chunk_seconds=6)
    assert fresh.metrics["chunks"] == total
    assert (out / "segments.jsonl").read_bytes() == (tmp_path / "fresh" / "segments.jsonl").read_bytes()
    hyp = (out / "transcript.txt").read_text()
    assert wer(" ".join(refs), hyp) < 0.4


def test_language_and_backend_errors(tmp_path):
    with pytest.raises(StageConfigError, match="only a US-English model"):
        transcribe(tmp_path, input=str(JFK), language="de")
    with pytest.raises(StageConfigError, match="cannot detect the language"):
        transcribe(tmp_path, input=str(JFK), language="auto")
    missing = tmp_path / "models" / "faster-whisper-small"
    with pytest.raises(ModelWeightsError, match="Whisper model directory not found") as err:
        transcribe(tmp_path, input=str(JFK), backend="faster_whisper", model_dir=str(missing))
    assert err.value.path == str(missing) and "ct2-transformers-converter" in str(err.value)
    missing.mkdir(parents=True)
    (missing / "config.json").write_text("{}")
    with pytest.raises(ModelWeightsError, match="lacks model.bin, tokenizer.json"):
        transcribe(tmp_path, input=str(JFK), backend="faster_whisper", model_dir=str(missing))
    with pytest.raises(ModelWeightsError, match="needs model_dir"):
        transcribe(tmp_path, input=str(JFK), backend="faster_whisper")
    with pytest.raises(StageConfigError, match="give 'input'"):
        transcribe(tmp_path)
    v = cerberus.Validator(TranscriptionExecutor.config_schema)
    assert not v.validate({"output_dir": "o", "input": "a", "backend": "whisper"})
    assert not v.validate({"output_dir": "o", "input": "a", "input_dir": "b"})
    assert not v.validate({"output_dir": "o", "input": "a", "chunk_seconds": 1})
    assert not v.validate({"output_dir": "o", "input": "a", "language": "English"})


def test_bad_inputs(tmp_path):
    with pytest.raises(StageInputError, match="does not exist"):
        transcribe(tmp_path / "o", input=str(tmp_path / "missing.wav"))
    with pytest.raises(StageInputError, match="input_dir does not exist"):
        transcribe(tmp_path / "o", input_dir=str(tmp_path / "nothing"))
    (tmp_path / "in").mkdir()
    silent = silent_wav(tmp_path / "in" / "silence.wav", 2.0)
    result = transcribe(tmp_path / "o", input_dir=str(silent.parent))
    assert result.outputs["segments"] == 0 and (tmp_path / "o" / "segments.jsonl").read_text() == ""


def test_chunks_without_speech_are_not_recognised(tmp_path):
    """JFK, 12 s of Sintel's music, a LibriVox sentence: with VAD spans from audio_extraction the
    music-only chunks never reach PocketSphinx, which otherwise invents words in music."""
    music = load_mono(SINTEL)[16000 * 2:16000 * 14] * 0.5
    write_wav(tmp_path / "music.wav", music, 16000)
    alone = transcribe(tmp_path / "music", input=str(tmp_path / "music.wav"))
    assert alone.outputs["words"] > 0                        # what happens without VAD
    mix = np.concatenate([load_mono(JFK), music, load_mono(LIBRI[1])])
    write_wav(tmp_path / "mix.wav", mix, 16000)
    AudioExtractionExecutor("extract", {"input": str(tmp_path / "mix.wav"), "output_dir": str(tmp_path / "x"),
                                     "vad": {"enabled": True}}).execute({})
    result = transcribe(tmp_path / "t", input_dir=str(tmp_path / "x"), chunk_seconds=5)
    assert result.metrics["chunks_without_speech"] >= 1
    words = [w for s in read_jsonl(tmp_path / "t" / "segments.jsonl") for w in s["words"]]
    assert not [w for w in words if 11.5 < w["start"] < 22.5]   # nothing inside the music
    assert any(w["start"] < 11 for w in words) and any(w["start"] > 23 for w in words)
