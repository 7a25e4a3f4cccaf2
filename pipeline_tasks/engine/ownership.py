"""A stage owns only what it wrote: which folders may be output folders, and what `doit clean`
may remove.

- `check_output_folders`: each stage with an `output_dir` needs a folder of its own. Refused: two
  stages naming one folder or one folder inside another's; a folder that is a symbolic link; a
  folder that holds the pipeline file or the state directory, or lies inside the state directory.
  Folders are compared as resolved paths, so `out/a` and a link to it are one folder.
- `clean_stage` (doit's clean action of a stage): removes the regular files its manifest lists that
  resolve inside its output folder (or are its declared `output_files()`), were not there before
  the stage first ran, and are not the engine's own; then the manifest; then, once nothing else is
  left, the engine's files and the folders the stage created. Anything else is kept and named.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import SpecError
from ..models import Pipeline, PipelineStage
from ..state import folder_record, folders
from ..state.paths import folder_being_written
from . import manifest as mf


def _within(path: str, folder: str) -> bool:
    """`path` is `folder` or lies inside it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folders(pipeline: Pipeline, state_dir: str | os.PathLike) -> None:
    """SpecError for the first output folder a stage may not use (see the module's doc). Runs on
    every run of the pipeline: about a microsecond a stage beyond one lstat."""
    cwd = os.getcwd()       # once: os.path.abspath asks the kernel for it on every call
    resolved_parents: dict[str, str] = {}
    source = os.path.realpath(pipeline.source) if pipeline.source else None
    state = os.path.realpath(state_dir)
    state_slash = state.rstrip(os.sep) + os.sep
    taken: list[tuple[str, PipelineStage]] = []
    for stage in pipeline.stages:
        out = stage.config.get("output_dir")
        if not out:
            continue
        path = _absolute(str(out), cwd)
        if os.path.islink(path):
            raise _refuse(pipeline, stage, f"is a symbolic link (to '{os.readlink(path)}'); a stage writes into a "
                                           f"folder of its own: name a real folder")
        # realpath, one per distinct parent: a pipeline of 10,000 stages has few
        parent, _, name = path.rpartition(os.sep)
        real_parent = resolved_parents.get(parent)
        if real_parent is None:
            real_parent = resolved_parents[parent] = os.path.realpath(parent or os.sep).rstrip(os.sep)
        real_slash = f"{real_parent}{os.sep}{name}{os.sep}" if name else real_parent + os.sep
        if source and source.startswith(real_slash):
            raise _refuse(pipeline, stage, f"holds the pipeline file {pipeline.source}; a stage's output folder may "
                                           f"hold only what the stage writes: give it a folder of its own")
        if state_slash.startswith(real_slash):
            raise _refuse(pipeline, stage, f"holds the state directory {state_dir}; give the stage a folder of its "
                                           f"own (or move the state with --state-dir)")
        if real_slash.startswith(state_slash):
            raise _refuse(pipeline, stage, f"is inside the state directory {state_dir}; give the stage a folder "
                                           f"of its own outside it")
        taken.append((real_slash, stage))
    taken.sort(key=lambda item: item[0])
    for (prev_dir, prev), (cur_dir, cur) in zip(taken, taken[1:]):
        if cur_dir == prev_dir:
            raise _refuse(pipeline, cur, f"is already the output folder of stage '{prev.id}' "
                                         f"('{prev.config['output_dir']}'); each stage needs a folder of its own")
        if cur_dir.startswith(prev_dir):
            raise _refuse(pipeline, cur, f"lies inside the output folder of stage '{prev.id}' "
                                         f"('{prev.config['output_dir']}'); each stage needs a folder of its own")


def _absolute(path: str, cwd: str) -> str:
    """os.path.normpath(os.path.join(cwd, path)), at a fraction of the cost for the usual plain
    relative path (a pipeline of 10,000 stages checks 10,000 of them on every run)."""
    joined = path if path.startswith(os.sep) else cwd + os.sep + path
    if "/." in joined or "//" in joined or joined.endswith(os.sep):
        return os.path.normpath(joined)
    return joined


def _refuse(pipeline: Pipeline, stage: PipelineStage, why: str) -> SpecError:
    return SpecError(f"output_dir '{stage.config['output_dir']}' {why}", path=pipeline.source, line=stage.line,
                     stage=stage.id, key="output_dir")


def clean_stage(manifest: str, output_dir: str | None, declared: Iterable[str] = (), dryrun: bool = False) -> None:
    """`doit clean STAGE` (see the module's doc). A folder a run is writing is left alone."""
    if output_dir and folder_being_written(output_dir):
        print(f"  kept {output_dir}: a run is writing it")
        return
    verb = "would remove" if dryrun else "removed"
    data = mf.read(manifest)
    folder = os.path.realpath(output_dir) if output_dir else None
    allowed = {os.path.realpath(p) for p in declared}
    before = folders.preexisting(output_dir)
    base = os.path.dirname(manifest)
    for entry in (data or {}).get("files", ()):
        target = os.path.normpath(os.path.join(base, entry["path"]))
        why = _why_not_removable(target, folder, allowed, before)
        if why == "gone":
            continue
        if why:
            print(f"  kept {target}: {why}")
            continue
        if not dryrun:
            os.unlink(target)
        print(f"  {verb} {target}")
    if os.path.isfile(manifest) and not os.path.islink(manifest) and not dryrun:
        os.unlink(manifest)
    if output_dir and not dryrun:
        _remove_what_the_stage_created(output_dir, before)


def _why_not_removable(target: str, folder: str | None, allowed: set[str], before: frozenset[str]) -> str | None:
    """None if `clean` may remove `target`; else why not ('gone' when there is nothing to remove)."""
    if not os.path.lexists(target):
        return "gone"
    if os.path.islink(target) or not os.path.isfile(target):
        return "not a regular file"
    real = os.path.realpath(target)
    if real in allowed:
        return None
    if folder is None or not _within(real, folder) or real == folder:
        return "outside the stage's output folder"
    rel = os.path.relpath(real, folder).replace(os.sep, "/")
    if rel in before:
        return "it was there before the stage first ran"
    if os.path.basename(real) in folders.ENGINE_FILES:
        return "the engine's own file"
    return None


def _remove_what_the_stage_created(output_dir: str, before: frozenset[str]) -> None:
    """Empty folders the stage created; then, if the folder holds nothing but the engine's own
    files, those files, and the folder itself if the stage created it. Otherwise the folder keeps
    its claim (lock and ownership record, which no longer lists what was removed), so what is left
    is never taken for a user's file."""
    root = Path(output_dir)
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirs, _files in os.walk(root, topdown=False):
        for name in dirs:
            sub = Path(dirpath, name)
            rel = sub.relative_to(root).as_posix()
            if rel not in before and not sub.is_symlink() and not any(sub.iterdir()):
                sub.rmdir()
    if any(p.name not in folders.ENGINE_FILES for p in root.iterdir()):
        record = folder_record.read(output_dir)
        if record.files or record.dirs:
            record.files = {f for f in record.files if os.path.lexists(os.path.join(output_dir, f))}
            record.dirs = {d for d in record.dirs if os.path.lexists(os.path.join(output_dir, d))}
            folder_record.write(output_dir, record)
        return
    existed = folders.existed_before(output_dir)
    for name in folders.ENGINE_FILES:
        (root / name).unlink(missing_ok=True)
    if not existed:
        root.rmdir()
