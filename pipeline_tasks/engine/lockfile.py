"""The lock file beside a pipeline (`demo.yaml` → `demo.lock.json`), meant to be committed: what the
pipeline built, per stage (and per batch item): the stage type, executor version, config
fingerprint, the digests of its input files and of its upstream stages' outputs, and the digest of
its own outputs (the manifest's content digest, which covers every file's digest). It holds no
times and no absolute paths, so two clean runs of one commit write the same bytes, and
`pipeline-tasks verify` checks a workspace against it.

A run rewrites the entries of the stages it ran (and of those it found up to date whose entry names
another config); a stage it did not reach keeps its entry while its outputs are still the ones
locked, else loses it. JSON with one line per stage
(sorted), so a diff of the committed file shows which stages changed, and 10,000 stages cost
milliseconds (the C encoder).

The same bytes need the same builds of the libraries that compute them (another OpenCV rounds
masks otherwise): the lock also records the versions of those installed (`libraries`), with the
packages the pipeline's stages compute with (a `sam` segmentation's torch), when a run built
something, and `verify` names the ones that differ when outputs are not the locked ones.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
from collections.abc import Iterable
from typing import Any

from .. import atomic
from . import manifest as mf

SCHEMA = 1
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


# the distributions of the project's own extras whose builds decide the bytes of the built-in
# stages' outputs; the model libraries (torch, transformers: the `ml` extra, which not every
# install has) are recorded only for a pipeline with a stage that computes with them
# (`StageExecutor.packages`), so that installs with and without them write the same lock for the others
OUTPUT_LIBRARIES = ("av", "faster-whisper", "numpy", "onnxruntime", "opencv-python", "pillow", "pocketsphinx",
                    "pysubs2", "scenedetect", "scikit-learn", "scipy")


@functools.lru_cache(maxsize=8)
def libraries(packages: tuple[str, ...] = ()) -> dict[str, str]:
    """The installed versions of OUTPUT_LIBRARIES and of `packages` (those a pipeline's stages
    compute with beyond them: `StageExecutor.packages`), those installed."""
    found = {}
    for name in sorted(set(OUTPUT_LIBRARIES) | set(packages)):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def library_differences(locked: Any) -> list[str]:
    """`name X here, Y in the lock` for each library whose installed version is not the locked one."""
    if not isinstance(locked, dict):
        return []
    here = libraries(tuple(sorted(locked)))
    return [f"{name} {here.get(name, 'not installed')} here, {locked[name]} in the lock"
            for name in sorted(locked) if here.get(name) != locked[name]]


def lock_path(source: str | os.PathLike) -> str:
    """The lock file of the pipeline file `source`: beside it, `<name>.lock.json`."""
    return os.path.splitext(os.fspath(source))[0] + ".lock.json"


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The lock's stages ({stage id: entry}), or None when there is no readable lock file."""
    document = read_document(path)
    return document["stages"] if document is not None else None


def read_document(path: str | os.PathLike) -> dict[str, Any] | None:
    """The whole lock file (`schema`, `pipeline`, `stages`), or None when there is no readable one."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        return None
    return data


class InputDigests:
    """Content digests of input files, remembered by (size, mtime) in the state folder so a run
    reads an unchanged input (a long video) only once."""

    def __init__(self, cache_file: str | os.PathLike | None):
        self.cache_file = cache_file
        self.known: dict[str, list] = {}
        if cache_file:
            try:
                with open(cache_file, encoding="utf-8") as fh:
                    loaded = json.load(fh)
                self.known = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.known = {}
        self.changed = False

    def digest(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        entry = self.known.get(path)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return entry[2]
        try:
            size, digest = mf.sized_digest(path)
        except OSError:
            return None
        self.known[path] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if self.cache_file and self.changed:
            atomic.write_text(self.cache_file, _ENCODE(self.known), fsync=False)


class _Outputs(dict):
    """Each stage's output digest (its manifest's content digest; None without a manifest), read
    when first asked for."""

    def __init__(self, manifests: dict[str, str]):
        super().__init__()
        self.manifests = manifests

    def __missing__(self, stage_id: str) -> str | None:
        value = self[stage_id] = mf.digest_of(self.manifests[stage_id])
        return value


def entry(spec: dict[str, Any], outputs: dict[str, str | None], digests: InputDigests) -> dict[str, Any] | None:
    """The lock entry of one stage as its outputs are now (None when it has none). `spec`: the
    stage's `id`, `type`, `version`, `fingerprint`, `inputs` (files), `upstream` (stage ids) and
    `reproducible`; `outputs`: each stage's output digest."""
    own = outputs[spec["id"]]
    if own is None:
        return None
    data: dict[str, Any] = {"type": spec["type"], "version": str(spec["version"]), "fingerprint": spec["fingerprint"],
                            "inputs": {p: digests.digest(p) for p in spec["inputs"]},
                            "upstream": {d: outputs[d] for d in spec["upstream"]}}
    if spec["reproducible"]:
        data["output"] = own
    else:
        data["reproducible"] = False        # its outputs describe the run (times): not compared
    return data


def output_digests(manifests: dict[str, str]) -> dict[str, str | None]:
    """Each stage's output digest, read on demand (see `_Outputs`)."""
    return _Outputs(manifests)


def _same_stage(old: Any, spec: dict[str, Any]) -> bool:
    return (isinstance(old, dict) and old.get("fingerprint") == spec["fingerprint"]
            and old.get("type") == spec["type"] and old.get("version") == str(spec["version"]))


def write(path: str | os.PathLike, pipeline_name: str, specs: list[dict[str, Any]], manifests: dict[str, str],
          executed: Iterable[str], up_to_date: Iterable[str], digests: InputDigests) -> bool:
    """Rewrite the lock: fresh entries for the stages the run executed; for a stage it found up to
    date, its old entry when that names the same config (doit found its inputs and outputs
    unchanged since it ran), else a fresh one; for any other stage, its old entry while its outputs
    are still the locked ones. Writes only when the text changes; returns whether it did."""
    executed, up_to_date = set(executed), set(up_to_date)
    document = read_document(path) or {"stages": {}}
    previous = document["stages"]
    outputs = output_digests(manifests)
    stages: dict[str, Any] = {}
    same = True                 # every entry the old one (a no-op run): nothing to render or write
    for spec in specs:
        stage_id = spec["id"]
        old = previous.get(stage_id)
        if stage_id in executed:
            new = entry(spec, outputs, digests)
        elif stage_id in up_to_date:
            new = old if _same_stage(old, spec) else entry(spec, outputs, digests)
        else:
            keep = isinstance(old, dict) and outputs[stage_id] is not None and (
                old.get("output") == outputs[stage_id] or old.get("reproducible") is False)
            new = old if keep else None
        if new is not None:
            stages[stage_id] = new
        same = same and new is old
    digests.save()
    # the libraries that built the outputs: this run's when it built something, else those recorded
    libs = (libraries(tuple(sorted({name for spec in specs for name in spec.get("packages", ())})))
            if executed or not isinstance(document.get("libraries"), dict) else document["libraries"])
    if same and len(stages) == len(previous) and document.get("pipeline") == pipeline_name \
            and document.get("schema") == SCHEMA and document.get("libraries") == libs:
        return False
    text = render(pipeline_name, stages, libs)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except OSError:
        pass
    atomic.write_text(path, text, fsync=False)
    return True


def render(pipeline_name: str, stages: dict[str, Any], libs: dict[str, str]) -> str:
    """The lock file's text: a JSON object, the libraries on a line, each stage's entry on a line
    of its own, sorted."""
    lines = [f"  {_ENCODE(stage_id)}: {_ENCODE(stages[stage_id])}" for stage_id in sorted(stages)]
    body = ",\n".join(lines)
    return (f'{{"schema": {SCHEMA}, "pipeline": {_ENCODE(pipeline_name)},\n'
            f' "libraries": {_ENCODE(libs)},\n "stages": {{\n'
            + (body + "\n" if body else "") + "}}\n")


def differences(path: str | os.PathLike, specs: list[dict[str, Any]], manifests: dict[str, str],
                digests: InputDigests) -> list[str]:
    """How the workspace differs from the lock, one line each, in pipeline order: stages missing
    from either side, a changed config or executor, changed input files or upstream outputs,
    outputs missing, changed or not the locked ones."""
    document = read_document(path)
    if document is None:
        return [f"{path}: no lock file (run the pipeline to write it)"]
    locked = document["stages"]
    problems: list[str] = []
    other_outputs = False       # a stage's outputs are not the locked ones (another library build?)
    outputs = output_digests(manifests)
    ids = {spec["id"] for spec in specs}
    for spec in specs:
        stage_id = spec["id"]
        old = locked.get(stage_id)
        if not isinstance(old, dict):
            problems.append(f"{stage_id}: not in the lock file (never built)")
            continue
        if old.get("type") != spec["type"] or old.get("version") != str(spec["version"]):
            problems.append(f"{stage_id}: executor {spec['type']} {spec['version']}, locked "
                            f"{old.get('type')} {old.get('version')}")
        elif old.get("fingerprint") != spec["fingerprint"]:
            problems.append(f"{stage_id}: config changed since the lock")
        for p in spec["inputs"]:
            now = digests.digest(p)
            if (old.get("inputs") or {}).get(p) != now:
                problems.append(f"{stage_id}: input {p} " + ("is missing" if now is None else "differs from the lock"))
        manifest_path = manifests[stage_id]
        changed = mf.changed_files(manifest_path)
        if changed is None:
            problems.append(f"{stage_id}: outputs missing ({manifest_path} not found)")
            continue
        if spec["reproducible"] and old.get("output") != outputs[stage_id]:
            other_outputs = True
            problems.append(f"{stage_id}: outputs are not the locked ones ({manifest_path} differs)")
        for rel in _changed_content(manifest_path):
            problems.append(f"{stage_id}: output file {rel} changed or missing")
    for stage_id in sorted(set(locked) - ids):
        problems.append(f"{stage_id}: in the lock file but not in the pipeline")
    if other_outputs:           # first: it may explain the rest
        problems[:0] = [f"libraries: {d} (another build may write other bytes: install the locked versions)"
                        for d in library_differences(document.get("libraries"))]
    return problems


def _changed_content(manifest_path: str) -> list[str]:
    """The files a manifest lists whose content digest is not the recorded one (each file read)."""
    data = mf.read(manifest_path) or {"files": []}
    base = os.path.dirname(manifest_path)
    changed = []
    for f in data["files"]:
        full = f["path"] if os.path.isabs(f["path"]) else os.path.join(base, f["path"])
        try:
            same = mf.sized_digest(full) == (f["size"], f["digest"])
        except OSError:
            same = False
        if not same:
            changed.append(f["path"])
    return changed
