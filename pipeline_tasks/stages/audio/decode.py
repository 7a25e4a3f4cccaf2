"""Decode the audio of any media file with PyAV into a float32 array, and write WAV files.

PyAV errors never escape: they become `StageInputError` naming the file and what to do.
"""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass, field
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


@dataclass
class DecodeReport:
    """What a decode found besides the samples: how long the stream says it is, and the damage."""
    declared: float | None = None     # seconds the container (or a WAV header) says the stream lasts
    errors: int = 0                   # packets the decoder rejected (their span is filled with silence)
    lost: list[tuple[float, float]] = field(default_factory=list)   # those spans, in seconds of decoded audio
    read_error: bool = False          # a read error ended the stream early
    first_error: str | None = None

    def note(self, message: str) -> None:
        if self.first_error is None:
            self.first_error = message


def decode(path: str | os.PathLike, *, sample_rate: int = 16000, channels: int = 1, start: float = 0.0,
           end: float | None = None, stream_index: int | None = None, stage: str | None = None) -> np.ndarray:
    """Audio of `path` between `start` and `end` seconds, resampled; float32 array (samples, channels).
    Data the decoder rejects, or a read error, is a `StageInputError`."""
    samples, report = decode_with_report(path, sample_rate=sample_rate, channels=channels, start=start, end=end,
                                         stream_index=stream_index, stage=stage)
    if report.errors or report.read_error:
        raise StageInputError(f"decoding the audio of {path} failed: {report.first_error}", path=path, stage=stage,
                              hint="the file may be truncated or corrupt")
    return samples


def decode_with_report(path: str | os.PathLike, *, sample_rate: int = 16000, channels: int = 1, start: float = 0.0,
                       end: float | None = None, stream_index: int | None = None,
                       stage: str | None = None) -> tuple[np.ndarray, DecodeReport]:
    """`decode`, and what it found: packets the decoder rejects are counted, and the time they covered
    is filled with silence so later audio keeps its time; a read error ends the stream early. Whether
    that (or a stream shorter than `report.declared`) is fatal is the caller's decision."""
    import av

    container = _open(path, stage)
    try:
        stream = _audio_stream(container, path, stream_index, stage)
        report = DecodeReport(declared=_declared_seconds(container, stream, path))
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        first = int(round(start * sample_rate))
        last = None if end is None else int(round(end * sample_rate))
        blocks: list[np.ndarray] = []
        position = 0          # samples produced so far (from the start of the stream)

        def feed(frame) -> None:
            # blocks wholly before `start` are dropped as they come, so long files cut late stay small
            nonlocal position
            for out in resampler.resample(frame):
                block = out.to_ndarray().reshape(-1, channels)
                if position + len(block) > first:
                    blocks.append(block[max(0, first - position):])
                position += len(block)

        lost = 0.0            # seconds of audio in the packets rejected since the last good frame
        enough = False
        for packet in _packets(container, stream, report):
            try:
                frames = packet.decode()
            except av.error.EOFError:
                break
            except av.error.FFmpegError as exc:
                report.errors += 1
                report.note(f"corrupt data at {position / sample_rate:.3f} s of audio: {exc}")
                lost += _packet_seconds(packet, stream)
                continue
            for frame in frames:
                if lost:
                    at = position / sample_rate
                    feed(_silence(frame, lost))
                    report.lost.append((round(at, 6), round(at + lost, 6)))
                    lost = 0.0
                feed(frame)
            if last is not None and position >= last:
                enough = True       # the rest of the file is not read
                break
        if not enough:
            feed(None)
    except av.error.FFmpegError as exc:
        raise StageInputError(f"decoding the audio of {path} failed: {exc}", path=path, stage=stage,
                              hint="the file may be truncated or corrupt") from exc
    finally:
        container.close()
    samples = np.concatenate(blocks) if blocks else np.zeros((0, channels), dtype=np.float32)
    # Cut by sample index counted from the start of the stream: exact and deterministic.
    if last is not None:
        samples = samples[:max(0, last - max(first, 0))]
    return np.ascontiguousarray(samples, dtype=np.float32), report


def _packets(container, stream, report: DecodeReport):
    """The stream's packets; a read error ends them (noted in `report`)."""
    import av

    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            report.read_error = True
            report.note(f"read error: {exc}")
            return
        yield packet


def _packet_seconds(packet, stream) -> float:
    """The audio one packet holds: the codec's frame size where it has one (AAC: 1024 samples),
    else the packet's duration."""
    cc = stream.codec_context
    if cc.frame_size and cc.sample_rate:
        return cc.frame_size / cc.sample_rate
    if packet.duration and packet.time_base:
        return float(packet.duration * packet.time_base)
    return 0.0


def _silence(like, seconds: float):
    """A silent frame in the format, layout and rate of `like`, `seconds` long."""
    import av

    frame = av.AudioFrame(format=like.format.name, layout=like.layout.name,
                          samples=max(1, int(round(seconds * like.sample_rate))))
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = like.sample_rate
    return frame


def _declared_seconds(container, stream, path) -> float | None:
    """How long the stream says it is: its header duration, or the container's; for a WAV file whose
    data chunk runs past the end of the file, the length its header declares (FFmpeg reports the
    length of the bytes present, so a cut WAV would otherwise look complete)."""
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / 1_000_000
    if container.format.name == "wav":
        header = _wav_header_seconds(path)
        if header is not None:
            declared = max(declared or 0.0, header)
    return declared


def _wav_header_seconds(path) -> float | None:
    """Seconds of audio a RIFF/WAVE header declares when its data chunk is longer than the file
    holds; None when the file is whole, or the header leaves the length open (streaming writers)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = 0
        while len(chunk := fh.read(8)) == 8:
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"fmt ":
                body = fh.read(size)
                byte_rate = int.from_bytes(body[8:12], "little") if len(body) >= 12 else 0
                fh.seek(size & 1, os.SEEK_CUR)
            elif kind == b"data":
                if not byte_rate or size in (0, 0xFFFFFFFF):
                    return None
                present = os.fstat(fh.fileno()).st_size - fh.tell()
                return size / byte_rate if size > present else None
            else:
                fh.seek(size + (size & 1), os.SEEK_CUR)
    return None


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
