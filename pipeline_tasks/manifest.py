"""The stage manifest `<output_dir>/.stage.json`: the contract between stages.

Downstream doit tasks take it as `file_dep`, and doit compares its content hash, so the manifest
is deterministic (sorted keys, no timestamps or timings): a stage that reruns and produces the same
files yields a byte-identical manifest, and its dependents stay up to date (early cutoff).
Run facts that change every time (durations, attempts, metrics) live in events.jsonl instead.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable

from . import atomic

MANIFEST_NAME = ".stage.json"
FORMAT = 1


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def scan_files(root: str | os.PathLike, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every finished file under `root` (relative path, size, digest), sorted; partial files and
    the manifest itself are left out."""
    excluded = {os.path.normpath(e) for e in exclude}
    files: list[dict[str, Any]] = []
    _scan(os.fspath(root), "", excluded, files)
    files.sort(key=lambda f: f["path"])
    return files


def _scan(folder: str, prefix: str, excluded: set[str], files: list[dict[str, Any]]) -> None:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir():
            if not entry.is_symlink():          # like os.walk: linked folders are not followed
                _scan(entry.path, rel + "/", excluded, files)
        elif entry.name != MANIFEST_NAME and atomic.PART_MARKER not in entry.name and rel not in excluded:
            files.append({"path": rel, "size": entry.stat().st_size, "digest": file_digest(entry.path)})


def describe_files(paths: Iterable[str], base: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries for explicitly declared output files, recorded relative to `base` (the manifest's
    folder) so `missing_files` finds them again."""
    out = []
    for path in sorted(set(paths)):
        rel = os.path.relpath(path, base).replace(os.sep, "/")
        out.append({"path": rel, "size": os.path.getsize(path), "digest": file_digest(path)})
    return out


def build(stage_id: str, stage_type: str, outputs: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest holds what the stage produced, not how it was configured or by which executor
    version: a change that yields the same outputs must yield the same bytes (early cutoff)."""
    return {"format": FORMAT, "stage_id": stage_id, "type": stage_type, "outputs": outputs, "files": files}


def write(path: str | os.PathLike, manifest: dict[str, Any], *, fsync: bool = False) -> None:
    # compact (C encoder): an indented dump goes through the pure-Python encoder, slow for the
    # manifests of stages with 100,000 files; `python -m json.tool` shows it indented
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str) + "\n"
    atomic.write_text(path, text, fsync=fsync)


_read_cache: dict[str, tuple[tuple, dict[str, Any]]] = {}


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed manifest, or None. Parsed once per process while the file is unchanged (the
    up-to-date check, the checkpoint and the run result all read it)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _read_cache.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    _read_cache[path] = (signature, data)
    return data


def missing_files(manifest: dict[str, Any], manifest_path: str | os.PathLike) -> list[str]:
    """Files the manifest lists that are gone or changed size (cheap: one stat each)."""
    return missing_sizes(file_sizes(manifest), manifest_path)


def file_sizes(manifest: dict[str, Any]) -> list[list]:
    """[[path, size], ...] of a manifest's files: what the up-to-date check needs, small enough to
    keep in doit's database so a no-op run need not parse every manifest."""
    return [[entry["path"], entry["size"]] for entry in manifest.get("files", ())]


def missing_sizes(sizes: list[list], manifest_path: str | os.PathLike) -> list[str]:
    base = os.path.dirname(os.fspath(manifest_path))
    missing = []
    for path, size in sizes:
        full = path if os.path.isabs(path) else os.path.join(base, path)
        try:
            if os.path.getsize(full) != size:
                missing.append(path)
        except OSError:
            missing.append(path)
    return missing
