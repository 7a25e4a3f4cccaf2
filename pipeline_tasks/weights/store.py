"""The model cache: where fetched model files live, whether each is whole and verified, and how a
config's `weights` value (a path or a catalogue name) becomes a file.

Where: `$PIPELINE_TASKS_MODELS_DIR`, else `$XDG_CACHE_HOME/pipeline_tasks/models`
(`~/.cache/pipeline_tasks/models`). Each model is `<file>` (whole and verified), `<file>.part` while
a fetch is unfinished, and `<file>.verified.json`, the record of its check (size, mtime, sha256),
so that using a verified file costs a `stat`, not a digest of hundreds of megabytes; a file whose
size or mtime moved since is digested again before use. Nothing here downloads: `fetch.py` does,
only when `pipeline-tasks models fetch` asks.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import ModelWeightsError
from .catalogue import DEFAULTS, ModelEntry, load

MODELS_DIR_ENV = "PIPELINE_TASKS_MODELS_DIR"
RECORD_SUFFIX = ".verified.json"
PART_SUFFIX = ".part"
CHUNK = 1 << 20


def models_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline_tasks" / "models"


def fetch_command(name: str) -> str:
    return f"pipeline-tasks models fetch {name}"


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheState:
    """What the cache holds of one model: `state` is one of missing, partial, verified, unchecked
    (present, not digested since it changed), mismatch (its digest or size is wrong)."""
    entry: ModelEntry
    path: Path
    state: str
    size: int | None = None     # bytes on disk (of the .part file when partial)
    detail: str = ""


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _read_record(path: Path) -> dict:
    try:
        data = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(path: Path, sha256: str) -> None:
    st = path.stat()
    atomic.write_json(_record_path(path), {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def state_of(entry: ModelEntry, root: Path, rehash: bool = False,
             progress: Callable[[int], None] | None = None) -> CacheState:
    """The cache's state of `entry`; with `rehash` the file is digested even when its record is current."""
    path = root / entry.file
    try:
        st = path.stat()
    except FileNotFoundError:
        part = path.with_name(path.name + PART_SUFFIX)
        if part.is_file():
            return CacheState(entry, path, "partial", part.stat().st_size)
        return CacheState(entry, path, "missing")
    if entry.size is not None and st.st_size != entry.size:
        return CacheState(entry, path, "mismatch", st.st_size, f"{st.st_size} bytes, the catalogue says {entry.size}")
    record = _read_record(path)
    current = record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns
    expected = entry.sha256 or record.get("sha256")
    if current and not rehash and expected and record.get("sha256") == expected:
        return CacheState(entry, path, "verified", st.st_size)
    if not rehash and not current:
        return CacheState(entry, path, "unchecked", st.st_size, "changed since it was verified")
    digest = file_sha256(path, progress)
    if expected and digest != expected:
        return CacheState(entry, path, "mismatch", st.st_size, f"sha256 {digest}, expected {expected}")
    write_record(path, digest)
    return CacheState(entry, path, "verified", st.st_size)


def verified_file(entry: ModelEntry, root: Path, stage: str | None = None, key: str | None = None) -> Path:
    """The cached file of `entry`, verified (digested again if it changed since its last check);
    a `ModelWeightsError` that names the command to fetch it when it is missing or wrong."""
    state = state_of(entry, root)
    if state.state == "unchecked":
        state = state_of(entry, root, rehash=True)
    if state.state == "verified":
        return state.path
    how = fetch_command(entry.name)
    if state.state == "mismatch":
        raise ModelWeightsError(f"cached model '{entry.name}' is damaged ({state.detail}); fetch it again with "
                                f"`{how}`", path=state.path, stage=stage, key=key)
    half = " (a fetch was interrupted; the same command resumes it)" if state.state == "partial" else ""
    raise ModelWeightsError(f"model '{entry.name}' is not in the model cache {root}{half}; fetch it with `{how}` "
                            f"({entry.url}, {entry.licence})", stage=stage, key=key)


def resolve_weights(value: str | None, backend: str, stage: str | None = None, key: str = "weights") -> str:
    """The weights file a config means: an existing file as given; a catalogue name (or, with no
    value, the backend's default entry) as its verified file in the model cache; anything else
    as given (the backend reports it missing)."""
    if value and (os.path.sep in value or os.path.isfile(value)):
        return value
    catalogue = load()
    name = value or DEFAULTS[backend]
    entry = catalogue.get(name)
    if entry is None:
        return value
    return str(verified_file(entry, models_dir(), stage=stage, key=key))


def catalogue_names(backend: str) -> list[str]:
    """Catalogue names whose entry is used by `backend` (for messages)."""
    return sorted(e.name for e in load().values() if e.used_by.endswith(f": {backend}"))
