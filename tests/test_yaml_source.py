"""YamlSource: PyYAML's reading of a pipeline file, its syntax errors and the locations it reports."""
from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline_tasks import SpecError
from pipeline_tasks.spec.source import PipelineSource, YamlSource, stage_lines

ROOT = Path(__file__).resolve().parent.parent


def repo_yaml_files() -> list[Path]:
    return sorted(p for folder in ("configs", "tests", "bench") for p in (ROOT / folder).rglob("*.y*ml"))


@pytest.mark.parametrize("path", repo_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_pipelines_read_as_pyyaml_reads_them(path):
    assert YamlSource.from_file(path).load() == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("text,expected", [
    ("a: yes", {"a": True}),                                    # YAML 1.1: yes/no/on/off are booleans
    ("a: off", {"a": False}),
    ("a: 010", {"a": 8}),                                       # ... a leading 0 is octal
    ("a: 1_000", {"a": 1000}),
    ("a: 2024-01-15", {"a": datetime.date(2024, 1, 15)}),
    ("a: '2024'", {"a": "2024"}),
    ("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3", {"base": {"x": 1, "y": 2}, "c": {"x": 1, "y": 3}}),
    ("a: &x [1, 2]\nb: *x", {"a": [1, 2], "b": [1, 2]}),
    ("1: one\n'1': two", {1: "one", "1": "two"}),                 # an int key and a string key differ
    ("", None),
    ("# only a comment", None),
])
def test_yaml_1_1_semantics(text, expected):
    assert YamlSource(text).load() == expected


@pytest.mark.parametrize("text,line,column,fragment", [
    ("pipeline:\n  name: x\n version: 1\n", 3, 2, "did not find expected key"),
    ("a: [1, 2\nb: 3\n", 2, 2, "did not find expected ',' or ']'"),
    ("a: 'open\n", 2, 1, "found unexpected end of stream"),
    ("a: *nowhere\n", 1, 4, "found undefined alias"),
    ("a: 1\n---\nb: 2\n", 2, 1, "but found another document"),
    ("? [1]\n: x\n", 1, 3, "found unhashable key"),
])
def test_syntax_errors_name_line_and_column(text, line, column, fragment):
    with pytest.raises(SpecError) as info:
        YamlSource(text, "p.yaml").load()
    error = info.value
    assert (error.line, error.column) == (line, column), str(error)
    assert str(error).startswith(f"p.yaml:{line}:{column}: invalid YAML") and fragment in str(error)


def test_locations_of_keys_values_and_items():
    source = YamlSource(textwrap.dedent("""\
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              args: {n: 1}
          - id: b
            depends_on: [a, c]
        """))
    assert source.locate(("stages", 0, "config", "args", "n")) == (6, 17)
    assert source.locate(("stages", 0, "config"), key=True) == (5, 5)
    assert source.locate(("stages", 0, "config")) == (6, 7)
    assert source.locate(("stages", 1, "depends_on", 1)) == (8, 21)
    # a path below what the file holds falls back to the nearest parent
    assert source.locate(("stages", 1, "depends_on", 1, "deeper")) == (8, 21)
    assert source.locate(("stages", 5)) == (3, 3)
    assert source.locate(("nowhere",)) == (1, 1)


def test_error_points_at_the_key_or_the_value():
    source = YamlSource("pipeline: {name: x}\nstages:\n  - {id: a, tpye: custom}\n", "p.yaml")
    on_key = source.error("unknown key 'tpye'", ("stages", 0, "tpye"), key=True, stage="a")
    assert str(on_key) == "p.yaml:3:13: stage 'a': unknown key 'tpye'"
    on_value = source.error("bad", ("stages", 0, "tpye"))
    assert (on_value.line, on_value.column) == (3, 19)


def test_from_file_errors(tmp_path):
    with pytest.raises(SpecError, match="pipeline file not found"):
        PipelineSource.from_file(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        PipelineSource.from_file(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not a UTF-8 text file"):
        PipelineSource.from_file(latin1)


def test_stage_lines():
    text = "stages:\n  - id: a\n    type: custom\n  -   id: 'b'\n    x: 1\n  - {id: c}\n"
    assert stage_lines(text) == {"a": 2, "b": 4}
    assert YamlSource(text).stage_lines() == {"a": 2, "b": 4}
