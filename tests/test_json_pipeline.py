"""`.json` pipeline files: the same document as YAML, read by the json module, errors located alike."""
from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from pipeline_tasks import DagError, SpecError
from pipeline_tasks.spec.loader import load_pipeline
from pipeline_tasks.spec.source import JsonSource, PipelineSource, YamlSource

PIPELINE = {
    "pipeline": {"name": "machine", "version": "2"},
    "vars": {"size": 512},
    "stages": [
        {"id": "a", "type": "custom", "config": {"command": "true", "output_dir": "out/a",
                                                 "params": {"n": "{vars.size}"}}},
        {"id": "b", "type": "custom", "depends_on": ["a"], "retry": {"max_retries": 2}, "timeout": 30,
         "config": {"command": "ls {src}", "params": {"src": "{a.output_dir}"}, "output_dir": "out/b"}},
    ],
}


def test_json_and_yaml_give_the_same_pipeline(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(PIPELINE, indent=2))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    from_json, from_yaml = load_pipeline(tmp_path / "p.json"), load_pipeline(tmp_path / "p.yaml")
    assert isinstance(PipelineSource.from_file(tmp_path / "p.json"), JsonSource)
    assert isinstance(PipelineSource.from_file(tmp_path / "p.yaml"), YamlSource)
    assert [(s.id, s.config, s.depends_on, s.retry, s.timeout) for s in from_json.stages] == \
           [(s.id, s.config, s.depends_on, s.retry, s.timeout) for s in from_yaml.stages]
    assert from_json.stages[0].config["params"] == {"n": 512} and from_json.version == "2"
    # each stage knows the line of its id (for messages at run time)
    assert [s.line for s in from_json.stages] == [11, 22]


def test_compact_json_on_one_line(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PIPELINE, separators=(",", ":")))
    assert [s.id for s in load_pipeline(path).stages] == ["a", "b"]


@pytest.mark.parametrize("text,line,column,fragment", [
    ('{\n  "pipeline": {"name": "x"},\n  "stages": [],\n}\n', 4, 1, "invalid JSON: Expecting property name"),
    ('{\n  "pipeline": {"name": "x"}\n  "stages": []\n}\n', 3, 3, "invalid JSON: Expecting ',' delimiter"),
    ("{'pipeline': 1}", 1, 2, "invalid JSON: Expecting property name enclosed in double quotes"),
    ("", 1, 1, "invalid JSON: Expecting value"),
    ('{"a": 1} {"b": 2}', 1, 10, "invalid JSON: Extra data"),
    ('{"pipeline": {"name": "x"},\n "stages": [{"id": "a", "type": "custom",\n  "config": {"command": "tru\ne"}}]}',
     3, 29, "invalid JSON: Invalid control character"),
])
def test_syntax_errors_are_located(tmp_path, text, line, column, fragment):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    error = info.value
    assert (error.line, error.column) == (line, column), str(error)
    assert str(error).startswith(f"{path}:{line}:{column}: {fragment}"), str(error)


DOC = textwrap.dedent("""\
    {
      "pipeline": {"name": "x"},
      "stages": [
        {"id": "extract", "type": "custom", "config": {"command": "true", "output_dir": "out/e"}},
        {
          "id": "b",
          "type": "custom",
          "depends_on": ["extract"],
          "timeout": 1,
          "config": {
            "command": "true",
            "output_dir": "out/b",
            "inputs": ["in.txt"]
          }
        }
      ]
    }
    """)


@pytest.mark.parametrize("old,new,line,column,error_cls,fragments", [
    # an unknown key points at the key
    ('"output_dir": "out/b"', '"outptu_dir": "out/b"', 12, 9, SpecError,
     ["stage 'b', key 'outptu_dir'", "unknown key 'outptu_dir'", "did you mean 'output_dir'"]),
    # a wrong value points at the value
    ('"command": "true",\n', '"command": 42,\n', 11, 20, SpecError,
     ["stage 'b', key 'command'", "expected string, got integer 42"]),
    ('["extract"]', '["extract", "extrct"]', 8, 33, DagError,
     ["depends on unknown stage 'extrct'", "did you mean 'extract'"]),
    ('"timeout": 1', '"timeout": -1', 9, 18, SpecError, ["stage 'b'", "must be at least 0"]),
    ('"in.txt"', '"missing.txt"', 13, 20, SpecError,
     ["stage 'b', key 'inputs'", "input file 'missing.txt' does not exist"]),
])
def test_validation_errors_are_located(tmp_path, monkeypatch, old, new, line, column, error_cls, fragments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("x\n")
    path = tmp_path / "p.json"
    path.write_text(DOC)
    assert [s.id for s in load_pipeline(path).stages] == ["extract", "b"]
    assert old in DOC
    path.write_text(DOC.replace(old, new))
    with pytest.raises(error_cls) as info:
        load_pipeline(path)
    error = info.value
    assert (error.line, error.column) == (line, column), str(error)
    for fragment in fragments:
        assert fragment in str(error), str(error)


def test_locations_of_keys_values_and_items():
    source = JsonSource(DOC, "p.json")
    assert source.locate(("stages", 1, "config", "command")) == (11, 20)
    assert source.locate(("stages", 1, "config", "command"), key=True) == (11, 9)
    assert source.locate(("stages", 1, "depends_on", 0)) == (8, 22)
    assert source.locate(("stages", 0, "config", "output_dir")) == (4, 85)
    assert source.locate(("stages", 1, "config", "nowhere", 3)) == (10, 17)    # the nearest parent
    assert source.locate(()) == (1, 1)
    escaped = JsonSource('{"a\\"b": {"c\\u00e9": [1, {"d": "x\\"y"}]}}')
    assert escaped.locate(("a\"b", "c\u00e9", 1, "d")) == (1, 32)
    assert escaped.locate(("a\"b", "c\u00e9", 1, "d"), key=True) == (1, 27)


def test_the_cli_runs_a_json_pipeline_and_still_resumes_from_a_checkpoint(ws):
    ws.write("p.json", json.dumps({"pipeline": {"name": "js"}, "stages": [
        {"id": "a", "type": "custom", "config": {"command": "echo hi > {output_dir}/hi.txt",
                                                 "output_dir": "out/a"}}]}, indent=2))
    assert ws.cli("validate", "p.json", check=True).stdout.startswith("ok: p.json: pipeline 'js' with 1 stage(s)")
    ws.cli("run", "p.json", "--no-progress", check=True)
    assert (ws.root / "out/a/hi.txt").read_text() == "hi\n"
    (state,) = ws.state_dirs()
    resumed = ws.cli("resume", str(state / "checkpoint.json"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    broken = ws.write("broken.json", '{"pipeline": {"name": "js"},\n "stages": [}\n')
    proc = ws.cli("validate", broken.name)
    assert proc.returncode == 2 and proc.stderr.startswith("error: broken.json:2:13: invalid JSON")
