"""subtitle_index: one index over a batch of recordings' subtitles, gathered in item order, on the
forced alignments of real LibriVox sentences."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from audio_fixtures import LIBRI, libri_word_segments

from pipeline_tasks import OrchestratorConfig, PipelineOrchestrator, PipelineState
from pipeline_tasks.errors import StageInputError
from pipeline_tasks.spec.loader import load_pipeline
from pipeline_tasks.stages.audio.subtitle_files import read_cues
from pipeline_tasks.stages.subtitle_index import SubtitleIndexExecutor
from pipeline_tasks.state import events as ev

PIPELINE = """
pipeline: {name: subtitle-index}
stages:
  - id: subtitles
    type: subtitle_generation
    foreach: {glob: "segments/*.jsonl"}
    config: {input: "{item.path}", output_dir: "out/subtitles/{item}", max_duration: 3.0}
  - id: index
    type: subtitle_index
    depends_on: [subtitles]
    config: {input_dir: "{subtitles.output_dir}", output_dir: out/index}
"""


def recording(ws, key: str, wav: Path) -> None:
    ws.write(f"segments/{key}.jsonl", "".join(json.dumps(s) + "\n" for s in libri_word_segments(wav)))


def run(path):
    return PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(
        load_pipeline(path, use_cache=False))


def test_one_index_over_every_recording_in_item_order(ws):
    path = ws.write("p.yaml", PIPELINE)
    for key, wav in (("rec2", LIBRI[0]), ("rec10", LIBRI[1]), ("rec1", LIBRI[2])):
        recording(ws, key, wav)
    assert run(path).status == PipelineState.COMPLETED
    index = ws.root / "out/index"
    entries = [json.loads(line) for line in (index / "index.jsonl").read_text().splitlines()]
    assert [e["item"] for e in entries] == ["rec1", "rec2", "rec10"]
    for e in entries:
        cues = read_cues(ws.root / "out/subtitles" / e["item"] / "cues.jsonl")
        assert e["cues"] == len(cues) > 0 and e["duration"] == round(cues[-1].end, 3)
        assert e["words"] == sum(len(" ".join(c.lines).split()) for c in cues)
        assert set(e["subtitles"]) == {"srt", "vtt"}
        for name in e["subtitles"].values():           # relative to the index: still true when the project moves
            assert (index / name).resolve() == (ws.root / "out/subtitles" / e["item"] / Path(name).name).resolve()
    text = (index / "subtitles.txt").read_text()
    assert [line for line in text.splitlines() if line.startswith("== ")] == ["== rec1", "== rec2", "== rec10"]
    assert libri_word_segments(LIBRI[1])[0]["words"][0]["word"] in text.split("== rec10")[1]

    recording(ws, "rec3", LIBRI[3])                       # a new recording: its item and the index run
    assert run(path).status == PipelineState.COMPLETED
    events = ws.events()
    last = max(i for i, e in enumerate(events) if e["type"] == ev.PIPELINE_STARTED)
    assert sorted(e["stage_id"] for e in events[last:] if e["type"] == ev.STAGE_STARTED) == ["index", "subtitles:rec3"]
    entries = [json.loads(line) for line in (index / "index.jsonl").read_text().splitlines()]
    assert [e["item"] for e in entries] == ["rec1", "rec2", "rec3", "rec10"]


def test_a_folder_that_is_no_subtitle_output_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    stage = SubtitleIndexExecutor("index", {"input_dir": [str(tmp_path / "a"), str(tmp_path / "b")],
                                         "output_dir": str(tmp_path / "out")})
    with pytest.raises(StageInputError, match="input_dir must list subtitle_generation output folders") as info:
        stage.execute({})
    assert str(tmp_path / "a") in str(info.value)
