"""translation: missing-package/model errors, and the transformers path with a tiny MarianMT model
the test builds itself (wiring, batching, cue re-assembly; translation quality is not judged)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cerberus
import pysubs2
import pytest

from pipeline_tasks.errors import ModelWeightsError, StageConfigError, StageInputError
from pipeline_tasks.stages.audio.cues import Cue
from pipeline_tasks.stages.audio.reassembly import distribute, reassemble, sentence_groups
from pipeline_tasks.stages.subtitle_generation import SubtitleGenerationExecutor
from pipeline_tasks.stages.translation import TranslationExecutor

try:
    from .audio_fixtures import LIBRI, build_tiny_marian, libri_word_segments, needs_ml
except ImportError:
    from audio_fixtures import LIBRI, build_tiny_marian, libri_word_segments, needs_ml


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("models") / "opus-mt-en-xx-tiny")


@pytest.fixture()
def subtitles(tmp_path) -> Path:
    """Subtitles (cues.jsonl etc.) of the LibriVox sentences' real word timings, with punctuation
    added so that some sentences run over several cues."""
    records, offset = [], 0.0
    for wav in LIBRI:
        rec = libri_word_segments(wav, offset)[0]
        rec["words"][-1]["word"] += "."
        rec["text"] += "."
        records.append(rec)
        offset = rec["end"] + 0.8
    (tmp_path / "segments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    SubtitleGenerationExecutor("subs", {"input": str(tmp_path / "segments.jsonl"), "output_dir": str(tmp_path / "subs"),
                                     "max_chars_per_line": 20, "max_lines": 2}).execute({})
    return tmp_path / "subs"


def translate(tmp_path, **config):
    config.setdefault("output_dir", str(tmp_path / "translated"))
    stage = TranslationExecutor("translate", config)
    stage.validate_config()
    return stage.execute({})


def test_argos_without_language_packages_says_what_to_install(tmp_path, subtitles):
    import importlib.util
    if importlib.util.find_spec("argostranslate") is None:      # the ml extra is not installed
        with pytest.raises(StageConfigError, match="pip install argostranslate"):
            translate(tmp_path, input_dir=str(subtitles), backend="argos", target_languages=["de"])
        return
    with pytest.raises(ModelWeightsError) as err:
        translate(tmp_path, input_dir=str(subtitles), backend="argos", target_languages=["de"])
    text = str(err.value)
    assert "no argos-translate language package for en->de" in text
    assert "argospm install translate-en_de" in text and "install_from_path" in text


def test_missing_model_directory_is_named(tmp_path, subtitles):
    missing = tmp_path / "models" / "opus-mt-en-de"
    with pytest.raises(ModelWeightsError, match="translation model directory not found") as err:
        translate(tmp_path, input_dir=str(subtitles), backend="transformers", target_languages=["de"],
                  models={"de": str(missing)})
    assert err.value.path == str(missing) and "Helsinki-NLP/opus-mt-en-de" in str(err.value)
    with pytest.raises(ModelWeightsError, match="needs a model directory for target language 'fr'"):
        translate(tmp_path, input_dir=str(subtitles), backend="transformers", target_languages=["fr"])


@needs_ml
def test_tiny_marian_two_languages_batches_and_reassembly(tmp_path, subtitles, marian):
    source = [json.loads(line) for line in (subtitles / "cues.jsonl").read_text().splitlines()]
    result = translate(tmp_path, input_dir=str(subtitles), backend="transformers", target_languages=["de", "fr"],
                       models={"de": str(marian), "fr": str(marian)}, batch_size=2, max_new_tokens=24,
                       max_chars_per_line=20, max_lines=2)
    groups = sentence_groups([Cue(c["start"], c["end"], c["lines"]) for c in source])
    assert len(groups) == len(LIBRI) < len(source)         # sentences span several cues
    assert result.metrics["sentences"] == len(groups)
    assert result.metrics["batches"] == {"de": math.ceil(len(groups) / 2), "fr": math.ceil(len(groups) / 2)}
    assert result.outputs["languages"] == ["de", "fr"]
    # what the model says for each sentence, asked directly
    from pipeline_tasks.stages.audio.translate_hf import HFSeq2SeqTranslator
    settings = TranslationExecutor("t", {"output_dir": str(tmp_path), "target_languages": ["de"],
                                         "model_dir": str(marian), "max_new_tokens": 24}).settings
    direct = HFSeq2SeqTranslator("en", "de", settings, None)
    direct.load()
    expected = direct.translate([" ".join(" ".join(source[i]["lines"]) for i in g) for g in groups], 1)
    for lang in ("de", "fr"):
        files = result.outputs["files"][lang]
        cues = [json.loads(line) for line in Path(files["cues"]).read_text().splitlines()]
        # every cue keeps source timing: starts and ends are source cue boundaries, in order, no overlap
        starts = {c["start"] for c in source}
        ends = {c["end"] for c in source}
        assert all(c["start"] in starts and c["end"] in ends for c in cues)
        assert all(a["end"] <= b["start"] for a, b in zip(cues, cues[1:]))
        # the words of the cues, in order, are exactly the sentence translations (batching and
        # re-assembly lose or reorder nothing)
        assert " ".join(" ".join(c["lines"]) for c in cues).split() == " ".join(expected).split()
        for fmt in ("srt", "vtt"):
            loaded = pysubs2.load(files[fmt], encoding="utf-8")
            assert [(e.start, e.end) for e in loaded] == [(round(c["start"] * 1000), round(c["end"] * 1000))
                                                         for c in cues]
        assert Path(files["srt"]).name == f"subtitles.{lang}.srt"


@needs_ml
def test_one_model_dir_cannot_serve_two_languages(tmp_path, subtitles, marian):
    with pytest.raises(StageConfigError, match="one model_dir cannot serve several target languages"):
        translate(tmp_path, input_dir=str(subtitles), backend="transformers", target_languages=["de", "fr"],
                  model_dir=str(marian))


def test_reassembly_shares_words_in_proportion_and_keeps_time():
    assert distribute("a b c d e f".split(), [10, 20]) == [["a", "b"], ["c", "d", "e", "f"]]
    assert distribute(["x"], [5, 5, 5]) == [["x"], [], []]
    cues = [Cue(0.0, 1.0, ["one two"]), Cue(1.0, 2.0, ["three four"]), Cue(3.5, 4.0, ["five."])]
    groups = sentence_groups(cues)
    assert groups == [[0, 1], [2]]
    out = reassemble(cues, ["eins", "fünf."], groups, 42, 2)
    # a cue left without words lends its time to its neighbour in the same sentence
    assert [(c.start, c.end, c.text) for c in out] == [(0.0, 2.0, "eins"), (3.5, 4.0, "fünf.")]


def test_config_and_input_errors(tmp_path, subtitles):
    with pytest.raises(StageConfigError, match="source language"):
        translate(tmp_path, input_dir=str(subtitles), target_languages=["en"])
    with pytest.raises(StageConfigError, match="twice"):
        translate(tmp_path, input_dir=str(subtitles), target_languages=["de", "de"])
    from pipeline_tasks.stages.audio.subtitle_files import read_cues
    with pytest.raises(StageInputError, match="cue file not found"):
        read_cues(tmp_path / "none" / "cues.jsonl", stage="t")
    v = cerberus.Validator(TranslationExecutor.config_schema)
    assert not v.validate({"output_dir": "o", "input_dir": "s", "target_languages": []})
    assert not v.validate({"output_dir": "o", "input_dir": "s", "target_languages": ["German"]})
    assert not v.validate({"output_dir": "o", "input_dir": "s", "target_languages": ["de"], "backend": "google"})
    assert v.validate({"output_dir": "o", "input_dir": "s", "target_languages": ["de", "deu_Latn"],
                       "backend": "transformers", "models": {"de": "m1", "deu_Latn": "m2"}})

