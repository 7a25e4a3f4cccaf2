"""Compile a validated Pipeline into doit task dicts: one task per stage.

- file_dep: the upstream stages' manifests (content-hashed by doit → early cutoff) plus the input
  files the executor declares;
- targets: the stage's own manifest;
- uptodate: the config fingerprint (resolved config with secrets masked + executor version) and a
  check that the manifest is the one the stage wrote and every file it lists is unchanged;
- clean: `ownership.clean_stage`, which removes only what the stage wrote;
- actions: one top-level function with one plain-dict argument (picklable for -P process).

A batch stage (`foreach`) is a doit group task `stage` over one sub-task `stage:item` per item.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from typing import Any

from doit.task import Task, dict_to_task

from ..models import OrchestratorConfig, Pipeline, PipelineStage, RetryPolicy
from ..spec.registry import get_executor_class
from ..state.paths import StatePaths
from . import manifest as mf
from .capacity import stage_need
from .ownership import check_output_folders, clean_stage
from .runtime import run_stage


def norm(path: str | os.PathLike) -> str:
    """The one form of a path doit sees (doit compares paths as strings)."""
    return os.path.normpath(str(path))


def manifest_path(stage: PipelineStage, paths: StatePaths) -> str:
    out = stage.config.get("output_dir")
    if out:
        return norm(os.path.join(out, mf.MANIFEST_NAME))
    return norm(paths.default_manifest(stage.id))


# json.dumps(data, sort_keys=True, default=str), without building an encoder for each stage
_FINGERPRINT_TEXT = json.JSONEncoder(sort_keys=True, default=str).encode


def fingerprint(stage: PipelineStage, cls: type | None = None) -> str:
    """Resolved config (secrets masked), stage type and executor version, hashed."""
    cls = cls or get_executor_class(stage.type)
    data = {"type": stage.type, "version": cls.version,
            "config": stage.fingerprint_config if stage.fingerprint_config is not None else stage.config}
    return hashlib.md5(_FINGERPRINT_TEXT(data).encode()).hexdigest()


def _check_signature(task, values):  # the signature doit looks for on uptodate callables
    pass


class StageUpToDate:
    """The stage's uptodate check: what doit's `config_changed` does (the fingerprint is saved as
    the task value `_config_changed`), plus the manifest the stage wrote, intact, with every file it
    lists unchanged (`manifest.intact`). One callable, not two, and with a precomputed
    `__signature__`: doit runs `inspect.signature` on each uptodate callable at every check, which
    was the largest single cost of a no-op run of 10,000 stages."""

    __signature__ = inspect.signature(_check_signature)

    def __init__(self, fingerprint: str, manifest: str):
        self.fingerprint = fingerprint
        self.manifest = manifest
        self.failed: str | None = None          # which part said no (for `plan`)

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {"_config_changed": self.fingerprint})

    def __call__(self, task, values) -> bool:
        if values.get("_config_changed") != self.fingerprint:
            self.failed = "config"
            return False
        if not self.outputs_intact(values):
            self.failed = "outputs"
            return False
        self.failed = None
        return True

    def outputs_intact(self, values: dict | None = None) -> bool:
        """The manifest and the files it lists as the stage left them, judged from what doit saved
        with the task's values when the stage ran (`run_stage`'s return value), else from the
        manifest alone."""
        values = values or {}
        return mf.intact(self.manifest, values.get("_manifest"), values.get("_files"))


def compile_tasks(pipeline: Pipeline, paths: StatePaths, pipeline_id: str, *, fsync: bool = False,
                  manifests: dict[str, str] | None = None,
                  default_retry: RetryPolicy | None = None) -> list[dict[str, Any]]:
    """One doit task per stage (and a group task per batch stage). A stage that declares no `retry`
    gets `default_retry` (the orchestrator's `enable_auto_retry`/`max_retries`; by default those of
    `OrchestratorConfig()`)."""
    default = vars(default_retry or OrchestratorConfig().default_retry())
    check_output_folders(pipeline, paths.root.parent)      # the state root: every pipeline's state
    manifests = manifests or {s.id: manifest_path(s, paths) for s in pipeline.stages}
    source = str(pipeline.source) if pipeline.source else None
    state_dir = os.path.abspath(paths.root)     # once: the runtime then need not ask for the working folder
    tasks = []
    group = None
    for stage in pipeline.stages:
        if stage.group is not None and stage.group != group:     # the first item of a batch stage
            group = stage.group
            tasks.append(_group_task(group, pipeline.batches[group], stage))
        cls = get_executor_class(stage.type)
        executor = cls(stage.id, stage.config)
        fp = fingerprint(stage, cls)
        declared = [norm(p) for p in executor.output_files()]
        need = stage_need(stage, executor)
        payload = {
            "pipeline_id": pipeline_id, "stage_id": stage.id, "type": stage.type, "version": cls.version,
            "config": stage.config, "fingerprint": fp, "manifest": manifests[stage.id],
            "upstream_manifests": _upstream_manifests(stage, manifests),
            "output_dir": norm(stage.config["output_dir"]) if stage.config.get("output_dir") else None,
            "declared_outputs": declared, "retry": vars(stage.retry) if stage.retry else default,
            "timeout": stage.timeout,
            "resources": stage.resources, "capacity": pipeline.resources, "state_dir": state_dir,
            "need": need, "mem_limit": need.mem_limit_bytes,
            "secrets": stage.secret_values,
            "env": pipeline.env, "source": source, "line": stage.line, "fsync": fsync,
            "packages": executor.packages(),
        }
        tasks.append({
            "name": stage.id,
            "doc": f"[{stage.type}] {stage.description or cls.description}".strip(),
            "actions": [(run_stage, [payload])],
            "file_dep": [manifests[d] for d in stage.depends_on] + [norm(f) for f in executor.input_files()],
            "targets": [manifests[stage.id]],
            "uptodate": [StageUpToDate(fp, manifests[stage.id])],
            "clean": [(clean_stage, [manifests[stage.id], payload["output_dir"], declared])],
            "verbosity": 2,
        })
    for group, keys in pipeline.batches.items():      # batches without items (allow_empty)
        if not keys:
            tasks.append(_group_task(group, keys, None))
    return tasks


def _group_task(group: str, keys: list[str], first: PipelineStage | None) -> dict[str, Any]:
    """The doit group task of a batch stage: runs its items (`doit frames` = every `frames:*`)."""
    what = f"[{first.type}] " if first is not None else ""
    return {"name": group, "doc": f"{what}{len(keys)} item(s)", "actions": None,
            "task_dep": [f"{group}:{key}" for key in keys]}


def _upstream_manifests(stage: PipelineStage, manifests: dict[str, str]) -> dict[str, str]:
    """Upstream manifests by the name the stage's `inputs` use: the stage id, or for the same item
    of an upstream batch its stage id, or `stage:item` for each item gathered (`inputs[stage][item]`)."""
    groups = [d.partition(":")[0] for d in stage.depends_on]
    out = {}
    for dep, group in zip(stage.depends_on, groups):
        same_item = stage.item is not None and dep == f"{group}:{stage.item}" and groups.count(group) == 1
        out[group if same_item else dep] = manifests[dep]
    return out


def doit_task(task: dict[str, Any]) -> Task:
    """A compiled task dict as a doit Task, with doit's marks for groups and their sub-tasks."""
    result = dict_to_task(task)
    if task["actions"] is None:
        result.has_subtask = True
    elif ":" in task["name"]:
        result.subtask_of = task["name"].partition(":")[0]
    return result
