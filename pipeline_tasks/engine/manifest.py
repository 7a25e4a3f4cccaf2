"""The stage manifest `<output_dir>/.stage.json`: the contract between stages.

It records what a stage produced (outputs, and each file's path, size and content digest), which
executor version produced it, and the run's metrics. Downstream doit tasks take it as `file_dep`;
`ManifestChecker` makes doit compare only the part that describes the produced data (everything
but `metrics` and `version`), so a stage that reruns and produces the same files leaves its
dependents up to date (early cutoff) even though its timings changed.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

from doit.dependency import MD5Checker, get_file_md5

from .. import atomic
from ..state import folders

MANIFEST_NAME = folders.MANIFEST_NAME
_RECORD_NAMES = (folders.RECORD_NAME, folders.LEGACY_BEFORE_NAME)
FORMAT = 1
# what may change between two runs that produced the same data
RUN_FACTS = ("metrics", "version", "duration")
# compact, sorted, C encoder (an indented dump goes through the pure-Python encoder, slow for the
# manifests of stages with 100,000 files; `python -m json.tool` shows one indented); built once
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def sized_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[int, str]:
    """(size, digest) of a file: size and content from one open descriptor, unbuffered (a small
    file costs open, fstat, read, close: half the system calls of `stat` plus `open().read()`)."""
    size, _mtime, digest = _facts(path, chunk)
    return size, digest


def _facts(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[int, int, str]:
    """(size, mtime in ns, digest) of a regular file. Opened without blocking, so a FIFO put in
    the file's place cannot hang the run; anything but a regular file is an OSError."""
    h = hashlib.blake2b(digest_size=16)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        # a small file is read in one call of its size plus one byte: asking for a whole chunk
        # allocates (and frees) a chunk-sized buffer each time, which costs more than the read
        want = min(chunk, st.st_size + 1)
        try:
            while block := os.read(fd, want):
                h.update(block)
                if len(block) < want:       # a short read of a regular file is its end: no read for b""
                    break
                want = chunk
        except OSError as exc:
            raise atomic.naming(exc, path) from None
    finally:
        os.close(fd)
    return st.st_size, st.st_mtime_ns, h.hexdigest()


def scan_files(root: str | os.PathLike, exclude: Iterable[str] | Callable[[], Iterable[str]] = (), *,
               mtimes: bool = False) -> list[dict[str, Any]]:
    """Every finished regular file under `root` (relative path, size, digest; with `mtimes`, also
    `mtime_ns`, which `build` leaves out of the manifest), sorted. Partial files, the engine's own
    files (manifest, lock, ownership record) and the relative paths in `exclude` are left out; so
    are symbolic links, FIFOs, sockets and devices: only regular files are outputs. `exclude` may be
    a function giving those paths, called only when `root` holds an ownership record (a folder
    without one held nothing before its stage), and before any file is read."""
    root = os.fspath(root)
    found: list[tuple[str, str]] = []
    engine_files: set[str] = set()
    _scan(root, "", found, engine_files)
    if callable(exclude):
        exclude = exclude() if found and not engine_files.isdisjoint(_RECORD_NAMES) else ()
    excluded = {os.path.normpath(e) for e in exclude}
    files: list[dict[str, Any]] = []
    for rel, path in found:
        if rel not in excluded:
            size, mtime_ns, digest = _facts(path)
            entry = {"path": rel, "size": size, "digest": digest}
            if mtimes:
                entry["mtime_ns"] = mtime_ns
            files.append(entry)
    files.sort(key=lambda f: f["path"])
    return files


def _scan(folder: str, prefix: str, found: list[tuple[str, str]], engine_files: set[str]) -> None:
    """Collect (relative path, path) of the candidate files under `folder`; the names of the
    engine's files at the top go into `engine_files`."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):     # like os.walk: linked folders are not followed
            _scan(entry.path, rel + "/", found, engine_files)
        elif entry.name in folders.ENGINE_FILES:
            if not prefix:
                engine_files.add(entry.name)
        elif entry.is_file(follow_symlinks=False) and atomic.PART_MARKER not in entry.name:
            found.append((rel, entry.path))


def describe_files(paths: Iterable[str], base: str | os.PathLike, *, mtimes: bool = False) -> list[dict[str, Any]]:
    """Entries for explicitly declared output files, recorded relative to `base` (the manifest's
    folder) so `changed_files` finds them again; `mtimes` as for `scan_files`."""
    out = []
    for path in sorted(set(paths)):
        rel = os.path.relpath(path, base).replace(os.sep, "/")
        size, mtime_ns, digest = _facts(path)
        entry = {"path": rel, "size": size, "digest": digest}
        if mtimes:
            entry["mtime_ns"] = mtime_ns
        out.append(entry)
    return out


def build(stage_id: str, stage_type: str, outputs: dict[str, Any], files: list[dict[str, Any]], *,
          version: str = "", metrics: dict[str, Any] | None = None,
          duration: float | None = None) -> dict[str, Any]:
    """The manifest: each file as path, size and digest (an mtime is a fact of the disk, not of
    the data, and would defeat the early cutoff)."""
    entries = [{"path": f["path"], "size": f["size"], "digest": f["digest"]} for f in files]
    return {"format": FORMAT, "stage_id": stage_id, "type": stage_type, "version": version,
            "outputs": outputs, "files": entries, "metrics": metrics or {}, "duration": duration}


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


def write(path: str | os.PathLike, manifest: dict[str, Any], *, fsync: bool = False) -> list[int]:
    """Write the manifest in place: it is complete exactly when it parses (a torn one does not, and
    `read` takes it for missing), and the runtime deletes a stage's old manifest before the stage
    runs, so no temp file and rename are needed. Later reads in this process hit the cache.
    Returns the written file's signature, [size, mtime_ns], which `intact` compares."""
    path = os.fspath(path)
    text = _ENCODE(manifest) + "\n"
    data = text.encode("utf-8")
    try:
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
    except OSError as exc:
        with contextlib.suppress(OSError):     # a manifest cut short (a full disk) is no manifest
            if os.path.getsize(path) != len(data):
                os.unlink(path)
        raise atomic.naming(exc, path) from None
    _read_cache[path] = _Parsed((st.st_mtime_ns, st.st_size, st.st_ino), text=text)
    return [st.st_size, st.st_mtime_ns]


class _Parsed:
    """A manifest as parsed, the file signature it was parsed from, its content digest on demand.
    One this process wrote keeps its text and is parsed when first read (what a reader would parse,
    not the writer's objects); a stage nothing reads never is."""
    __slots__ = ("signature", "_data", "_text", "_digest")

    def __init__(self, signature: tuple, data: dict[str, Any] | None = None, text: str | None = None):
        self.signature, self._data, self._text, self._digest = signature, data, text, None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data, self._text = json.loads(self._text), None
        return self._data

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
    if not well_formed(data):
        return None
    return _remember(path, st, data)


def well_formed(data: Any) -> bool:
    """A manifest as `build` makes it: outputs an object, every file entry a relative path, a size
    and a digest. Anything else (an empty or cut file, a hand edit gone wrong) is no manifest."""
    if not isinstance(data, dict) or not isinstance(data.get("outputs"), dict):
        return False
    files = data.get("files")
    if not isinstance(files, list):
        return False
    for entry in files:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]
                and type(entry.get("size")) is int and isinstance(entry.get("digest"), str)):
            return False
    return True


def digest_of(path: str | os.PathLike) -> str | None:
    """The content digest of the manifest at `path` (None: missing or not a manifest)."""
    entry = _cached(path)
    return entry.digest if entry is not None else None


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed manifest, or None if it is missing or not a complete manifest."""
    entry = _cached(path)
    return entry.data if entry is not None else None


def file_facts(files: list[dict[str, Any]]) -> list[list]:
    """[[path, size, mtime_ns], ...] of the files a stage produced (as `scan_files` and
    `describe_files` describe them with `mtimes`): what the up-to-date check needs, small enough to keep in doit's
    database so a no-op run need not parse every manifest."""
    return [[f["path"], f["size"], f["mtime_ns"]] for f in files]


def changed_files(manifest_path: str | os.PathLike, facts: list[list] | None = None) -> list[str] | None:
    """The files a stage produced that are gone or changed since (None: the manifest itself is
    missing or not a manifest). `facts` are `file_facts` from doit's database; without them, the
    manifest's own sizes are compared."""
    data = read(manifest_path)
    if data is None:
        return None
    if facts is None:
        facts = [[f["path"], f["size"]] for f in data["files"]]
    return _changed(os.path.dirname(os.fspath(manifest_path)), facts, manifest_path)


_REGULAR = stat.S_IFREG


def _changed(base: str, facts: list[list], manifest_path: str | os.PathLike) -> list[str]:
    """A file with its recorded size and mtime is unchanged (one stat); one whose mtime moved is
    unchanged only if its content digest is still the one in the manifest (read only then)."""
    digests: dict[str, str] | None = None
    changed = []
    prefix = base + os.sep if base else ""
    for path, size, *mtime in facts:
        full = path if path[:1] == os.sep else prefix + path
        try:
            st = os.stat(full)
        except OSError:
            changed.append(path)
            continue
        if st.st_size != size or stat.S_IFMT(st.st_mode) != _REGULAR:
            changed.append(path)
        elif mtime and st.st_mtime_ns != mtime[0]:
            if digests is None:
                data = read(manifest_path)
                digests = {f["path"]: f["digest"] for f in data["files"]} if data else {}
            try:
                same = _facts(full)[2] == digests.get(path)
            except OSError:
                same = False
            if not same:
                changed.append(path)
    return changed


def intact(manifest_path: str, signature: list | None = None, facts: list[list] | None = None) -> bool:
    """The stage's manifest is the one it wrote and every file it lists is unchanged.

    With the manifest's `signature` ([size, mtime_ns], from `write`) and the files' `facts` from
    doit's database, an untouched manifest is not even opened; a manifest rewritten since counts
    only if it parses, with what it says now."""
    if signature is not None and facts is not None:
        try:
            st = os.stat(manifest_path)
        except OSError:
            return False
        if st.st_mtime_ns == signature[1] and st.st_size == signature[0]:
            return not _changed(os.path.dirname(manifest_path), facts, manifest_path)
        facts = None
    changed = changed_files(manifest_path, facts)
    return changed is not None and not changed
