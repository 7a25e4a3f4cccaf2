"""Decode the audio of any media file with PyAV into a float32 array, and write WAV files.

PyAV errors never escape: they become `StageInputError` naming the file and what to do.
"""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import StageInputError


@dataclass
class AudioInfo:
    path: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None
    stream_index: int


def _open(path: str | os.PathLike, stage: str | None):
    import av

    path = Path(path)
    if not path.exists():
        raise StageInputError(f"input file does not exist: {path}", path=path, stage=stage,
                              hint="check the stage's 'input' path")
    if path.is_dir():
        raise StageInputError(f"input is a directory, not a media file: {path}", path=path, stage=stage)
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise StageInputError(f"cannot read {path} as audio or video ({exc.__class__.__name__}: {exc})",
                              path=path, stage=stage,
                              hint="give a media file FFmpeg can decode (wav, flac, mp3, mp4, mkv, ...)") from exc


def _audio_stream(container, path, stream_index: int | None, stage: str | None):
    streams = list(container.streams.audio)
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise StageInputError(f"{path} has no audio stream (streams found: {kinds})", path=path, stage=stage,
                              hint="give a file with an audio track")
    if stream_index is None:
        return streams[0]
    if not 0 <= stream_index < len(streams):
        raise StageInputError(f"{path} has {len(streams)} audio stream(s); audio stream {stream_index} does not exist",
                              path=path, stage=stage, hint="set 'stream_index' to 0.." + str(len(streams) - 1))
    return streams[stream_index]


def probe(path: str | os.PathLike, *, stream_index: int | None = None, stage: str | None = None) -> AudioInfo:
    container = _open(path, stage)
    try:
        stream = _audio_stream(container, path, stream_index, stage)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return AudioInfo(path=str(path), codec=stream.codec_context.name, sample_rate=stream.codec_context.sample_rate,
                         channels=stream.codec_context.channels, duration=duration,
                         stream_index=list(container.streams.audio).index(stream))
    finally:
        container.close()


def decode(path: str | os.PathLike, *, sample_rate: int = 16000, channels: int = 1, start: float = 0.0,
           end: float | None = None, stream_index: int | None = None, stage: str | None = None) -> np.ndarray:
    """Audio of `path` between `start` and `end` seconds, resampled; float32 array (samples, channels)."""
    import av

    container = _open(path, stage)
    try:
        stream = _audio_stream(container, path, stream_index, stage)
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        first = int(round(start * sample_rate))
        last = None if end is None else int(round(end * sample_rate))
        blocks: list[np.ndarray] = []
        position = 0          # samples produced so far (from the start of the stream)

        def keep(block: np.ndarray) -> None:
            # blocks wholly before `start` are dropped as they come, so long files cut late stay small
            nonlocal position
            if position + len(block) > first:
                blocks.append(block[max(0, first - position):])
            position += len(block)

        try:
            done = False
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    keep(out.to_ndarray().reshape(-1, channels))
                if last is not None and position >= last:
                    done = True     # enough decoded: the rest of the file is not read
                    break
            if not done:
                for out in resampler.resample(None):
                    keep(out.to_ndarray().reshape(-1, channels))
        except av.error.FFmpegError as exc:
            raise StageInputError(f"decoding the audio of {path} failed: {exc}", path=path, stage=stage,
                                  hint="the file may be truncated or corrupt") from exc
    finally:
        container.close()
    samples = np.concatenate(blocks) if blocks else np.zeros((0, channels), dtype=np.float32)
    # Cut by sample index counted from the start of the stream: exact and deterministic.
    if last is not None:
        samples = samples[:max(0, last - max(first, 0))]
    return np.ascontiguousarray(samples, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def write_wav(dest: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically (stdlib `wave`: byte-identical for identical samples)."""
    if samples.ndim == 1:
        samples = samples[:, None]
    with atomic_path(dest) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(samples.shape[1])
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(to_pcm16(samples))


def read_wav(path: str | os.PathLike, *, stage: str | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of a 16-bit WAV written by `write_wav` (fast path, no PyAV)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, nch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise StageInputError(f"cannot read WAV file {path}: {exc}", path=path, stage=stage) from exc
    if width != 2:
        raise StageInputError(f"{path} is {8 * width}-bit; expected 16-bit PCM", path=path, stage=stage)
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if nch > 1:
        samples = samples.reshape(-1, nch).mean(axis=1)
    return samples, rate


def load_mono(path: str | os.PathLike, sample_rate: int = 16000, *, stage: str | None = None) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from any media file (WAV at the right rate: no resampling)."""
    if str(path).lower().endswith(".wav"):
        try:
            samples, rate = read_wav(path, stage=stage)
            if rate == sample_rate:
                return samples
        except StageInputError:
            pass
    return decode(path, sample_rate=sample_rate, channels=1, stage=stage)[:, 0]
