"""Pipeline files written to hurt: each fails with a one-line SpecError naming the place (never a
hang, a RecursionError, a silent choice, a printed secret or code run by `validate`)."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from pipeline_tasks import PipelineBuilder, SpecError
from pipeline_tasks.spec.loader import load_pipeline

STAGE = '{id: a, type: custom, config: {command: "true"}}'


def write(tmp_path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n") if name.endswith(".yaml") else text)
    return path


def spec_error(path, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_pipeline(path, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return info.value


# -- alias bombs: a few hundred bytes that expand to millions of nodes ---------------------------------
LAUGHS = "\n".join(
    [f'a: &a [{", ".join(["lol"] * 9)}]']
    + [f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi")])


def test_billion_laughs_fails_at_once(tmp_path):
    bomb = LAUGHS.replace("\n", "\n  ")
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\nbomb:\n  {bomb}\n")
    assert path.stat().st_size < 800
    error = spec_error(path)
    assert "aliases expand this document to" in str(error) and "387,420,489" not in str(error)


def test_billion_laughs_through_the_cli(ws):
    ws.write("bomb.yaml", f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\n{LAUGHS}\n")
    proc = ws.cli("validate", "bomb.yaml")
    assert proc.returncode == 2 and "aliases expand this document" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bomb_of_merge_keys_and_mappings(tmp_path):
    lines = ["l0: &l0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} {{{', '.join(f'k{j}: *l{i - 1}' for j in range(8))}}}")
    lines.append("stage_defaults: {<<: [*l8, *l7]}")
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\n" + "\n".join(lines) + "\n")
    assert "aliases expand this document" in str(spec_error(path))


def test_an_alias_loop_is_refused(tmp_path):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\nloop: &loop [1, *loop]\n")
    error = spec_error(path)
    assert "alias refers to a collection that contains it" in str(error) and error.line == 4


def test_anchors_used_as_intended_still_load(tmp_path):
    stages = "\n".join(f"  - {{id: s{i}, type: custom, config: *common}}" for i in range(300))
    path = write(tmp_path, "pipeline: {name: x}\nstages:\n  - {id: base, type: custom, config: &common "
                           f"{{command: 'true', params: {{n: 1}}}}}}\n{stages}\n")
    pipeline = load_pipeline(path)
    assert len(pipeline.stages) == 301 and pipeline.stages[-1].config["params"] == {"n": 1}


# -- nesting: deep documents must not reach Python's recursion limit ------------------------------------
def nested_block(levels: int) -> str:
    return "".join("  " * (i + 4) + f"k{i}:\n" for i in range(levels)) + "  " * (levels + 4) + "leaf"


def test_400_levels_of_block_nesting(tmp_path):
    path = write(tmp_path, "pipeline: {name: x}\nstages:\n  - id: a\n    type: custom\n    config:\n"
                           "      command: 'true'\n      args:\n" + nested_block(400)[4:] + "\n")
    error = spec_error(path)
    assert "nest more than 64 levels deep" in str(error) and error.line is not None


@pytest.mark.parametrize("levels", [400, 5000, 100_000])
def test_deep_flow_nesting(tmp_path, levels):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\nvars: {{v: {'[' * levels}{']' * levels}}}\n")
    message = str(spec_error(path))
    assert "nest more than 64 levels deep" in message or "maximum nesting depth" in message


def test_depth_reached_through_aliases(tmp_path):
    """A shallow text whose aliases stack 400 sequences inside each other."""
    lines = ["d0: &d0 [x]"] + [f"d{i}: &d{i} [*d{i - 1}]" for i in range(1, 400)]
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\n" + "\n".join(lines) + "\n")
    assert "nest more than 64 levels deep" in str(spec_error(path))


@pytest.mark.parametrize("levels", [400, 100_000])
def test_deep_json(tmp_path, levels):
    doc = '{"pipeline": {"name": "x"}, "stages": [{"id": "a", "type": "custom", "config": {"command": "true", ' \
          f'"args": {{"deep": {"[" * levels}{"]" * levels}}}}}}}]}}'
    assert "nest more than 64 levels deep" in str(spec_error(write(tmp_path, doc, "p.json")))


@pytest.mark.parametrize("name", ["p.yaml", "p.json"])
def test_the_depth_limit_is_64_levels(tmp_path, name):
    """document, stages, stage, config, args: 5 levels; the value inside adds the rest."""
    def doc(levels: int) -> str:
        value = "[" * (levels - 5) + "1" + "]" * (levels - 5)
        return ('{"pipeline": {"name": "x"}, "stages": [{"id": "a", "type": "custom", '
                f'"config": {{"command": "true", "args": {{"v": {value}}}}}}}]}}')
    path = tmp_path / name
    path.write_text(doc(64))
    assert load_pipeline(path).stages[0].config["args"]["v"]
    path.write_text(doc(65))
    assert "nest more than 64 levels deep" in str(spec_error(path))


def test_nesting_within_the_limit_loads(tmp_path):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - id: a\n    type: custom\n    config:\n"
                           f"      command: 'true'\n      args: {{v: {'[' * 50}1{']' * 50}}}\n")
    value = load_pipeline(path).stages[0].config["args"]["v"]
    for _ in range(49):
        (value,) = value
    assert value == [1]


# -- duplicate keys: an error naming both lines, never "last one wins" -----------------------------------
@pytest.mark.parametrize("text,key,first,again", [
    ("pipeline: {name: x}\nstages: []\nstages:\n  - " + STAGE + "\n", "stages", 2, 3),
    ("pipeline: {name: x}\nstages:\n  - id: a\n    type: custom\n    config:\n      command: 'true'\n"
     "      output_dir: out/a\n      output_dir: /\n", "output_dir", 7, 8),
    ("pipeline: {name: x, name: y}\nstages:\n  - " + STAGE + "\n", "name", 1, 1),
    ("pipeline: {name: x}\nvars:\n  yes: 1\n  true: 2\nstages:\n  - " + STAGE + "\n", "true", 3, 4),   # both True
    ("pipeline: {name: x}\nvars:\n  1: a\n  0x1: b\nstages:\n  - " + STAGE + "\n", "0x1", 3, 4),       # both 1
])
def test_duplicate_keys_name_both_lines(tmp_path, text, key, first, again):
    error = spec_error(write(tmp_path, text))
    assert f"key '{key}' appears twice in one mapping: first on line {first}, again on line {again}" in str(error)
    assert error.line == again


def test_duplicate_keys_in_json(tmp_path):
    doc = '{\n  "pipeline": {"name": "x"},\n  "stages": [{"id": "a", "type": "custom",\n' \
          '    "config": {"command": "true",\n               "command": "rm -rf out"}}]\n}\n'
    error = spec_error(write(tmp_path, doc, "p.json"))
    assert "key 'command' appears twice in one object: first on line 4, again on line 5" in str(error)
    assert (error.line, error.column) == (5, 16)


def test_keys_that_differ_are_not_duplicates(tmp_path):
    path = write(tmp_path, """
        pipeline: {name: x}
        stages:
          - id: a
            type: custom
            config:
              <<: {command: "true", output_dir: out/base}
              output_dir: out/a          # a merge is meant to be overridden
              args: {1: int, "1": str}
    """)
    config = load_pipeline(path).stages[0].config
    assert config["output_dir"] == "out/a" and config["args"] == {1: "int", "1": "str"}


# -- numbers: NaN, infinities and booleans are no numbers ------------------------------------------------
@pytest.mark.parametrize("field,value,fragment", [
    ("timeout: .nan", "timeout", "expected a finite number, got nan"),
    ("timeout: .inf", "timeout", "expected a finite number, got inf"),
    ("timeout: -.inf", "timeout", "expected a finite number, got -inf"),
    ("timeout: true", "timeout", "expected number, got boolean True"),
    ("retry: {max_retries: true}", "max_retries", "expected integer, got boolean True"),
    ("retry: {retry_delay: .inf}", "retry_delay", "expected a finite number, got inf"),
    ("retry: {backoff_multiplier: .nan}", "backoff_multiplier", "expected a finite number, got nan"),
    ("resources: {gpu: .nan}", "gpu", "expected a finite number, got nan"),
])
def test_stage_numbers(tmp_path, field, value, fragment):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - id: a\n    type: custom\n    {field}\n"
                           f"    config: {{command: 'true'}}\n")
    error = spec_error(path)
    assert fragment in str(error) and error.line == 5 and error.stage == "a"


@pytest.mark.parametrize("text,fragment", [
    ("pipeline: {name: x, max_parallel_stages: true}", "expected integer, got boolean True"),
    ("pipeline: {name: x}\nresources: {gpu: .inf}", "expected a finite number, got inf"),
])
def test_pipeline_numbers(tmp_path, text, fragment):
    assert fragment in str(spec_error(write(tmp_path, f"{text}\nstages:\n  - {STAGE}\n")))


def test_stage_config_numbers(tmp_path):
    """A stage type's own schema gets the same rule (synthetic_video: integer num_scenes, number duration)."""
    for field, fragment in [("num_scenes: true", "expected integer, got boolean True"),
                            ("duration: .nan", "expected a finite number, got nan")]:
        path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - id: v\n    type: synthetic_video\n"
                               f"    config:\n      output_dir: out\n      {field}\n")
        error = spec_error(path)
        assert fragment in str(error) and error.line == 7, str(error)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_numbers(tmp_path, constant):
    doc = ('{"pipeline": {"name": "x"},\n "stages": [{"id": "a", "type": "custom",\n'
           f'  "timeout": {constant}, "config": {{"command": "true"}}}}]}}')
    error = spec_error(write(tmp_path, doc, "p.json"))
    assert "expected a finite number" in str(error) and (error.line, error.column) == (3, 14)


# -- names that become file names ------------------------------------------------------------------------
def test_stage_id_length(tmp_path):
    long_id = "s" * 300
    error = spec_error(write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {{id: {long_id}, type: custom}}\n"))
    assert "must be at most 64 characters long, got 300" in str(error) and error.line == 3
    ok_id = "s" * 64
    pipeline = load_pipeline(write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {{id: {ok_id}, type: custom, "
                                             f"config: {{command: 'true'}}}}\n"))
    assert pipeline.stages[0].id == ok_id


@pytest.mark.parametrize("stage_id", ["../up", "a/b", "a b", ".hidden", "-flag", "é", "a\x00b", "con:1"])
def test_stage_ids_that_are_no_file_names(tmp_path, stage_id):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"pipeline": {"name": "x"}, "stages": [
        {"id": stage_id, "type": "custom", "config": {"command": "true"}}]}))
    assert "does not match the pattern" in str(spec_error(path))


def test_pipeline_name_length(tmp_path):
    error = spec_error(write(tmp_path, f"pipeline: {{name: {'n' * 300}}}\nstages:\n  - {STAGE}\n"))
    assert "must be at most 100 characters long, got 300" in str(error)


# -- secrets never appear in a validation error ----------------------------------------------------------
SECRET = "hunter2-s3cr3t"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("PT_TOKEN", SECRET)
    monkeypatch.setenv("PT_ODD_TOKEN", "it's a \\ \"quoted\"\nsecret")


def assert_masked(error: SpecError, *secrets: str) -> str:
    message = str(error)
    for secret in secrets or (SECRET,):
        for form in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], secret[:8]):
            assert form not in message, message
    assert "***" in message, message
    return message


@pytest.mark.parametrize("config,fragment", [
    ('{callable: "${secret:PT_TOKEN}"}', "'***' does not match the pattern"),                  # regex
    ('{command: "true", env: {K: ["${secret:PT_TOKEN}"]}}', "got list ['***']"),             # type
    ('{command: "true", inputs: ["/data/${secret:PT_TOKEN}.mp4"]}', "input file '/data/***.mp4' does not exist"),
])
def test_secret_in_custom_stage_errors(tmp_path, secret_env, config, fragment):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {{id: a, type: custom, config: {config}}}\n")
    error = spec_error(path)
    assert fragment in assert_masked(error)


@pytest.mark.parametrize("field,fragment", [
    ('mode: "${secret:PT_TOKEN}"', "got '***'"),                                               # allowed
    ('input_video: "/data/${secret:PT_TOKEN}.mp4"', "input file '/data/***.mp4' does not exist"),
    ('interval: "${secret:PT_TOKEN}"', "got string '***'"),                                    # type
    # a long value is cut for the message: the cut must not keep half a secret
    ('interval: "' + "x" * 55 + '${secret:PT_TOKEN}"', "got string 'xxxxx"),
])
def test_secret_in_stage_type_errors(tmp_path, secret_env, field, fragment):
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - id: f\n    type: frame_extraction\n    config:\n"
                           f"      input_video: /dev/null\n      output_dir: out\n      {field}\n")
    path.write_text(path.read_text().replace("      input_video: /dev/null\n", "", 1)
                    if field.startswith("input_video") else path.read_text())
    assert fragment in assert_masked(spec_error(path))


def test_secret_with_quotes_backslash_and_newline(tmp_path, secret_env):
    odd = os.environ["PT_ODD_TOKEN"]
    path = write(tmp_path, 'pipeline: {name: x}\nstages:\n  - {id: a, type: custom, config: '
                           '{callable: "${secret:PT_ODD_TOKEN}"}}\n')
    assert_masked(spec_error(path), odd)
    path.write_text('pipeline: {name: x}\nstages:\n  - {id: a, type: custom, config: {command: "cat {f}", '
                    'params: {f: "${secret:PT_ODD_TOKEN}"}, inputs: ["${secret:PT_ODD_TOKEN}"]}}\n')
    assert_masked(spec_error(path), odd)


def test_secret_through_the_env_block_and_a_reference(tmp_path, secret_env):
    path = write(tmp_path, """
        pipeline: {name: x}
        env: {TOKEN: "${secret:PT_TOKEN}"}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: "out/${TOKEN}"}}
          - id: b
            type: custom
            depends_on: [a]
            config: {command: "true", inputs: ["{a.output_dir}/missing.txt", "/nowhere/${TOKEN}"]}
    """)
    assert "input file '/nowhere/***' does not exist" in assert_masked(spec_error(path))


def test_secret_not_printed_by_the_cli(ws, monkeypatch):
    monkeypatch.setenv("PT_TOKEN", SECRET)
    ws.write("p.yaml", 'pipeline: {name: x}\nstages:\n  - {id: a, type: custom, config: '
                       '{command: "true", inputs: ["/data/${secret:PT_TOKEN}.mp4"]}}\n')
    proc = ws.cli("validate", "p.yaml")
    assert proc.returncode == 2 and "/data/***.mp4" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


# -- validating runs none of the code a pipeline names ---------------------------------------------------
SIDE_EFFECT = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\n\ndef run(output_dir):\n" \
              "    pathlib.Path(output_dir, 'ran.txt').write_text('ran')\n"


@pytest.fixture
def code_pipeline(ws):
    ws.write("loud_module.py", SIDE_EFFECT.format(marker="imported-module.txt"))
    (ws.root / "loudpkg" / "inner").mkdir(parents=True)
    (ws.root / "loudpkg" / "__init__.py").write_text(SIDE_EFFECT.format(marker="imported-package.txt"))
    (ws.root / "loudpkg" / "inner" / "__init__.py").write_text("")
    (ws.root / "loudpkg" / "inner" / "mod.py").write_text(SIDE_EFFECT.format(marker="imported-submodule.txt"))
    ws.write("p.yaml", """
        pipeline: {name: code}
        stages:
          - {id: a, type: custom, config: {callable: "loud_module:run", output_dir: out/a}}
          - {id: b, type: custom, config: {callable: "loudpkg.inner.mod:run", output_dir: out/b}}
    """)
    return ws


def markers(ws) -> list[str]:
    return sorted(p.name for p in ws.root.glob("imported-*.txt"))


def test_validate_and_graph_import_nothing(code_pipeline, monkeypatch):
    ws = code_pipeline
    env_path = os.pathsep.join([str(ws.root), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", env_path)
    assert ws.cli("validate", "p.yaml").returncode == 0
    assert ws.cli("graph", "p.yaml").returncode == 0
    assert markers(ws) == []
    ws.cli("run", "p.yaml", "--no-progress", check=True)          # running does import and call them
    assert markers(ws) == ["imported-module.txt", "imported-package.txt", "imported-submodule.txt"]
    assert (ws.root / "out/a/ran.txt").read_text() == "ran" and (ws.root / "out/b/ran.txt").exists()


def test_a_missing_attribute_is_found_when_the_stage_runs(code_pipeline, monkeypatch):
    ws = code_pipeline
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ws.root), os.environ.get("PYTHONPATH", "")]))
    ws.write("p.yaml", 'pipeline: {name: code}\nstages:\n  - {id: a, type: custom, config: '
                       '{callable: "loud_module:no_such_function"}}\n')
    assert ws.cli("validate", "p.yaml").returncode == 0 and markers(ws) == []
    proc = ws.cli("run", "p.yaml", "--no-progress")
    assert proc.returncode == 1 and "module 'loud_module' has no attribute 'no_such_function'" in proc.stderr


def test_python_tags_are_not_constructed(tmp_path):
    marker = tmp_path / "tag-ran.txt"
    path = write(tmp_path, f"pipeline: {{name: x}}\nstages:\n  - {STAGE}\n"
                           f"vars: {{v: !!python/object/apply:os.system ['touch {marker}']}}\n")
    error = spec_error(path)
    assert "could not determine a constructor" in str(error) and error.line == 4 and not marker.exists()


# -- files that are no pipeline files --------------------------------------------------------------------
def test_a_fifo_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="is not a regular file"):
        load_pipeline(fifo)          # reading it would wait for a writer forever


def test_binary_garbage(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpecError, match="not a UTF-8 text file"):
        load_pipeline(path)
    path.write_text("pipeline: {name: x}\nstages: [{id: a\x00b, type: custom}]\n")
    error = spec_error(path)
    assert "invalid YAML: unacceptable character #x0000: control characters are not allowed" in str(error)
    assert (error.line, error.column) == (2, 16)


def test_dict_api_gets_the_same_number_rules():
    with pytest.raises(SpecError, match="expected a finite number, got nan"):
        PipelineBuilder().load_from_dict({"pipeline": {"name": "x"}, "stages": [
            {"id": "a", "type": "custom", "timeout": float("nan"), "config": {"command": "true"}}]})


def test_dict_api_refuses_deep_nesting():
    deep: list = []
    for _ in range(400):
        deep = [deep]
    with pytest.raises(SpecError, match="nest more than 64 levels deep"):
        PipelineBuilder().load_from_dict({"pipeline": {"name": "x"}, "stages": [
            {"id": "a", "type": "custom", "config": {"command": "true", "args": {"v": deep}}}]})
