"""Command templates of custom stages: one pass over the template as written, `{{`/`}}` literal
braces, every substituted value shell-quoted exactly once and never scanned again."""
from __future__ import annotations

import os

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator, PipelineState
from pipeline_tasks.errors import SpecError, StageConfigError
from pipeline_tasks.spec.loader import load_pipeline_dict
from pipeline_tasks.stages.custom import CustomExecutor

# the executed argv, NUL-separated (no argument can hold a NUL, so the split is exact)
DUMP = "printf '%s\\0'"
DUMP_YAML = DUMP.replace("\\", "\\\\")      # inside a double-quoted YAML string


def execute(ws, text: str):
    path = ws.write("p.yaml", text)
    pipeline = PipelineBuilder().load_from_yaml(path)
    return PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)


def argv(path) -> list[str]:
    data = path.read_bytes().decode()
    assert data.endswith("\0") or data == "", data
    return data.split("\0")[:-1]


def test_a_value_holding_a_placeholder_is_not_expanded_again(ws, monkeypatch):
    """`${LABEL}` and `{label}` both hold `{label};touch PWNED;#`: substituted once, quoted once."""
    evil = "{label};touch PWNED;#"
    monkeypatch.setenv("LABEL", evil)
    result = execute(ws, f"""
        pipeline: {{name: inject, version: "1"}}
        stages:
          - id: a
            type: custom
            config:
              command: "{DUMP_YAML} ${{LABEL}} {{label}} > {{output_dir}}/argv"
              params: {{label: "${{LABEL}}"}}
              output_dir: out/a
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert not (ws.root / "PWNED").exists()
    assert argv(ws.root / "out/a/argv") == [evil, evil]


def test_substituted_text_is_never_read_as_escaped_braces(ws, monkeypatch):
    """`{{`/`}}` inside a substituted value stay as they are: they are not turned into `{label}`."""
    monkeypatch.setenv("VALUE", "{{label}} }}{{ {{")
    result = execute(ws, f"""
        pipeline: {{name: braces, version: "1"}}
        vars: {{v: "{{{{output_dir}}}}"}}
        stages:
          - id: up
            type: custom
            config: {{command: "true", params: {{key: "{{{{label}}}}"}}}}
          - id: a
            type: custom
            depends_on: [up]
            config:
              command: "{DUMP_YAML} ${{VALUE}} {{vars.v}} {{up.params.key}} {{label}} > {{output_dir}}/argv"
              params: {{label: "${{VALUE}}"}}
              output_dir: out/a
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert argv(ws.root / "out/a/argv") == ["{{label}} }}{{ {{", "{output_dir}", "{label}", "{{label}} }}{{ {{"]


def test_doubled_braces_of_the_template_are_literal_braces(ws):
    result = execute(ws, f"""
        pipeline: {{name: literal, version: "1"}}
        vars: {{x: "X"}}
        stages:
          - id: a
            type: custom
            config:
              command: "{DUMP_YAML} {{{{label}}}} {{{{vars.x}}}} ${{{{HOME}}}} {{{{{{label}}}}}} > {{output_dir}}/argv"
              params: {{label: "a b"}}
              output_dir: out/a
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    # `${{HOME}}` is the shell's own `${HOME}`; `{{{label}}}`: a literal brace, the quoted value, a literal brace
    assert argv(ws.root / "out/a/argv") == ["{label}", "{vars.x}", os.environ.get("HOME", ""), "{a b}"]


def test_spec_substitution_is_one_pass_outside_commands_too(monkeypatch):
    """An environment value holding `{vars.x}` or `${OTHER}` is taken as text, not resolved."""
    monkeypatch.setenv("RAW", "{vars.x} ${OTHER} {{y}}")
    pipeline = load_pipeline_dict({
        "pipeline": {"name": "plain"}, "vars": {"x": "X", "lit": "{{vars.x}}"},
        "stages": [{"id": "a", "type": "custom", "config": {
            "callable": "os.path:join", "args": {"raw": "${RAW}", "whole": "{vars.lit}", "both": "${RAW}|{vars.x}"}}}]})
    assert pipeline.stages[0].config["args"] == {
        "raw": "{vars.x} ${OTHER} {{y}}", "whole": "{vars.x}", "both": "{vars.x} ${OTHER} {{y}}|X"}


def test_a_list_becomes_one_quoted_word_per_item(ws):
    ws.write("in dir/a b.txt", "1")
    ws.write("in dir/c'd.txt", "2")
    result = execute(ws, f"""
        pipeline: {{name: lists, version: "1"}}
        stages:
          - id: up
            type: custom
            config: {{command: "true", params: {{names: ["x y", "$(touch PWNED)", "{{{{z}}}}"]}}}}
          - id: a
            type: custom
            depends_on: [up]
            config:
              command: "{DUMP_YAML} {{inputs}} {{up.params.names}} > {{output_dir}}/argv"
              inputs: ["in dir/a b.txt", "in dir/c'd.txt"]
              output_dir: out/a
    """)
    assert result.status == PipelineState.COMPLETED, result.error_message
    assert not (ws.root / "PWNED").exists()
    assert argv(ws.root / "out/a/argv") == ["in dir/a b.txt", "in dir/c'd.txt", "x y", "$(touch PWNED)", "{z}"]


@pytest.mark.parametrize("where", ["params", "env", "vars", "upstream"])
def test_a_nul_character_in_a_substituted_value_is_refused(where):
    value = "a\0b"
    data = {"pipeline": {"name": "nul"}, "env": {}, "vars": {},
            "stages": [{"id": "up", "type": "custom", "config": {"command": "true", "params": {"v": "x"}}},
                       {"id": "a", "type": "custom", "depends_on": ["up"], "config": {"command": "echo {v}",
                                                                                     "params": {"v": "x"}}}]}
    if where == "params":
        data["stages"][1]["config"]["params"]["v"] = value
    elif where == "env":
        data["env"]["V"] = value
        data["stages"][1]["config"]["command"] = "echo ${V}"
    elif where == "vars":
        data["vars"]["v"] = value
        data["stages"][1]["config"]["command"] = "echo {vars.v}"
    else:
        data["stages"][0]["config"]["params"]["v"] = value
        data["stages"][1]["config"]["command"] = "echo {up.params.v}"
    with pytest.raises(SpecError) as info:
        load_pipeline_dict(data, check_inputs=False)
    assert "NUL" in info.value.message and info.value.stage == "a"


def test_a_nul_character_in_the_command_or_its_environment_is_refused():
    with pytest.raises(StageConfigError, match="NUL"):
        CustomExecutor("a", {"command": "echo a\0b"}).validate_config()
    with pytest.raises(StageConfigError, match="NUL"):
        CustomExecutor("a", {"command": "echo {v}", "params": {"v": ["ok", "a\0b"]}}).validate_config()
    with pytest.raises(StageConfigError, match="NUL") as info:
        CustomExecutor("a", {"command": "true", "env": {"K": "a\0b"}}).validate_config()
    assert info.value.key == "env.K"


def test_unknown_placeholder_is_reported_but_doubled_braces_are_not_placeholders():
    CustomExecutor("a", {"command": "echo {{nope}}"}).validate_config()
    with pytest.raises(StageConfigError, match=r"unknown placeholder '\{nope\}'"):
        CustomExecutor("a", {"command": "echo {{{nope}}}"}).validate_config()


def test_render_command_quotes_each_value_once():
    stage = CustomExecutor("a", {"command": "run {a} {b} {{a}}", "params": {"a": "it's", "b": ["x", "{a}"]}})
    assert stage.render_command() == "run 'it'\"'\"'s' x '{a}' {a}"


# -- property: the executed argv is exactly the intended values --------------------------------------

FRAGMENTS = ["'", '"', "\\", "`", "$", "$(touch PWNED)", "`touch PWNED`", "${X}", "${HOME}", "$HOME", "{x}", "{a}",
             "{vars.c}", "{up.params.d}", "{output_dir}", "{{", "}}", "{", "}", " ", "  ", "\t", "\n", ";", "&", "|",
             "*", "?", "~", "#", "!", "<", ">", "-n", "--", "%s", "\\0", "é", "\u2028", "\r"]
VALUE = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join),
                  st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12))


def literal(text: str) -> str:
    """`text` written in a pipeline file so that it resolves to itself."""
    return text.replace("{", "{{").replace("}", "}}")


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=VALUE, e=VALUE, c=VALUE, d=VALUE, p=VALUE, items=st.lists(VALUE, max_size=3))
@example(a="{a};touch PWNED;#", e="{{a}}", c="${X}", d="$(touch PWNED)", p="'\n'", items=["{", "}}"])
def test_property_the_executed_argv_equals_the_intended_values(tmp_path, a, e, c, d, p, items):
    os.environ["PT_PROCESS_VALUE"] = p
    out = tmp_path / "out"
    data = {
        "pipeline": {"name": "fuzz"},
        "env": {"E": literal(e)},
        "vars": {"c": literal(c)},
        "stages": [
            {"id": "up", "type": "custom", "config": {"command": "true", "params": {"d": literal(d)}}},
            {"id": "cmd", "type": "custom", "depends_on": ["up"], "config": {
                "command": f"{DUMP} {{a}} ${{E}} {{vars.c}} {{up.params.d}} ${{PT_PROCESS_VALUE}} {{items}} "
                           "{{lit}} > {output_dir}/argv",
                "params": {"a": literal(a), "items": [literal(i) for i in items]},
                "output_dir": str(out), "cwd": str(tmp_path)}}]}
    # through YAML text as a user would write it
    source = yaml.safe_load(yaml.safe_dump(data))
    try:
        stage = load_pipeline_dict(source, check_inputs=False).stage("cmd")
        CustomExecutor(stage.id, stage.config).execute({})
    finally:
        del os.environ["PT_PROCESS_VALUE"]
    assert argv(out / "argv") == [a, e, c, d, p, *items, "{lit}"]
    assert not (tmp_path / "PWNED").exists()


@settings(max_examples=50, deadline=None, database=None)
@given(clean=VALUE, where=st.sampled_from(["params", "env", "vars", "upstream", "list"]), cut=st.integers(0, 12))
def test_property_a_nul_anywhere_is_refused_before_anything_runs(clean, where, cut):
    value = clean[:cut] + "\0" + clean[cut:]
    command = {"params": "true {v}", "env": "true ${V}", "vars": "true {vars.v}", "upstream": "true {up.params.v}",
               "list": "true {items}"}[where]
    data = {"pipeline": {"name": "nul"}, "env": {"V": literal(value) if where == "env" else "x"},
            "vars": {"v": literal(value) if where == "vars" else "x"},
            "stages": [{"id": "up", "type": "custom", "config": {
                "command": "true", "params": {"v": literal(value) if where == "upstream" else "x"}}},
                {"id": "a", "type": "custom", "depends_on": ["up"], "config": {
                    "command": command, "params": {"v": literal(value) if where == "params" else "x",
                                                   "items": ["ok", literal(value)] if where == "list" else []}}}]}
    with pytest.raises(SpecError) as info:
        load_pipeline_dict(data, check_inputs=False)
    assert "NUL" in info.value.message
