"""A cache of validated pipelines, so a no-op rerun or `status` of a 10,000-stage pipeline does not
parse and validate the YAML again.

Key: the file's absolute path and text, the package version and the check_inputs flag. A hit is
used only if everything else the result depended on is unchanged: every environment variable the
spec read, the version and class of every stage type it uses, and the existence of the input files
it checked. Cache files live in $PIPELINE_TASKS_CACHE or ~/.cache/pipeline_tasks (delete freely).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from .. import atomic
from ..models import Pipeline, PipelineStage
from .registry import get_executor_class
from .source import PipelineSource

FORMAT = 1


def cache_dir() -> Path:
    if os.environ.get("PIPELINE_TASKS_CACHE"):
        return Path(os.environ["PIPELINE_TASKS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline_tasks"


def key(source: PipelineSource, check_inputs: bool) -> str | None:
    if os.environ.get("PIPELINE_TASKS_NO_CACHE") == "1":
        return None
    from ..version import __version__
    # the dataclasses' shape too: a cache written by a different model layout is never unpickled
    shape = ",".join(list(Pipeline.__dataclass_fields__) + list(PipelineStage.__dataclass_fields__))
    h = hashlib.sha1(f"{FORMAT}|{__version__}|{shape}|{os.path.abspath(source.path)}|{check_inputs}|".encode())
    h.update(source.text.encode("utf-8"))
    return h.hexdigest()


def _type_signature(types: set[str]) -> dict[str, str]:
    out = {}
    for name in sorted(types):
        cls = get_executor_class(name)
        out[name] = f"{cls.__module__}.{cls.__qualname__}:{cls.version}"
    return out


def load(cache_key: str) -> Pipeline | None:
    try:
        with open(cache_dir() / f"{cache_key}.pickle", "rb") as fh:
            types, pipeline = pickle.load(fh)
    except Exception:          # missing, stale format, unreadable: just rebuild
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
    return pipeline


def save(cache_key: str, pipeline: Pipeline) -> None:
    if pipeline.secret_values:
        return                  # resolved secrets never go to disk
    types = _type_signature({s.type for s in pipeline.stages})
    try:
        atomic.write_bytes(cache_dir() / f"{cache_key}.pickle", pickle.dumps((types, pipeline), protocol=5),
                           fsync=False)
    except OSError:
        pass                    # a read-only home directory only costs speed
