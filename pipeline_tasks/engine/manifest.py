"""The stage manifest `<output_dir>/.stage.json`: the contract between stages.

It records what a stage produced (outputs, and each file's path, size and content digest), which
executor version produced it, and the run's metrics. Downstream doit tasks take it as `file_dep`;
`ManifestChecker` makes doit compare only the part that describes the produced data (everything
but `metrics` and `version`), so a stage that reruns and produces the same files leaves its
dependents up to date (early cutoff) even though its timings changed.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from doit.dependency import MD5Checker, get_file_md5

from .. import atomic

MANIFEST_NAME = ".stage.json"
FORMAT = 1
# what may change between two runs that produced the same data
RUN_FACTS = ("metrics", "version")
# compact, sorted, C encoder (an indented dump goes through the pure-Python encoder, slow for the
# manifests of stages with 100,000 files; `python -m json.tool` shows one indented); built once
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def sized_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size, digest) of a file: size and content from one open descriptor, unbuffered (a small
    file costs open, fstat, read, close: half the system calls of `stat` plus `open().read()`)."""
    h = hashlib.blake2b(digest_size=16)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        while block := os.read(fd, chunk):
            h.update(block)
            if len(block) < chunk:      # a short read of a regular file is its end: no read for b""
                break
    finally:
        os.close(fd)
    return size, h.hexdigest()


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
            size, digest = sized_digest(entry.path)
            files.append({"path": rel, "size": size, "digest": digest})


def describe_files(paths: Iterable[str], base: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries for explicitly declared output files, recorded relative to `base` (the manifest's
    folder) so `missing_files` finds them again."""
    out = []
    for path in sorted(set(paths)):
        rel = os.path.relpath(path, base).replace(os.sep, "/")
        size, digest = sized_digest(path)
        out.append({"path": rel, "size": size, "digest": digest})
    return out


def build(stage_id: str, stage_type: str, outputs: dict[str, Any], files: list[dict[str, Any]], *,
          version: str = "", metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "stage_id": stage_id, "type": stage_type, "version": version,
            "outputs": outputs, "files": files, "metrics": metrics or {}}


def content_digest(manifest: dict[str, Any]) -> str:
    """Digest of what the stage produced: the manifest without its run facts (`RUN_FACTS`)."""
    content = {k: v for k, v in manifest.items() if k not in RUN_FACTS}
    text = _ENCODE(content)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class ManifestChecker(MD5Checker):
    """doit's file_dep checker (`check_file_uptodate`): doit's own MD5 check for every file, except
    that a stage manifest counts as changed only when its content digest does. The state doit saves
    keeps MD5Checker's shape, (mtime, size, digest), and the mtime shortcut: an untouched manifest
    is not even opened."""

    def check_modified(self, file_path, file_stat, state):
        if os.path.basename(file_path) != MANIFEST_NAME:
            return super().check_modified(file_path, file_stat, state)
        if file_stat.st_mtime == state[0]:
            return False
        entry = _cached(file_path, file_stat)
        return entry is None or entry.digest != state[2]

    def get_state(self, dep, current_state):
        if os.path.basename(dep) != MANIFEST_NAME:
            return super().get_state(dep, current_state)
        st = os.stat(dep)
        if current_state and current_state[0] == st.st_mtime:
            return None
        entry = _cached(dep, st)
        return st.st_mtime, st.st_size, entry.digest if entry is not None else get_file_md5(dep)


def write(path: str | os.PathLike, manifest: dict[str, Any], *, fsync: bool = False) -> None:
    """Write the manifest in place: it is complete exactly when it parses (a torn one does not, and
    `read` takes it for missing), and the runtime deletes a stage's old manifest before the stage
    runs, so no temp file and rename are needed. Later reads in this process hit the cache."""
    path = os.fspath(path)
    text = _ENCODE(manifest) + "\n"
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    _remember(path, st, json.loads(text))       # what a reader would parse, not the caller's objects


class _Parsed:
    """A manifest as parsed, the file signature it was parsed from, its content digest on demand."""
    __slots__ = ("signature", "data", "_digest")

    def __init__(self, signature: tuple, data: dict[str, Any]):
        self.signature, self.data, self._digest = signature, data, None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = content_digest(self.data)
        return self._digest


_read_cache: dict[str, _Parsed] = {}


def _remember(path: str, st: os.stat_result, data: dict[str, Any]) -> _Parsed:
    entry = _read_cache[path] = _Parsed((st.st_mtime_ns, st.st_size, st.st_ino), data)
    return entry


def _cached(path: str, st: os.stat_result | None = None) -> _Parsed | None:
    """The manifest file as it is now, parsed once per process while it is unchanged (the
    up-to-date check, the runtime, the checkpoint all read it)."""
    path = os.fspath(path)
    try:
        st = st or os.stat(path)
    except OSError:
        return None
    cached = _read_cache.get(path)
    if cached is not None and cached.signature == (st.st_mtime_ns, st.st_size, st.st_ino):
        return cached
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return _remember(path, st, data)


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed manifest, or None if it is missing or not a complete manifest."""
    entry = _cached(path)
    return entry.data if entry is not None else None


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
