"""subtitle_generation: cue layout rules on real word timings, and SRT/VTT round trips."""
from __future__ import annotations

import json
from pathlib import Path

import cerberus
import pysubs2
import pytest

from pipeline_tasks.errors import StageConfigError, StageInputError
from pipeline_tasks.stages.audio.cues import CueRules, build_cues, quality, wrap
from pipeline_tasks.stages.audio.transcript import Segment, Word
from pipeline_tasks.stages.subtitle_generation import SubtitleGenerationExecutor

try:
    from .audio_fixtures import LIBRI, libri_word_segments
except ImportError:
    from audio_fixtures import LIBRI, libri_word_segments


def librivox_segments(path: Path) -> list[dict]:
    """The five LibriVox sentences' forced alignments, laid end to end 0.8 s apart."""
    records, offset = [], 0.0
    for wav in LIBRI:
        rec = libri_word_segments(wav, offset)
        records += rec
        offset = rec[-1]["end"] + 0.8
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def generate(tmp_path, **config):
    config.setdefault("output_dir", str(tmp_path / "subs"))
    stage = SubtitleGenerationExecutor("subs", config)
    stage.validate_config()
    return stage.execute({})


def test_cues_follow_the_rules_and_keep_every_word(tmp_path):
    records = librivox_segments(tmp_path / "segments.jsonl")
    rules = dict(max_chars_per_line=24, max_lines=2, max_cps=15, min_duration=1.0, max_duration=4.0)
    result = generate(tmp_path, input=str(tmp_path / "segments.jsonl"), **rules)
    cues = [json.loads(line) for line in (tmp_path / "subs" / "cues.jsonl").read_text().splitlines()]
    assert result.outputs["cues"] == len(cues) > 5
    words = [w for r in records for w in r["words"]]
    assert " ".join(" ".join(c["lines"]) for c in cues).split() == [w["word"] for w in words]
    for cue in cues:
        assert len(cue["lines"]) <= 2 and all(len(line) <= 24 for line in cue["lines"])
        # the end may give up min_gap (0.04 s) where the next cue's first word touches this one's last
        assert cue["start"] == cue["word_start"] and cue["end"] >= cue["word_end"] - 0.04 - 1e-9
        assert cue["end"] - cue["start"] <= 4.0 + 1e-9
    for a, b in zip(cues, cues[1:]):
        assert a["end"] <= b["start"] - 0.04 + 1e-9
    # no cue runs across the 0.8 s pauses between sentences
    starts = {round(r["start"], 3) for r in records}
    assert starts <= {c["start"] for c in cues}
    assert result.metrics["within_line_limits"] == 1.0 and result.metrics["overlaps"] == 0
    # read speech runs at ~16-18 characters a second, so some cues cannot meet 15 CPS; each of those
    # must have been stretched as far as the rules allow (up to the next cue or max_duration)
    over = []
    for i, cue in enumerate(cues):
        text = " ".join(cue["lines"])
        if len(text) / (cue["end"] - cue["start"]) > 15 + 1e-6:
            over.append(i)
            limit = min(cues[i + 1]["start"] - 0.04 if i + 1 < len(cues) else 1e9, cue["start"] + 4.0)
            assert cue["end"] == pytest.approx(limit, abs=1e-3)
    assert result.metrics["within_cps"] == round(1 - len(over) / len(cues), 4)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_files_round_trip_through_pysubs2(tmp_path, fmt):
    librivox_segments(tmp_path / "segments.jsonl")
    result = generate(tmp_path, input=str(tmp_path / "segments.jsonl"), formats=[fmt])
    cues = [json.loads(line) for line in (tmp_path / "subs" / "cues.jsonl").read_text().splitlines()]
    path = Path(result.outputs[f"{fmt}_file"])
    loaded = pysubs2.load(str(path), encoding="utf-8")
    assert len(loaded) == len(cues)
    for event, cue in zip(loaded, cues):
        assert event.start == round(cue["start"] * 1000) and event.end == round(cue["end"] * 1000)
        assert event.text.split(r"\N") == cue["lines"]
    head = path.read_text(encoding="utf-8").splitlines()[0]
    assert head == ("WEBVTT" if fmt == "vtt" else "1")
    assert not (tmp_path / "subs" / f"subtitles.{'vtt' if fmt == 'srt' else 'srt'}").exists()


def test_output_is_deterministic(tmp_path):
    librivox_segments(tmp_path / "segments.jsonl")
    generate(tmp_path, input=str(tmp_path / "segments.jsonl"), output_dir=str(tmp_path / "a"))
    generate(tmp_path, input=str(tmp_path / "segments.jsonl"), output_dir=str(tmp_path / "b"))
    for name in ("subtitles.srt", "subtitles.vtt", "cues.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def words(spec: list[tuple[str, float, float]]) -> list[Word]:
    return [Word(s, e, w) for w, s, e in spec]


def test_split_after_punctuation_when_a_cue_is_full():
    seg = Segment(0.0, 4.0, "", words([("Well,", 0.0, 0.3), ("if", 0.35, 0.5), ("you", 0.5, 0.6),
                                       ("ask,", 0.6, 0.9), ("we", 0.95, 1.1), ("could", 1.1, 1.4),
                                       ("perhaps", 1.4, 1.8), ("go", 1.8, 2.0), ("there", 2.0, 2.3),
                                       ("tomorrow", 2.3, 2.8)]))
    cues = build_cues([seg], CueRules(max_chars=20, max_lines=1, max_cps=40))
    assert cues[0].text == "Well, if you ask,"
    assert all(len(c.text) <= 20 for c in cues)


def test_pause_starts_a_new_cue_and_sentence_end_too():
    seg = Segment(0, 5, "", words([("one", 0.0, 0.3), ("two", 0.35, 0.6), ("three", 1.5, 1.9),
                                   ("four.", 1.95, 2.3), ("Five", 2.4, 2.7)]))
    cues = build_cues([seg], CueRules(pause_split=0.6, min_duration=0.2))
    assert [c.text for c in cues] == ["one two", "three four.", "Five"]


def test_cps_and_min_duration_stretch_the_end_but_never_into_the_next_cue():
    fast = words([("supercalifragilistic", 0.0, 0.4), ("expialidocious", 0.4, 0.8)])
    nxt = words([("next", 1.5, 1.8)])
    cues = build_cues([Segment(0, 0.8, "", fast), Segment(1.5, 1.8, "", nxt)],
                      CueRules(max_chars=42, max_cps=17, min_duration=1.0, pause_split=0.6))
    assert cues[0].end == pytest.approx(1.5 - 0.04)      # wanted 35/17 = 2.06 s, the next cue starts at 1.5
    assert cues[1].end == pytest.approx(1.5 + 1.0)       # min duration
    q = quality(cues, CueRules(max_cps=17))
    assert q["within_cps"] == 0.5 and q["overlaps"] == 0


def test_segments_without_word_timings_are_spread_over_the_segment():
    cues = build_cues([Segment(10.0, 16.0, "a text from a backend that gives no word timings at all", [])],
                      CueRules(max_chars=20, max_lines=1, min_duration=0.5))
    assert cues[0].start == 10.0 and len(cues) >= 3
    assert all(len(c.text) <= 20 for c in cues) and cues[-1].end <= 16.0 + 1.0


def test_wrap_balances_lines():
    assert wrap("the quick brown fox jumps over the lazy dog".split(), 30, 2) == \
        ["the quick brown fox", "jumps over the lazy dog"]
    assert wrap(["x" * 50], 42, 2) is None


def test_errors(tmp_path):
    with pytest.raises(StageInputError, match="transcript file not found"):
        generate(tmp_path, input_dir=str(tmp_path / "nothing"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"start": 0}\n')
    with pytest.raises(StageInputError, match="line 1"):
        generate(tmp_path, input=str(bad))
    with pytest.raises(StageConfigError, match="min_duration"):
        generate(tmp_path, input=str(bad), min_duration=5, max_duration=4)
    v = cerberus.Validator(SubtitleGenerationExecutor.config_schema)
    assert not v.validate({"output_dir": "o", "input_dir": "t", "formats": ["ass"]})
    assert not v.validate({"output_dir": "o", "input_dir": "t", "max_lines": 4})
    assert v.validate({"output_dir": "o", "input_dir": "t", "max_cps": 20, "formats": ["vtt"]})


def test_a_bad_line_in_a_listing_is_named(tmp_path):
    """segments.jsonl, cues.jsonl and frames.jsonl: a line that is not a record gives its number."""
    from pipeline_tasks.stages.audio.subtitle_files import read_cues
    from pipeline_tasks.stages.audio.transcript import read_segments
    from pipeline_tasks.stages.characters.frames_input import list_frames

    good_cue = json.dumps({"start": 0.0, "end": 1.0, "lines": ["hi"]})
    (tmp_path / "cues.jsonl").write_text(good_cue + "\n\n" + '{"start": 1.0}\n')
    with pytest.raises(StageInputError, match=r"line 3 of .*cues.jsonl is not a cue record"):
        read_cues(tmp_path / "cues.jsonl")
    (tmp_path / "segments.jsonl").write_text("not json\n")
    with pytest.raises(StageInputError, match=r"line 1 of .*segments.jsonl is not a segment record"):
        read_segments(tmp_path / "segments.jsonl")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frames.jsonl").write_text(json.dumps({"file": "a.png", "frame_index": 0}) + "\n[1, 2]\n")
    with pytest.raises(StageInputError, match=r"frames.jsonl:2: not a frame record: a JSON object was expected"):
        list_frames(frames)
    (tmp_path / "cues.jsonl").write_text(good_cue + "\n")
    assert [c.lines for c in read_cues(tmp_path / "cues.jsonl")] == [["hi"]]
