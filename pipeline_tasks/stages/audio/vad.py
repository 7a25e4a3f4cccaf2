"""Speech activity detection: which spans of a mono 16 kHz signal contain speech.

Methods:
- ``silero``: the Silero VAD ONNX model that faster-whisper ships in its wheel, run with
  onnxruntime (no torch, no download);
- ``webrtc``: the WebRTC-style VAD that pocketsphinx ships (`pocketsphinx.Vad`), 30 ms frames.

Both return sorted, non-overlapping ``(start_s, end_s)`` spans, padded and merged.
"""
from __future__ import annotations

import numpy as np

from ...errors import MissingPackageError, StageConfigError

METHODS = ("silero", "webrtc")


def _merge(spans: list[tuple[float, float]], min_silence: float, min_speech: float, pad: float,
           duration: float) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        start, end = max(0.0, start - pad), min(duration, end + pad)
        if merged and start - merged[-1][1] < min_silence:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(round(s, 3), round(e, 3)) for s, e in merged if e - s >= min_speech]


def _silero(samples: np.ndarray, sample_rate: int, threshold: float) -> list[tuple[float, float]]:
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError as exc:
        raise MissingPackageError("VAD method 'silero' needs faster-whisper (it ships the Silero ONNX model) "
                               "and onnxruntime: pip install faster-whisper", key="vad.method") from exc
    opts = VadOptions(threshold=threshold, min_speech_duration_ms=100, min_silence_duration_ms=100,
                      speech_pad_ms=0)
    stamps = get_speech_timestamps(samples.astype(np.float32), opts, sampling_rate=sample_rate)
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]


def _webrtc(samples: np.ndarray, sample_rate: int, aggressiveness: int) -> list[tuple[float, float]]:
    from pocketsphinx import Vad

    vad = Vad(mode=aggressiveness, sample_rate=sample_rate)
    step = vad.frame_bytes // 2
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    spans: list[tuple[float, float]] = []
    start = None
    for i in range(0, len(pcm) - step + 1, step):
        speech = vad.is_speech(pcm[i:i + step].tobytes())
        t = i / sample_rate
        if speech and start is None:
            start = t
        elif not speech and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, len(pcm) / sample_rate))
    return spans


def speech_spans(samples: np.ndarray, sample_rate: int = 16000, *, method: str = "silero", threshold: float = 0.5,
                 aggressiveness: int = 2, min_speech: float = 0.25, min_silence: float = 0.3,
                 pad: float = 0.1) -> list[tuple[float, float]]:
    """Speech spans in seconds of a mono float32 signal."""
    if method not in METHODS:
        raise StageConfigError(f"unknown VAD method '{method}'; use one of {', '.join(METHODS)}", key="vad.method")
    if sample_rate != 16000:
        raise StageConfigError("speech-activity detection needs 16 kHz audio; set sample_rate: 16000",
                               key="sample_rate")
    if len(samples) == 0:
        return []
    raw = _silero(samples, sample_rate, threshold) if method == "silero" else _webrtc(samples, sample_rate,
                                                                                       aggressiveness)
    return _merge(raw, min_silence, min_speech, pad, len(samples) / sample_rate)
