"""A cache of validated pipelines, so a no-op rerun or `status` of a 10,000-stage pipeline does not
parse and validate its file again.

An entry is served only when everything the validated result depended on is unchanged:
- before reading it (the key): the file's absolute path and text, the check_inputs flag, the
  package's version and location (each checkout has its own entries), the spec code (size and
  mtime of its files) and the shape of the model classes;
- after reading it: every environment variable the spec read, the existence of every input file it
  checked, the files each `foreach` glob matched, and for every stage type the pipeline uses, its
  class, `version`, a digest of its `config_schema` (defaults included) and a digest of the source
  file that defines it.

Where: $PIPELINE_TASKS_CACHE, else $XDG_CACHE_HOME/pipeline_tasks (~/.cache/pipeline_tasks), one
file per pipeline file, replaced when it changes (at most `MAX_ENTRIES` files; delete freely).
Not in the project's folder: an entry is a pickle, and reading a pickle runs code, so it is read
only from a folder that the user alone writes, never from one that came with a checkout or an
archive. `PIPELINE_TASKS_NO_CACHE=1` turns the cache off. A pipeline that leaves a stage out
(`enabled`) is not cached: the model an `enabled: auto` stage waits for may appear at any time.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from .. import atomic
from ..models import Pipeline, PipelineStage
from .foreach import match_glob
from .registry import get_executor_class
from .source import PipelineSource

FORMAT = 2
MAX_ENTRIES = 256
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_SPEC_FILES = ("spec/loader.py", "spec/source.py", "spec/schema_check.py", "spec/dag.py", "spec/registry.py",
               "spec/cache.py", "spec/foreach.py", "executor.py", "models.py")


def cache_dir() -> Path:
    if os.environ.get("PIPELINE_TASKS_CACHE"):
        return Path(os.environ["PIPELINE_TASKS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline_tasks"


class CacheKey:
    """Where a pipeline file's entry lives (`slot`) and what it must have been built from (`digest`)."""

    def __init__(self, slot: str, digest: str):
        self.slot = slot
        self.digest = digest

    @property
    def path(self) -> Path:
        return cache_dir() / f"{self.slot}.pickle"


def key(source: PipelineSource, check_inputs: bool) -> CacheKey | None:
    if os.environ.get("PIPELINE_TASKS_NO_CACHE") == "1":
        return None
    from ..version import __version__
    place = f"{FORMAT}|{_PACKAGE_DIR}|{os.path.abspath(source.path)}|{check_inputs}"
    # the dataclasses' shape too: a cache written by a different model layout is never unpickled
    shape = ",".join(list(Pipeline.__dataclass_fields__) + list(PipelineStage.__dataclass_fields__))
    h = hashlib.sha1(f"{place}|{__version__}|{shape}|{_spec_code_stamp()}|".encode())
    h.update(source.text.encode("utf-8"))
    return CacheKey(hashlib.sha1(place.encode()).hexdigest()[:24], h.hexdigest())


def _spec_code_stamp() -> str:
    stamps = []
    for name in _SPEC_FILES:
        try:
            st = os.stat(_PACKAGE_DIR / name)
            stamps.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append("-")
    return ",".join(stamps)


def _schema_digest(schema: Any) -> str:
    def named(value: Any) -> Any:
        if isinstance(value, (set, frozenset)):
            return sorted(map(repr, value))
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    text = json.dumps(schema, sort_keys=True, default=named)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _source_digest(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    try:
        with open(module.__file__, "rb") as fh:
            return hashlib.sha1(fh.read()).hexdigest()[:16]
    except (AttributeError, TypeError, OSError):
        return "-"          # a class made at run time: its schema digest still counts


def _type_signature(types: set[str]) -> dict[str, str]:
    out = {}
    for name in sorted(types):
        cls = get_executor_class(name)
        out[name] = (f"{cls.__module__}.{cls.__qualname__}:{cls.version}:{_schema_digest(cls.config_schema)}:"
                     f"{_source_digest(cls)}")
    return out


def load(cache_key: CacheKey) -> Pipeline | None:
    try:
        with open(cache_key.path, "rb") as fh:
            # the key first: an entry built from other text is not unpickled at all
            if fh.read(len(cache_key.digest) + 1) != f"{cache_key.digest}\n".encode():
                return None
            types, pipeline = pickle.load(fh)
    except Exception:          # missing, stale format, unreadable, torn: just rebuild
        return None
    if not isinstance(pipeline, Pipeline) or not isinstance(types, dict):
        return None
    for name, value in pipeline.env_used.items():
        if os.environ.get(name) != value:
            return None
    try:
        if _type_signature(set(types)) != types:
            return None
    except Exception:
        return None
    if not all(os.path.exists(f) for f in pipeline.input_files):
        return None
    if any(matched != match_glob(pattern) for pattern, matched in pipeline.globs.items()):
        return None             # a batch stage's files came or went
    return pipeline


def save(cache_key: CacheKey, pipeline: Pipeline) -> None:
    if pipeline.secret_values:
        return                  # resolved secrets never go to disk
    if pipeline.skipped:
        return                  # a stage left out for want of a model comes back when the model does
    types = _type_signature({s.type for s in pipeline.stages})
    try:
        cache_key.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = f"{cache_key.digest}\n".encode() + pickle.dumps((types, pipeline), protocol=5)
        atomic.write_bytes(cache_key.path, entry, fsync=False)
        _prune(cache_key.path.parent)
    except OSError:
        pass                    # a read-only home directory only costs speed


def _prune(folder: Path) -> None:
    """Keep the `MAX_ENTRIES` most recently written entries (one per pipeline file)."""
    entries = list(folder.glob("*.pickle"))
    if len(entries) <= MAX_ENTRIES:
        return
    def written(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    for path in sorted(entries, key=written)[:len(entries) - MAX_ENTRIES]:
        path.unlink(missing_ok=True)
