"""docs/adding-a-stage.md: its example stage type and its test run as written, and the executor
module's docstring shows the same stage type."""
from __future__ import annotations

import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

import pytest

from pipeline_tasks import executor

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding-a-stage.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def checksums(monkeypatch) -> types.ModuleType:
    """The doc's stage type, importable as `checksums` (as its test imports it)."""
    module = types.ModuleType("checksums")
    exec(compile(python_blocks()[0], f"{DOC}:stage", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "checksums", module)
    return module


def test_the_docs_test_passes(checksums, tmp_path):
    namespace: dict = {}
    exec(compile(python_blocks()[1], f"{DOC}:test", "exec"), namespace)
    tests = {name: fn for name, fn in namespace.items() if name.startswith("test_")}
    assert len(tests) == 2
    for name, fn in tests.items():
        (tmp_path / name).mkdir()
        fn(tmp_path / name)


def test_the_docs_stage_is_a_stage_type(checksums, tmp_path, monkeypatch):
    from pipeline_tasks.errors import SpecError
    from pipeline_tasks.spec import registry
    from pipeline_tasks.spec.loader import load_pipeline_dict

    monkeypatch.setitem(registry._registered, "checksums", checksums.ChecksumStage)
    (tmp_path / "in").mkdir()
    data = {"pipeline": {"name": "sums"}, "stages": [
        {"id": "sums", "type": "checksums", "config": {"input_dir": str(tmp_path / "in"),
                                                       "output_dir": str(tmp_path / "out"), "algorithm": "md5"}}]}
    with pytest.raises(SpecError, match="algorithm"):
        load_pipeline_dict(data)
    data["stages"][0]["config"]["output_dir"] = str(tmp_path / "in")
    data["stages"][0]["config"]["algorithm"] = "sha256"
    with pytest.raises(SpecError, match="output_dir must not be input_dir"):
        load_pipeline_dict(data)


def test_the_executor_docstring_shows_the_same_stage_type():
    docstring = inspect.getdoc(executor)
    example = docstring[docstring.index("::\n\n") + 3:]
    assert textwrap.dedent(example).strip() == python_blocks()[0].strip()
