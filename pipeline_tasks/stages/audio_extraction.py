"""audio_extraction: the audio of a video or audio file, resampled to a WAV file (default 16 kHz
mono), optionally cut to [start, end] and segmented by speech activity.

Outputs in `output_dir`: `audio.wav`, `audio.json` (source, rate, duration, speech spans) and,
with `split_segments`, one WAV per speech span under `segments/`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from ..errors import StageConfigError, StageInputError
from ..executor import StageExecutor
from ..weights.packages import require

TRUNCATION_TOLERANCE = 0.1     # seconds a decode may fall short of the declared length (codec delay)
# the Python packages each VAD method needs (import name -> pip name), checked by validation
VAD_PACKAGES = {"silero": {"faster_whisper": "faster-whisper", "onnxruntime": "onnxruntime"},
                "webrtc": {"pocketsphinx": "pocketsphinx"}}
VAD_SCHEMA = {
    "enabled": {"type": "boolean", "default": False},
    "method": {"type": "string", "allowed": ["silero", "webrtc"], "default": "silero"},
    "threshold": {"type": "number", "min": 0.05, "max": 0.95, "default": 0.5},
    "aggressiveness": {"type": "integer", "min": 0, "max": 3, "default": 2},
    "min_speech": {"type": "number", "min": 0.0, "max": 10.0, "default": 0.25},
    "min_silence": {"type": "number", "min": 0.0, "max": 10.0, "default": 0.3},
    "pad": {"type": "number", "min": 0.0, "max": 2.0, "default": 0.1},
}


class AudioExtractionExecutor(StageExecutor):
    type_name = "audio_extraction"
    version = "1"
    description = "Decode and resample the audio of a media file (PyAV); optional speech-activity segmentation"
    config_schema = {
        "input": {"type": "string", "required": True, "empty": False},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "sample_rate": {"type": "integer", "min": 8000, "max": 48000, "default": 16000},
        "channels": {"type": "integer", "allowed": [1, 2], "default": 1},
        "start": {"type": "number", "min": 0},
        "end": {"type": "number", "min": 0},
        "stream_index": {"type": "integer", "min": 0},
        "silence_threshold_db": {"type": "number", "min": -120, "max": 0, "default": -60},
        "vad": {"type": "dict", "schema": VAD_SCHEMA},
        "split_segments": {"type": "boolean", "default": False},
        "on_corrupt": {"type": "string", "allowed": ["fail", "continue"], "default": "fail"},
    }

    def validate_config(self) -> None:
        s = self.settings
        if s.start is not None and s.end is not None and s.end <= s.start:
            raise StageConfigError(f"end ({s.end}) must be greater than start ({s.start})", stage=self.stage_id,
                                   key="end")
        if s.vad.enabled and s.sample_rate != 16000:
            raise StageConfigError("speech-activity detection needs sample_rate: 16000", stage=self.stage_id,
                                   key="vad.enabled")
        if s.vad.enabled:
            require(VAD_PACKAGES[s.vad.method], f"VAD method '{s.vad.method}'", "audio", stage=self.stage_id,
                    key="vad.method")
        if s.split_segments and not s.vad.enabled:
            raise StageConfigError("split_segments needs vad.enabled: true", stage=self.stage_id,
                                   key="split_segments")

    def input_files(self) -> list[str]:
        return [self.settings.input]

    def estimate_duration(self) -> float | None:
        """Decoding and resampling run at roughly 100x real time; VAD adds ~1%."""
        from .audio import decode

        try:
            duration = decode.probe(self.settings.input, stage=self.stage_id).duration
        except StageInputError:
            return None
        return 0.2 + 0.02 * duration if duration else None

    def execute(self, inputs: dict[str, dict[str, Any]]):
        from .audio import decode
        from .audio import vad as vad_mod

        s = self.settings
        src = Path(s.input)
        rate, channels = s.sample_rate, s.channels
        start, end = s.start or 0.0, s.end
        info = decode.probe(src, stream_index=s.stream_index, stage=self.stage_id)
        self.progress(0, 3, unit="steps", message="decoding")
        samples, report = decode.decode_with_report(src, sample_rate=rate, channels=channels, start=start, end=end,
                                                    stream_index=s.stream_index, stage=self.stage_id)
        lost = self._lost_spans(src, report, start, end, len(samples) / rate)
        if len(samples) == 0:
            raise StageInputError(f"no audio between start={start} s and end={end} s in {src} "
                                  f"(audio lasts {info.duration or 0:.2f} s)", path=src, stage=self.stage_id,
                                  key="start")
        duration = len(samples) / rate
        peak = float(np.abs(samples).max())
        peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
        threshold_db = s.silence_threshold_db
        if peak_db < threshold_db:
            raise StageInputError(f"{src} is silent: peak level {peak_db:.1f} dBFS is below "
                                  f"silence_threshold_db {threshold_db:g} over {duration:.2f} s",
                                  path=src, stage=self.stage_id,
                                  hint="check that this is the right file or audio stream (stream_index)")
        self.progress(1, 3, unit="steps", message="speech activity")
        vad = s.vad
        spans: list[tuple[float, float]] | None = None
        if vad.enabled:
            mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
            spans = vad_mod.speech_spans(mono, rate, method=vad.method, threshold=vad.threshold,
                                         aggressiveness=vad.aggressiveness, min_speech=vad.min_speech,
                                         min_silence=vad.min_silence, pad=vad.pad)
            if not spans:
                raise StageInputError(f"no speech found in {src} ({duration:.2f} s of audio, VAD method "
                                      f"{vad.method}, threshold {vad.threshold})", path=src,
                                      stage=self.stage_id,
                                      hint="the audio may be music or noise only; lower vad.threshold or "
                                           "disable vad to pass it on anyway")
        folder = self.output_folder()
        out = folder.path
        audio_file = folder.claim("audio.wav")
        decode.write_wav(audio_file, samples, rate)
        segment_files: list[str] = []
        if spans and s.split_segments:
            for i, (first, last) in enumerate(spans):
                path = folder.claim("segments", f"speech_{i:04d}_{first:09.3f}-{last:09.3f}.wav")
                decode.write_wav(path, samples[int(first * rate):int(last * rate)], rate)
                segment_files.append(str(path))
        speech_seconds = round(sum(e - b for b, e in spans), 3) if spans is not None else None
        meta = {
            "source": str(src), "audio_file": "audio.wav", "sample_rate": rate, "channels": channels,
            "duration": round(duration, 3), "start": start, "source_codec": info.codec,
            "source_sample_rate": info.sample_rate, "source_channels": info.channels,
            "speech": [[b, e] for b, e in spans] if spans is not None else None,
            "segment_files": [Path(p).name for p in segment_files],
            "lost_spans": lost,
        }
        folder.claim("audio.json")
        write_json(out / "audio.json", meta)
        self.progress(3, 3, unit="steps")
        outputs = {"audio_file": str(audio_file), "metadata_file": str(out / "audio.json"),
                   "duration": round(duration, 3), "sample_rate": rate, "channels": channels,
                   "segment_files": segment_files, "lost_spans": lost}
        if spans is not None:
            outputs["speech_spans"] = len(spans)
            outputs["speech_seconds"] = speech_seconds
        return self.result(outputs=outputs, metrics={"peak_dbfs": round(peak_db, 2),
                                                     "speech_ratio": round(speech_seconds / duration, 4)
                                                     if speech_seconds is not None else None,
                                                     "lost_seconds": round(float(sum(e - b for b, e in lost)), 3),
                                                     "decode_errors": report.errors})

    def _lost_spans(self, src: Path, report, start: float, end, decoded: float) -> list[list[float]]:
        """The spans of [start, end] the file should hold but did not decode (seconds of audio.wav):
        packets the decoder rejected (silence in the output) and a tail missing from a truncated file
        (the output stops early). Any at all fail the stage unless on_corrupt is continue."""
        spans = list(report.lost)
        stop = float(end) if end is not None else math.inf
        expected = ""
        if report.declared:
            wanted_end = min(stop, report.declared)
            expected = f" of {wanted_end - start:.2f} s"
            if wanted_end - (start + decoded) > max(TRUNCATION_TOLERANCE, 0.01 * (wanted_end - start)):
                spans.append((start + decoded, wanted_end))
        lost = [[round(max(a, start) - start, 3), round(min(b, stop) - start, 3)] for a, b in spans
                if min(b, stop) > max(a, start)]
        if not lost:
            return []
        message = (f"audio is corrupt or truncated: decoded {decoded:.2f} s{expected}, "
                   f"{sum(b - a for a, b in lost):.2f} s lost in {len(lost)} span(s) starting at "
                   f"{', '.join(f'{a:.2f} s' for a, _ in lost[:5])}; {report.errors} corrupt packet(s)"
                   + (f"; first problem: {report.first_error}" if report.first_error else ""))
        if self.settings.on_corrupt == "fail":
            raise StageInputError(message, path=src, stage=self.stage_id,
                                  hint="set on_corrupt: continue to keep the audio that decodes")
        self.log.warning("%s: %s (on_corrupt: continue)", src, message)
        return lost
