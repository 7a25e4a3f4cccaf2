"""transcription: speech to text with word timings (PocketSphinx offline, or faster-whisper from a
local CTranslate2 model directory).

Long audio is cut into chunks (at the quietest point near every `chunk_seconds`, or between the
speech spans that audio_extraction found); each chunk's result is written atomically to
`chunks/chunk_NNNNN.json` with a key over its samples and the backend settings, so a rerun after a
crash transcribes only the chunks that are missing (item-level resume).

Outputs in `output_dir`: `segments.jsonl`, `transcript.txt`, `transcript.json` (language,
duration, backend, chunk count).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..atomic import write_json, write_text
from ..errors import StageConfigError, StageInputError
from ..executor import StageExecutor

SILENCE_PEAK = 10 ** (-70 / 20)   # a chunk whose peak stays below -70 dBFS holds no speech
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".mp4", ".mkv", ".webm", ".mov")


class TranscriptionExecutor(StageExecutor):
    type_name = "transcription"
    version = "1"
    description = ("Speech recognition with word timings (pocketsphinx offline, or faster-whisper), chunked and "
                   "resumable")
    config_schema = {
        "input": {"type": "string", "empty": False, "excludes": "input_dir"},
        "input_dir": {"type": "string", "empty": False, "excludes": "input"},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "backend": {"type": "string", "allowed": ["pocketsphinx", "faster_whisper"], "default": "pocketsphinx"},
        "language": {"type": "string", "regex": r"^(auto|[a-z]{2,3}(-[a-z]{2})?)$", "default": "en"},
        "model_dir": {"type": "string", "empty": False},
        "chunk_seconds": {"type": "number", "min": 5, "max": 600, "default": 30},
        "beam_size": {"type": "integer", "min": 1, "max": 10, "default": 5},
        "compute_type": {"type": "string", "allowed": ["int8", "int8_float32", "float32"], "default": "int8"},
        "cpu_threads": {"type": "integer", "min": 1, "max": 64, "default": 2},
        "word_timestamps": {"type": "boolean", "default": True},
        "pause_split": {"type": "number", "min": 0.1, "max": 5.0, "default": 0.5},
    }

    # -- declarations ------------------------------------------------------------------------------
    def _backend(self):
        from .audio.asr_base import get_backend

        return get_backend(self.settings.backend, self.settings, self.stage_id)

    def validate_config(self) -> None:
        s = self.settings
        if not s.input and not s.input_dir:
            raise StageConfigError("give 'input' (an audio or video file) or 'input_dir' (an audio_extraction "
                                   "output_dir)", stage=self.stage_id, key="input")
        if s.language == "auto" and s.backend == "pocketsphinx":
            raise StageConfigError("pocketsphinx cannot detect the language; set language: en or use "
                                   "backend: faster_whisper", stage=self.stage_id, key="language")
        self._backend().check()

    def input_files(self) -> list[str]:
        files = [self.settings.input] if self.settings.input else []
        model_dir = self.settings.model_dir
        if model_dir and (Path(model_dir) / "model.bin").is_file():
            files.append(str(Path(model_dir) / "model.bin"))
        return files

    def estimate_duration(self) -> float | None:
        """Audio seconds × a typical real-time factor on 2 CPU cores (see docs/benchmarks.md)."""
        from .audio import decode

        path = None
        if self.settings.input:
            path = Path(self.settings.input)
        elif self.settings.input_dir:
            meta = Path(self.settings.input_dir) / "audio.json"
            if meta.is_file():
                try:
                    return float(json.loads(meta.read_text())["duration"]) * self._typical_rtf()
                except (ValueError, KeyError):
                    return None
        if path is None or not path.is_file():
            return None
        try:
            duration = decode.probe(path, stage=self.stage_id).duration
        except StageInputError:
            return None
        return duration * self._typical_rtf() if duration else None

    def _typical_rtf(self) -> float:
        return 0.4 if self.settings.backend == "pocketsphinx" else 1.0

    # -- helpers -----------------------------------------------------------------------------------
    def _find_audio(self, inputs: dict[str, dict[str, Any]]) -> tuple[Path, list[tuple[float, float]] | None]:
        if self.settings.input:
            return Path(self.settings.input), None
        folder = Path(self.settings.input_dir)
        meta = folder / "audio.json"
        if meta.is_file():
            data = json.loads(meta.read_text(encoding="utf-8"))
            speech = [tuple(s) for s in data["speech"]] if data.get("speech") else None
            return folder / data["audio_file"], speech
        if not folder.is_dir():
            raise StageInputError(f"input_dir does not exist: {folder}", path=folder, stage=self.stage_id,
                                  hint="run the upstream audio_extraction stage first")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and ".part-" not in p.name)
        if len(found) != 1:
            raise StageInputError(f"input_dir {folder} holds {len(found)} audio files; expected an audio.json "
                                  "from audio_extraction or exactly one audio file", path=folder,
                                  stage=self.stage_id, hint="or name the file with 'input'")
        return found[0], None

    # -- the work ----------------------------------------------------------------------------------
    def execute(self, inputs: dict[str, dict[str, Any]]):
        from .audio import decode
        from .audio.chunking import chunk_key, plan_chunks
        from .audio.transcript import Segment, plain_text, write_segments

        backend = self._backend()
        audio_path, speech = self._find_audio(inputs)
        rate = backend.sample_rate
        samples = decode.load_mono(audio_path, rate, stage=self.stage_id)
        if len(samples) == 0:
            raise StageInputError(f"{audio_path} holds no audio samples", path=audio_path, stage=self.stage_id)
        duration = len(samples) / rate
        language = self.settings.language
        chunks = plan_chunks(samples, rate, self.settings.chunk_seconds, speech=speech)
        folder = self.output_folder()
        out = folder.path
        fingerprint = f"{backend.fingerprint()}|{language}|{self.version}"
        loaded = False
        segments: list[Segment] = []
        languages: Counter[str] = Counter()
        reused = computed = 0
        compute_seconds = computed_audio = 0.0
        self.progress(0, round(duration), unit="s")
        skipped = 0
        for index, (first, last) in enumerate(chunks):
            piece = samples[first:last]
            # with speech spans from audio_extraction's VAD, a chunk that overlaps none is not sent to
            # the recogniser (music and noise make recognisers invent words)
            has_speech = speech is None or any(s < last / rate and e > first / rate for s, e in speech)
            key = chunk_key(piece, f"{fingerprint}|speech={has_speech}")
            name = f"chunk_{index:05d}.json"
            path = folder.claim("chunks", name)
            record = None
            if folder.wrote_before("chunks", name):
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                except ValueError:
                    record = None
                if record is not None and record.get("key") != key:
                    record = None
            if record is None:
                if not loaded:
                    backend.load()
                    loaded = True
                t0 = time.perf_counter()
                if not has_speech or float(abs(piece).max(initial=0.0)) < SILENCE_PEAK:
                    # no speech per VAD, or digital silence: recognisers hallucinate words here
                    chunk_segments, chunk_lang = [], None
                    skipped += 1
                else:
                    chunk_segments, chunk_lang = backend.transcribe(piece, language)
                spent = time.perf_counter() - t0
                compute_seconds += spent
                computed_audio += len(piece) / rate
                offset = first / rate
                record = {"key": key, "index": index, "start": round(offset, 3), "end": round(last / rate, 3),
                          "language": chunk_lang,
                          "segments": [s.shifted(offset).to_dict() for s in chunk_segments]}
                write_json(path, record)
                computed += 1
            else:
                reused += 1
            if record.get("language"):
                languages[record["language"]] += last - first
            segments.extend(Segment.from_dict(s) for s in record["segments"])
            self.progress(round(last / rate), round(duration), unit="s")
        detected = languages.most_common(1)[0][0] if languages else (None if language == "auto" else language)
        segments_file, transcript_file = out / "segments.jsonl", out / "transcript.txt"
        for name in ("segments.jsonl", "transcript.txt", "transcript.json"):
            folder.claim(name)
        write_segments(segments_file, segments)
        write_text(transcript_file, plain_text(segments) if segments else "")
        n_words = sum(len(s.words) if s.words else len(s.text.split()) for s in segments)
        summary = {"source": str(audio_path), "backend": backend.name, "language": detected,
                   "duration": round(duration, 3), "chunks": len(chunks), "segments": len(segments),
                   "words": n_words}
        write_json(out / "transcript.json", summary)
        if not segments:
            self.log.warning("no speech recognised in %s", audio_path)
        rtf = compute_seconds / computed_audio if computed_audio else None
        return self.result(
            outputs={"segments_file": str(segments_file), "transcript_file": str(transcript_file),
                     "language": detected, "duration": round(duration, 3), "backend": backend.name,
                     "segments": len(segments), "words": n_words},
            metrics={"real_time_factor": round(rtf, 4) if rtf is not None else None, "chunks": len(chunks),
                     "chunks_reused": reused, "chunks_computed": computed, "chunks_without_speech": skipped,
                     "compute_seconds": round(compute_seconds, 3)})
