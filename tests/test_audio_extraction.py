"""audio_extraction on real media: decode/resample, cuts, speech activity, bad inputs."""
from __future__ import annotations

import json

import cerberus
import numpy as np
import pytest

from pipeline_tasks.errors import StageConfigError, StageInputError
from pipeline_tasks.stages.audio_extraction import AudioExtractionExecutor

try:
    from .audio_fixtures import JFK, LIBRI, NO_AUDIO_VIDEO, SINTEL, libri_lab, read_pcm, silent_wav
except ImportError:
    from audio_fixtures import JFK, LIBRI, NO_AUDIO_VIDEO, SINTEL, libri_lab, read_pcm, silent_wav


def run(tmp_path, **config):
    config.setdefault("output_dir", str(tmp_path / "out"))
    stage = AudioExtractionExecutor("extract", config)
    stage.validate_config()
    return stage.execute({})


def test_wav_passthrough_keeps_samples(tmp_path):
    result = run(tmp_path, input=str(JFK))
    out = result.outputs
    assert out["sample_rate"] == 16000 and out["channels"] == 1
    assert out["duration"] == pytest.approx(11.0, abs=0.001)
    got, rate = read_pcm(tmp_path / "out" / "audio.wav")
    src, _ = read_pcm(JFK)
    assert rate == 16000
    # 16 kHz mono s16 in → the same samples out (float round trip may move a sample by one step)
    assert len(got) == len(src)
    assert np.abs(got.astype(int) - src.astype(int)).max() <= 1
    meta = json.loads((tmp_path / "out" / "audio.json").read_text())
    assert meta["source_sample_rate"] == 16000 and meta["speech"] is None


def test_video_audio_is_resampled_to_16k_mono_and_cut(tmp_path):
    result = run(tmp_path, input=str(SINTEL), start=2.0, end=5.5)
    assert result.outputs["duration"] == pytest.approx(3.5, abs=1e-3)
    pcm, rate = read_pcm(tmp_path / "out" / "audio.wav")
    assert rate == 16000 and len(pcm) == 56000
    meta = json.loads((tmp_path / "out" / "audio.json").read_text())
    assert meta["source_sample_rate"] == 48000 and meta["source_channels"] == 2
    assert np.abs(pcm).max() > 1000          # real sound, not zeros
    full = run(tmp_path, input=str(SINTEL), output_dir=str(tmp_path / "full"))
    assert full.outputs["duration"] == pytest.approx(26.2, abs=0.1)
    # the cut (which stops decoding at `end`) is exactly that slice of the whole track
    whole, _ = read_pcm(tmp_path / "full" / "audio.wav")
    assert np.array_equal(whole[32000:88000], pcm)


def test_output_is_deterministic(tmp_path):
    run(tmp_path, input=str(SINTEL), end=3.0, output_dir=str(tmp_path / "a"))
    run(tmp_path, input=str(SINTEL), end=3.0, output_dir=str(tmp_path / "b"))
    for name in ("audio.wav", "audio.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("method", ["silero", "webrtc"])
def test_speech_activity_matches_labelled_speech(tmp_path, method):
    wav = LIBRI[1]                     # 0880: speech 0.25 s – 2.77 s per its .lab file
    start, end = libri_lab(wav)
    result = run(tmp_path, input=str(wav), vad={"enabled": True, "method": method, "pad": 0.0})
    meta = json.loads((tmp_path / "out" / "audio.json").read_text())
    spans = meta["speech"]
    assert result.outputs["speech_spans"] == len(spans) >= 1
    tolerance = 0.35 if method == "silero" else 0.6   # webrtc decides on 30 ms frames and reacts late
    assert abs(spans[0][0] - start) < tolerance
    assert abs(spans[-1][1] - end) < tolerance


def test_speech_segments_are_split_into_files(tmp_path):
    result = run(tmp_path, input=str(JFK), vad={"enabled": True}, split_segments=True)
    files = result.outputs["segment_files"]
    assert len(files) == result.outputs["speech_spans"] >= 3   # JFK pauses between phrases
    total = sum(len(read_pcm(tmp_path / "out" / "segments" / f.rsplit("/", 1)[-1])[0]) for f in files) / 16000
    assert total == pytest.approx(result.outputs["speech_seconds"], abs=0.01 * len(files))
    assert 5.0 < total < 11.0


def test_music_without_speech_is_reported(tmp_path):
    with pytest.raises(StageInputError, match="no speech found"):
        run(tmp_path, input=str(SINTEL), vad={"enabled": True})


def test_silent_file_is_reported(tmp_path):
    with pytest.raises(StageInputError, match="silent") as err:
        run(tmp_path, input=str(silent_wav(tmp_path / "silence.wav")))
    assert err.value.path.endswith("silence.wav")


def test_video_without_audio_stream(tmp_path):
    with pytest.raises(StageInputError, match="no audio stream") as err:
        run(tmp_path, input=str(NO_AUDIO_VIDEO))
    assert "video" in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio\n" * 50)
    with pytest.raises(StageInputError, match="cannot read"):
        run(tmp_path, input=str(junk))
    with pytest.raises(StageInputError, match="does not exist"):
        run(tmp_path, input=str(tmp_path / "nope.mp4"))


def test_cut_past_the_end(tmp_path):
    with pytest.raises(StageInputError, match="no audio between"):
        run(tmp_path, input=str(JFK), start=20.0)


def test_config_checks(tmp_path):
    with pytest.raises(StageConfigError, match="greater than start"):
        run(tmp_path, input=str(JFK), start=3.0, end=2.0)
    with pytest.raises(StageConfigError, match="split_segments"):
        run(tmp_path, input=str(JFK), split_segments=True)
    with pytest.raises(StageConfigError, match="16000"):
        run(tmp_path, input=str(JFK), sample_rate=8000, vad={"enabled": True})
    v = cerberus.Validator(AudioExtractionExecutor.config_schema)
    assert v.validate({"input": "a.mp4", "output_dir": "o", "vad": {"enabled": True, "method": "webrtc"}})
    assert not v.validate({"input": "a.mp4", "output_dir": "o", "sample_rate": 100})
    assert not v.validate({"input": "a.mp4", "output_dir": "o", "vad": {"method": "energy"}})
    assert not v.validate({"output_dir": "o"})


# -- damaged media: a truncated or corrupt file is never taken as complete ---------------------------
def faststart_copy(src, dest):
    """`src` remuxed (no re-encode) with its index first, as streaming tools write MP4: cut short,
    such a file still opens and decodes up to the cut."""
    import av
    with av.open(str(src)) as i, av.open(str(dest), "w", options={"movflags": "+faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in ("audio", "video")}
        for packet in i.demux(*[i.streams[k] for k in streams]):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    return dest


def test_truncated_mp4_fails_or_continues_with_the_lost_span(tmp_path, caplog):
    whole = faststart_copy(SINTEL, tmp_path / "whole.mp4")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(StageInputError) as err:
        run(tmp_path, input=str(cut))
    assert "corrupt or truncated" in err.value.message and "of 26.20 s" in err.value.message
    assert "on_corrupt: continue" in str(err.value)
    assert not (tmp_path / "out" / "audio.wav").exists()
    res = run(tmp_path, input=str(cut), on_corrupt="continue")
    (span,) = res.outputs["lost_spans"]
    assert 5 < res.outputs["duration"] < 20 and span == [res.outputs["duration"], 26.197]
    assert res.metrics["lost_seconds"] == pytest.approx(26.197 - res.outputs["duration"], abs=1e-3)
    assert json.loads((tmp_path / "out" / "audio.json").read_text())["lost_spans"] == [span]
    assert "corrupt or truncated" in caplog.text
    # the same file whole: nothing lost (its decoded length falls 0.08 s short of the header's)
    res = run(tmp_path, input=str(whole), output_dir=str(tmp_path / "whole"))
    assert res.outputs["lost_spans"] == [] and res.metrics["lost_seconds"] == 0 and res.metrics["decode_errors"] == 0


def test_cut_wav_fails_or_continues(tmp_path):
    data = JFK.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:data.index(b"data") + 8 + 2 * 16000 * 4])   # header + 4 s of the 11 s it declares
    with pytest.raises(StageInputError, match=r"decoded 4.00 s of 11.00 s, 7.00 s lost"):
        run(tmp_path, input=str(cut))
    res = run(tmp_path, input=str(cut), on_corrupt="continue")
    assert res.outputs["duration"] == 4.0 and res.outputs["lost_spans"] == [[4.0, 11.0]]
    # a cut that ends before the damage needs nothing the file lacks
    assert run(tmp_path, input=str(cut), start=1.0, end=3.5).outputs["lost_spans"] == []
    res = run(tmp_path, input=str(cut), start=2.0, end=6.0, on_corrupt="continue")
    assert res.outputs["lost_spans"] == [[2.0, 4.0]]


def test_corrupt_packets_become_silence_at_their_time(tmp_path):
    import av
    whole = faststart_copy(SINTEL, tmp_path / "whole.mp4")
    with av.open(str(whole)) as c:
        packets = [(p.pos, p.size, float(p.pts * p.time_base)) for p in c.demux(c.streams.audio[0]) if p.size]
    data = bytearray(whole.read_bytes())
    damaged = packets[500:505]
    rng = np.random.default_rng(0)
    for pos, size, _ in damaged:
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(StageInputError, match=r"5 corrupt packet\(s\)"):
        run(tmp_path, input=str(bad))
    res = run(tmp_path, input=str(bad), on_corrupt="continue")
    assert res.metrics["decode_errors"] == 5
    (span,) = res.outputs["lost_spans"]
    assert span[1] - span[0] == pytest.approx(5 * 1024 / 48000, abs=1e-3)        # five AAC frames
    assert span[0] == pytest.approx(damaged[0][2], abs=0.1)
    clean = run(tmp_path, input=str(whole), output_dir=str(tmp_path / "clean"))
    assert res.outputs["duration"] == clean.outputs["duration"]         # later audio keeps its time
    got, _ = read_pcm(tmp_path / "out" / "audio.wav")
    ref, _ = read_pcm(tmp_path / "clean" / "audio.wav")
    a, b = int(span[0] * 16000), int(span[1] * 16000)
    assert np.array_equal(got[:a - 100], ref[:a - 100])
    assert np.abs(got[a + 100:b - 100]).max() == 0
    assert np.array_equal(got[b + 16000:], ref[b + 16000:])
