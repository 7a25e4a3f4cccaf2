"""Typed stage settings: every config value is read by a name the schema has, with its default,
read-only; a misspelt name is an error at once (it used to read as None)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline_tasks.errors import StageConfigError
from pipeline_tasks.executor import StageExecutor
from pipeline_tasks.settings import thaw
from pipeline_tasks.spec.registry import BUILTIN_STAGES, get_executor_class

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline_tasks"


class Demo(StageExecutor):
    type_name = "demo"
    config_schema = {
        "output_dir": {"type": "string", "required": True},
        "rate": {"type": "number", "default": 2},
        "count": {"type": "integer", "nullable": True, "default": None},
        "formats": {"type": "list", "schema": {"type": "string"}, "default": ["srt", "vtt"]},
        "names": {"type": "dict", "valuesrules": {"type": "string"}, "default": {}},
        "vad": {"type": "dict", "schema": {"enabled": {"type": "boolean", "default": False},
                                           "threshold": {"type": "number", "default": 0.5}}},
        "label": {"type": "string"},
        "max-len": {"type": "integer", "default": 3},
    }

    def execute(self, inputs):
        return self.result()


def test_values_defaults_and_types():
    s = Demo("d", {"output_dir": "out", "names": {"0": ["a", "b"]}, "vad": {"threshold": 1}}).settings
    assert s.output_dir == "out" and s.count is None and s.label is None
    assert s.rate == 2.0 and type(s.rate) is float               # a `number` is a float, also from YAML's 2
    assert s.formats == ("srt", "vtt")
    assert s.names["0"] == ("a", "b")
    assert s.vad.enabled is False and s.vad.threshold == 1.0     # nested schema: its own defaults
    assert Demo("d", {"output_dir": "out"}).settings.vad.threshold == 0.5    # also when the key is absent
    assert thaw(s.names) == {"0": ["a", "b"]}
    assert s.as_dict()["vad"] == {"enabled": False, "threshold": 1.0}


def test_a_misspelt_name_is_an_error_at_once():
    s = Demo("d", {"output_dir": "out"}).settings
    with pytest.raises(AttributeError, match="demo has no config key 'thresold'.*rate"):
        _ = s.thresold
    with pytest.raises(AttributeError, match="no config key 'treshold'"):
        _ = s.vad.treshold
    fe = get_executor_class("frame_extraction")("f", {"input_video": "v.mp4", "output_dir": "o"})
    with pytest.raises(AttributeError, match="frame_extraction has no config key 'scene_treshold'"):
        _ = fe.settings.scene_treshold


def test_settings_are_read_only():
    s = Demo("d", {"output_dir": "out"}).settings
    with pytest.raises(AttributeError, match="read-only"):
        s.rate = 3
    with pytest.raises(TypeError):
        s.names["x"] = "y"
    with pytest.raises(AttributeError, match="read-only"):
        del s.rate


def test_an_unknown_config_key_is_an_error():
    with pytest.raises(StageConfigError, match="unknown config key 'rat'") as info:
        _ = Demo("d", {"output_dir": "out", "rat": 1}).settings
    assert info.value.key == "rat"


def test_keys_that_are_not_names_stay_in_the_config_dict():
    stage = Demo("d", {"output_dir": "out"})
    assert stage.config["max-len"] == 3 and not hasattr(stage.settings, "max_len")


def test_a_schema_replaced_after_the_class_was_made():
    class Later(StageExecutor):
        def execute(self, inputs):
            return self.result()
    Later.config_schema = {"size": {"type": "integer", "default": 4}}
    assert Later("l", {}).settings.size == 4


def test_a_stage_type_without_schema_reads_what_its_config_holds():
    class Free(StageExecutor):
        def execute(self, inputs):
            return self.result()
    s = Free("f", {"anything": [1]}).settings
    assert s.anything == (1,)
    with pytest.raises(AttributeError, match="no key 'other'"):
        _ = s.other


@pytest.mark.parametrize("type_name", sorted(BUILTIN_STAGES))
def test_every_built_in_stage_type_has_settings_for_its_schema(type_name):
    try:
        cls = get_executor_class(type_name)
    except StageConfigError:            # its optional dependencies are not installed
        pytest.skip(f"{type_name} is not installed")
    assert set(cls.Settings._keys) == {k for k in cls.config_schema if k.isidentifier()}


def config_reads(path: Path) -> list[str]:
    """`self.config[...]`, `self.config.get(...)` and `self.cfg(...)` in a module: string-keyed reads."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Subscript):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target = node.func.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cfg":
            found.append(f"{path.name}:{node.lineno}")
        if (isinstance(target, ast.Attribute) and target.attr == "config" and isinstance(target.value, ast.Name)
                and target.value.id == "self"):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_built_in_stage_types_read_their_config_through_settings_only():
    modules = sorted((PACKAGE / "stages").glob("*.py")) + [PACKAGE / "report" / "stage.py"]
    reads = [hit for path in modules for hit in config_reads(path)]
    assert not reads, "string-keyed config reads (use self.settings.<key>): " + ", ".join(reads)
