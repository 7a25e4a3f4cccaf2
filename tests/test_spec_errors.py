"""Malformed pipelines: each error names the file, line and column, the stage and key, and the problem."""
from __future__ import annotations

import textwrap

import pytest

from pipeline_tasks import DagError, PipelineBuilder, SpecError

CASES = [
    # (name, yaml, expected line, expected fragments)
    ("bad yaml indentation", """
        pipeline:
          name: x
         version: 1
        stages: []
        """, 3, ["invalid YAML"]),
    ("unclosed quote", """
        pipeline: {name: "x}
        stages: []
        """, None, ["invalid YAML"]),
    ("empty file", "\n", None, ["the pipeline file is empty"]),
    ("top level is a list", "- a\n- b\n", 1, ["expected a mapping with 'pipeline:' and 'stages:'"]),
    ("missing pipeline", """
        stages:
          - {id: a, type: custom, config: {command: "true"}}
        """, None, ["missing required key 'pipeline'"]),
    ("missing stages", """
        pipeline: {name: x}
        """, None, ["missing required key 'stages'"]),
    ("unknown top-level key with suggestion", """
        pipeline: {name: x}
        stage:
          - {id: a, type: custom}
        """, 2, ["unknown key 'stage'", "did you mean 'stages'"]),
    ("stages not a list", """
        pipeline: {name: x}
        stages: {a: 1}
        """, 2, ["expected list"]),
    ("stage is a string", """
        pipeline: {name: x}
        stages:
          - just-a-name
        """, 3, ["stage #1", "expected a mapping"]),
    ("stage missing id", """
        pipeline: {name: x}
        stages:
          - type: custom
            config: {command: "true"}
        """, 3, ["missing required key 'id'"]),
    ("stage id with bad characters", """
        pipeline: {name: x}
        stages:
          - id: "bad=id"
            type: custom
        """, 3, ["'bad=id' does not match"]),
    ("reserved stage id", """
        pipeline: {name: x}
        stages:
          - id: list
            type: custom
            config: {command: "true"}
        """, 3, ["'list' is a reserved name"]),
    ("unknown stage key", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            dependson: [b]
            config: {command: "true"}
        """, 5, ["stage 'a'", "unknown key 'dependson'", "did you mean 'depends_on'"]),
    ("depends_on wrong type", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            depends_on: 5
            config: {command: "true"}
        """, 5, ["stage 'a'", "expected list, got integer 5"]),
    ("timeout negative", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            timeout: -1
            config: {command: "true"}
        """, 5, ["must be at least 0"]),
    ("retry unknown key", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            retry: {max_retry: 2}
            config: {command: "true"}
        """, 5, ["unknown key 'max_retry'", "did you mean 'max_retries'"]),
    ("unknown stage type", """
        pipeline: {name: x}
        stages:
          - id: a
            type: frobnicate
        """, 4, ["stage 'a'", "unknown stage type 'frobnicate'", "custom"]),
    ("duplicate ids", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config: {command: "true"}
          - id: a
            type: custom
            config: {command: "true"}
        """, 6, ["duplicate stage id 'a'"]),
    ("unknown dependency with suggestion", """
        pipeline: {name: x}
        stages:
          - id: extract
            type: custom
            config: {command: "true"}
          - id: b
            type: custom
            depends_on: [extrct]
            config: {command: "true"}
        """, 8, ["stage 'b'", "depends on unknown stage 'extrct'", "did you mean 'extract'"]),
    ("self dependency", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            depends_on: [a]
            config: {command: "true"}
        """, 5, ["depends on itself"]),
    ("cycle", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            depends_on: [c]
            config: {command: "true"}
          - id: b
            type: custom
            depends_on: [a]
            config: {command: "true"}
          - id: c
            type: custom
            depends_on: [b]
            config: {command: "true"}
        """, 5, ["dependency cycle: a -> c -> b -> a"]),
    ("unknown config key", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "true"
              outptu_dir: out
        """, 7, ["stage 'a', key 'outptu_dir'", "unknown key 'outptu_dir'", "did you mean 'output_dir'"]),
    ("wrong config type", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: 42
        """, 6, ["stage 'a', key 'command'", "expected string, got integer 42"]),
    ("both callable and command", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "true"
              callable: "os:getcwd"
        """, 7, ["stage 'a', key 'callable'", "'command' must not be present with 'callable'"]),
    ("neither callable nor command", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config: {output_dir: out}
        """, 5, ["needs either 'callable' or 'command'"]),
    ("callable module missing", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              callable: "no_such_module_xyz:run"
        """, 6, ["key 'callable'", "cannot find module 'no_such_module_xyz'"]),
    ("callable in a missing submodule", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              callable: "json.no_such_submodule:run"
        """, 6, ["key 'callable'", "cannot find module 'json.no_such_submodule'"]),
    ("unknown placeholder in command", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "echo {nothing}"
        """, 6, ["unknown placeholder '{nothing}'"]),
    ("reference to unknown stage", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "echo {ghost.output_dir}"
        """, 6, ["reference '{ghost.output_dir}' names an unknown stage 'ghost'"]),
    ("reference to a stage that is not upstream", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config: {command: "true", output_dir: out/a}
          - id: b
            type: custom
            config:
              command: "ls {a.output_dir}"
        """, 9, ["stage 'b'", "names stage 'a', which is not upstream", "add it to depends_on"]),
    ("reference to a missing key", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config: {command: "true", output_dir: out/a}
          - id: b
            type: custom
            depends_on: [a]
            config:
              command: "ls {a.output}"
        """, 10, ["stage 'a' config has no key 'output'", "it has: command, output_dir"]),
    ("unset environment variable", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "echo ${PIPELINE_TASKS_SURELY_UNSET_VAR}"
        """, 6, ["environment variable 'PIPELINE_TASKS_SURELY_UNSET_VAR' is not set"]),
    ("missing input file", """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              command: "cat {inputs}"
              inputs: [does/not/exist.txt]
        """, 7, ["input file 'does/not/exist.txt' does not exist"]),
    ("pipeline name empty", """
        pipeline: {name: ""}
        stages:
          - {id: a, type: custom, config: {command: "true"}}
        """, 1, ["must not be empty"]),
    ("max_parallel_stages zero", """
        pipeline: {name: x, max_parallel_stages: 0}
        stages:
          - {id: a, type: custom, config: {command: "true"}}
        """, 1, ["must be at least 1"]),
]


@pytest.mark.parametrize("name,text,line,fragments", CASES, ids=[c[0] for c in CASES])
def test_malformed_pipeline_message(tmp_path, name, text, line, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(SpecError) as info:
        PipelineBuilder().load_from_yaml(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    if line is not None:
        assert info.value.line == line, message
        assert f"{path}:{line}:" in message
        assert info.value.column is not None
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message


def test_cycle_is_a_dag_error(tmp_path):
    path = tmp_path / "cycle.yaml"
    path.write_text("pipeline: {name: x}\nstages:\n"
                    "  - {id: a, type: custom, depends_on: [b], config: {command: 'true'}}\n"
                    "  - {id: b, type: custom, depends_on: [a], config: {command: 'true'}}\n")
    with pytest.raises(DagError, match="dependency cycle: a -> b -> a"):
        PipelineBuilder().load_from_yaml(path)


def test_dict_source_errors_name_the_place(tmp_path):
    with pytest.raises(SpecError, match="stage 'a', key 'command': expected string"):
        PipelineBuilder().load_from_dict({"pipeline": {"name": "x"},
                                          "stages": [{"id": "a", "type": "custom", "config": {"command": 1}}]})


def test_cli_prints_one_line_and_exits_nonzero(ws):
    ws.write("bad.yaml", "pipeline: {name: x}\nstages:\n  - {id: a, type: nope}\n")
    proc = ws.cli("validate", "bad.yaml")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bad.yaml:3:") and "unknown stage type 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    missing = ws.cli("run", "nowhere.yaml")
    assert missing.returncode != 0 and "pipeline file not found" in missing.stderr


def test_references_env_vars_and_defaults_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ROOT", "/data/root")
    path = tmp_path / "ok.yaml"
    path.write_text(textwrap.dedent("""
        pipeline: {name: refs, version: 2}
        env: {LANG_CODE: "fr"}
        vars: {size: 512}
        stages:
          - id: a
            type: custom
            config:
              command: "true"
              output_dir: "${PT_ROOT}/a"
              params: {n: "{vars.size}", missing: "${NOT_SET_ANYWHERE:-fallback}", lang: "${LANG_CODE}"}
          - id: b
            type: custom
            depends_on: [a]
            config:
              callable: "os.path:join"
              args: {size: "{a.params.n}", where: "{a.output_dir}/frames", name: "{pipeline.name}", lit: "{{x.y}}"}
    """))
    pipeline = PipelineBuilder().load_from_yaml(path)
    a, b = pipeline.stages
    assert a.config["output_dir"] == "/data/root/a"
    assert a.config["params"] == {"n": 512, "missing": "fallback", "lang": "fr"}
    assert b.config["args"] == {"size": 512, "where": "/data/root/a/frames", "name": "refs", "lit": "{x.y}"}
    assert pipeline.version == "2" and a.line == 6 and b.line == 12
