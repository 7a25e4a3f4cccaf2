"""What the root `dodo.py` needs so plain `doit` runs a pipeline exactly like the CLI does:
same tasks, same state directory, the durable backend, our reporter (lock, events, checkpoint)."""
from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from ..errors import PipelineError
from ..spec.loader import load_pipeline
from ..state.paths import AbortRun
from .durable_backend import check_database
from .items import record_items
from .session import GC_THRESHOLDS, PipelineSession


def _durable_backend_registered() -> bool:
    """doit registers backend plugins from pyproject.toml / doit.cfg in the directory it starts in."""
    for name in ("pyproject.toml", "doit.cfg"):
        try:
            if "pipeline_tasks.engine.durable_backend" in open(name, encoding="utf-8").read():
                return True
        except OSError:
            continue
    return False


def _one_line_errors() -> None:
    """A run stopped by a state file that cannot be written (`AbortRun`) ends doit's process with
    the error's one line, not a traceback."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, AbortRun):
            print(f"error: {value.error}", file=sys.stderr)
        else:
            previous(kind, value, tb)
    sys.excepthook = hook


def dodo_namespace(config_path: str) -> tuple[dict[str, Any], Callable]:
    """(DOIT_CONFIG, task generator) for the pipeline in `config_path`; a spec error exits with
    its one-line message instead of a traceback. Runs in doit's own process, which exits after
    the command: the same garbage-collector tuning as the CLI's (see `cli.main`)."""
    gc.set_threshold(*GC_THRESHOLDS)
    _one_line_errors()
    try:
        pipeline = load_pipeline(config_path)
        for stage_id, why in pipeline.skipped.items():
            print(f"notice: stage '{stage_id}' is left out: {why}", file=sys.stderr)
        session = PipelineSession.open(pipeline)
        tasks = session.tasks()
        check_database(session.paths.db)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    session.paths.ensure()              # doit opens its database before any task runs
    if session.pipeline.batches:
        record_items(session)
    ctx = session.run_context(show_progress=sys.stderr.isatty(), freeze_heap_at_end=True)
    durable = _durable_backend_registered()
    if not durable:
        print("warning: doit has no 'durable' backend here (it is registered in the repository's "
              "pyproject.toml, read from the current directory); using doit's plain sqlite3 backend, "
              "which loses the run's progress on kill -9", file=sys.stderr)
    config = session.doit_config(ctx, durable=durable)
    config["default_tasks"] = [t["name"] for t in tasks if ":" not in t["name"]]
    if session.pipeline.max_parallel_stages:
        config.update(num_process=session.pipeline.max_parallel_stages, par_type="process")

    def task_stages():
        for task in tasks:
            group, _, item = task["name"].partition(":")
            if task["actions"] is None:         # a batch stage: doit makes the group of its sub-tasks
                yield {"basename": group, "name": None, "doc": task["doc"]}
            else:
                yield {"basename": group, **({"name": item} if item else {}),
                       **{k: v for k, v in task.items() if k != "name"}}
    task_stages.__doc__ = f"stages of {config_path}"
    return config, task_stages
