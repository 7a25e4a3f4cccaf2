"""The spec cache serves a validated pipeline only while everything it was built from is unchanged."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from pipeline_tasks import SpecError, register_stage_executor
from pipeline_tasks.spec import cache, loader, registry

STAGE_MODULE = '''
from pipeline_tasks.executor import StageExecutor


class SizedStage(StageExecutor):
    version = "1"
    config_schema = {{"size": {{"type": "integer", "default": {size}}}, "output_dir": {{"type": "string"}}}}

    def execute(self, inputs):
        return self.result()
'''


@pytest.fixture
def built(monkeypatch):
    """Counts the pipelines actually parsed and validated (a cache hit builds none)."""
    calls = []
    real = loader.build_pipeline

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(loader, "build_pipeline", counting)
    return calls


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_a_second_load_is_served_from_the_cache(tmp_path, built, spec_cache_dir):
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: out}}
    """)
    first = loader.load_pipeline(path)
    second = loader.load_pipeline(path)
    assert len(built) == 1 and second.stages[0].config == first.stages[0].config
    assert [p.name for p in spec_cache_dir.iterdir()] == [cache.key(loader.PipelineSource.from_file(path),
                                                                    True).path.name]
    path.write_text(path.read_text().replace("out}", "out2}"))
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "out2"
    assert len(built) == 2 and len(list(spec_cache_dir.iterdir())) == 1      # one entry per file, replaced


def test_a_schema_default_changed_without_a_version_bump_is_seen(tmp_path, monkeypatch, built):
    """Editing a stage type's default (same `version`) must not serve the old default."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))     # registrations end with the test
    monkeypatch.syspath_prepend(str(tmp_path))
    module_file = tmp_path / "sized_stage_mod.py"
    module_file.write_text(STAGE_MODULE.format(size=1))
    module = importlib.import_module("sized_stage_mod")
    monkeypatch.setitem(sys.modules, "sized_stage_mod", module)
    register_stage_executor("sized", module.SizedStage)
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: sized, config: {output_dir: out}}
    """)
    assert loader.load_pipeline(path).stages[0].config["size"] == 1
    assert loader.load_pipeline(path).stages[0].config["size"] == 1 and len(built) == 1

    module_file.write_text(STAGE_MODULE.format(size=2))
    importlib.invalidate_caches()
    module = importlib.reload(module)
    register_stage_executor("sized", module.SizedStage)
    assert module.SizedStage.version == "1"
    assert loader.load_pipeline(path).stages[0].config["size"] == 2
    assert len(built) == 2

    # the schema alone (a class built at run time, no source file to compare) counts too
    class Changed(module.SizedStage):
        config_schema = {"size": {"type": "integer", "default": 3}, "output_dir": {"type": "string"}}
    register_stage_executor("sized", Changed)
    assert loader.load_pipeline(path).stages[0].config["size"] == 3


def test_an_environment_variable_change_is_seen(tmp_path, monkeypatch, built):
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: "${PT_CACHE_OUT:-fallback}"}}
    """)
    monkeypatch.delenv("PT_CACHE_OUT", raising=False)
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "fallback"
    monkeypatch.setenv("PT_CACHE_OUT", "one")
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "one"
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "one"
    monkeypatch.setenv("PT_CACHE_OUT", "two")
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "two"
    monkeypatch.delenv("PT_CACHE_OUT")
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "fallback"
    assert len(built) == 4


def test_an_input_file_that_appears_or_disappears_is_seen(tmp_path, built):
    data = tmp_path / "list.txt"
    path = write(tmp_path / "p.yaml", f"""
        pipeline: {{name: c}}
        stages:
          - {{id: a, type: custom, config: {{command: "true", inputs: ["{data}"]}}}}
    """)
    with pytest.raises(SpecError, match="does not exist"):
        loader.load_pipeline(path)
    data.write_text("x\n")                  # appears
    assert loader.load_pipeline(path).input_files == [str(data)]
    loader.load_pipeline(path)
    assert len(built) == 2
    data.unlink()                           # disappears: not served from the cache
    with pytest.raises(SpecError, match="does not exist"):
        loader.load_pipeline(path)
    assert len(built) == 3
    # without the input check the file's existence is no part of the result
    assert loader.load_pipeline(path, check_inputs=False).stages[0].config["inputs"] == [str(data)]


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_cache_file_is_a_miss(tmp_path, built, spec_cache_dir, damage):
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: custom, config: {command: "true", output_dir: out}}
    """)
    loader.load_pipeline(path)
    (entry,) = spec_cache_dir.iterdir()
    whole = entry.read_bytes()
    # empty, not a pickle, or the right key followed by a torn pickle
    entry.write_bytes(damage if damage is not None else whole[:len(whole) // 2])
    assert loader.load_pipeline(path).stages[0].config["output_dir"] == "out"
    assert len(built) == 2
    assert entry.read_bytes() == whole      # rewritten whole ...
    loader.load_pipeline(path)
    assert len(built) == 2                  # ... and served again


def test_a_pipeline_with_secrets_is_never_cached(tmp_path, monkeypatch, spec_cache_dir):
    monkeypatch.setenv("PT_CACHE_TOKEN", "s3cr3t-value")
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: custom, config: {command: "echo ${secret:PT_CACHE_TOKEN}"}}
    """)
    loader.load_pipeline(path)
    assert list(spec_cache_dir.iterdir()) == []


def test_cache_location_and_switch(tmp_path, monkeypatch, built):
    path = write(tmp_path / "p.yaml", """
        pipeline: {name: c}
        stages:
          - {id: a, type: custom, config: {command: "true"}}
    """)
    monkeypatch.delenv("PIPELINE_TASKS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    loader.load_pipeline(path)
    assert len(list((tmp_path / "xdg" / "pipeline_tasks").glob("*.pickle"))) == 1
    monkeypatch.setenv("PIPELINE_TASKS_NO_CACHE", "1")
    loader.load_pipeline(path)
    loader.load_pipeline(path)
    assert len(built) == 3


def test_each_checkout_has_its_own_entries(tmp_path, monkeypatch):
    """The same pipeline file validated by two checkouts of the package: two entries, never shared."""
    path = write(tmp_path / "p.yaml", "pipeline: {name: c}\nstages: [{id: a, type: custom}]\n")
    source = loader.PipelineSource.from_file(path)
    here = cache.key(source, True)
    monkeypatch.setattr(cache, "_PACKAGE_DIR", tmp_path / "other-checkout" / "pipeline_tasks")
    there = cache.key(source, True)
    assert here.slot != there.slot and here.digest != there.digest


def test_old_entries_are_pruned(tmp_path, monkeypatch, spec_cache_dir):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    for i in range(5):
        path = write(tmp_path / f"p{i}.yaml", "pipeline: {name: c}\nstages: [{id: a, type: custom, "
                                             "config: {command: 'true'}}]\n")
        loader.load_pipeline(path)
    assert len(list(spec_cache_dir.glob("*.pickle"))) == 3
