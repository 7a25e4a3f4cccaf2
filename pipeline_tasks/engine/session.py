"""doit wiring: a TaskLoader2 that serves a compiled pipeline, and DoitMain with our plugins.

Every doit command works on stages through this: run, list, info, forget, clean, ignore, strace.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import doit.plugin
from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain

from ..models import Pipeline, RetryPolicy
from ..spec import dag
from ..spec.registry import get_executor_class
from ..state.paths import StatePaths
from .capacity import Need, capacity_for, check_fits, fit_type_defaults
from .compile import compile_tasks, doit_task, manifest_path
from .doit_reporter import RunContext, make_reporter
from .durable_backend import check_database
from .items import record_items
from .lockfile import lock_path
from .manifest import ManifestChecker
from .scheduler import Scheduling

BACKEND_PLUGIN = "pipeline_tasks.engine.durable_backend:DurableSqliteDB"
RUN_COMMAND = "pipeline_tasks.engine.scheduler:ScheduledRun"

# A run of 10,000 stages holds millions of long-lived objects (tasks, configs, doit's graph): with
# Python's default thresholds (700, 10, 10) the cyclic GC rescans them over and over, more than
# half of a no-op run's CPU. Every entry point runs doit with these instead.
GC_THRESHOLDS = (100_000, 50, 100)


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """`GC_THRESHOLDS` for the length of a run, then the caller's own again (Python API)."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@functools.lru_cache(maxsize=1)
def _installed_entry_points() -> importlib.metadata.EntryPoints:
    return importlib.metadata.entry_points()


def doit_plugins(group: str) -> importlib.metadata.EntryPoints:
    """doit's look-up of its plugins (`doit.plugin.entry_points_impl()(group=...)`), answered from
    one scan of the installed distributions a process: doit scans them all once for each kind of
    plugin (commands, backends, reporters), ~7 ms of CPU each with a few hundred packages."""
    return _installed_entry_points().select(group=group)


@dataclass
class PipelineSession:
    """A loaded pipeline plus where its state lives: what every entry point works with."""
    pipeline: Pipeline
    pipeline_id: str
    paths: StatePaths
    default_retry: RetryPolicy | None = None     # for stages that declare no retry (None: OrchestratorConfig's)
    _tasks: dict[bool, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)
    _manifests: dict[str, str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, pipeline: Pipeline, state_root: str | os.PathLike | None = None) -> PipelineSession:
        pid = pipeline.id
        root = pipeline.state_dir if (pipeline.state_dir and state_root is None) else (state_root or ".pipeline")
        return cls(pipeline, pid, StatePaths(os.path.join(str(root), pid)))

    def stage_order(self) -> list[str]:
        ids = self.pipeline.stage_ids
        deps = {s.id: s.depends_on for s in self.pipeline.stages}
        return dag.topological_order(ids, deps)

    def output_dirs(self) -> list[str]:
        """The stages' output folders: what a run of this pipeline locks (`state.paths.RunLock`)."""
        return [str(s.config["output_dir"]) for s in self.pipeline.stages if s.config.get("output_dir")]

    def manifests(self) -> dict[str, str]:
        if self._manifests is None:
            self._manifests = {s.id: manifest_path(s, self.paths) for s in self.pipeline.stages}
        return self._manifests

    def run_context(self, **kwargs: Any) -> RunContext:
        source = str(self.pipeline.source) if self.pipeline.source else None
        return RunContext(pipeline_id=self.pipeline_id, pipeline_name=self.pipeline.name, paths=self.paths,
                          stage_order=self.stage_order(), manifests=self.manifests(), output_dirs=self.output_dirs(),
                          source=source, secrets=self.pipeline.secret_values,
                          definition=self.pipeline.definition, output_root=self.pipeline.output_root,
                          lock_file=lock_path(source) if source else None,
                          lock_specs=self.lock_specs() if source else [], **kwargs)

    def lock_specs(self) -> list[dict[str, Any]]:
        """What the lock file records of each stage, from the compiled tasks (`lockfile.write`)."""
        manifests = self.manifests()
        specs = []
        tasks = {t["name"]: t for t in self.tasks()}
        for stage in self.pipeline.stages:
            task = tasks[stage.id]
            payload = task["actions"][0][1][0]
            upstream = {manifests[d] for d in stage.depends_on}
            specs.append({"id": stage.id, "type": stage.type, "version": payload["version"],
                          "fingerprint": payload["fingerprint"],
                          "inputs": sorted(p for p in task["file_dep"] if p not in upstream),
                          "upstream": list(stage.depends_on),
                          "reproducible": get_executor_class(stage.type).reproducible,
                          "packages": payload["packages"]})
        return specs

    def doit_config(self, ctx: RunContext | None = None, durable: bool = True) -> dict[str, Any]:
        config: dict[str, Any] = {"dep_file": str(self.paths.db), "backend": "durable" if durable else "sqlite3",
                                  "verbosity": 2, "check_file_uptodate": ManifestChecker,
                                  "sort": "definition"}      # `doit list`: pipeline order, items in item order
        if ctx is not None:
            config["reporter"] = make_reporter(ctx)
        return config

    def tasks(self, fsync: bool = False) -> list[dict[str, Any]]:
        """The compiled doit task dicts (compiled once per session and fsync setting)."""
        if fsync not in self._tasks:
            self._tasks[fsync] = compile_tasks(self.pipeline, self.paths, self.pipeline_id, fsync=fsync,
                                               manifests=self.manifests(), default_retry=self.default_retry)
        return self._tasks[fsync]

    def needs(self) -> dict[str, Need]:
        """What each stage holds while it runs (`engine.capacity.stage_need`), by stage id."""
        return {t["name"]: t["actions"][0][1][0]["need"] for t in self.tasks() if t["actions"]}

    def scheduling(self, declared: dict[str, float] | None = None, guard=None) -> Scheduling:
        """The capacity of a run (`declared` from the command line) checked against every stage's
        need: a stage that could never start is an error now, not a wait. A `cpu` need that is the
        stage type's default is lowered to the capacity's cores instead."""
        needs = self.needs()
        capacity = capacity_for(self.pipeline, needs, declared)
        needs = fit_type_defaults(needs, capacity)
        check_fits(self.pipeline, needs, capacity)
        return Scheduling(capacity, needs, guard=guard)


class PipelineLoader(TaskLoader2):
    def __init__(self, session: PipelineSession, config: dict[str, Any], fsync: bool = False,
                 scheduling: Scheduling | None = None):
        super().__init__()
        self.session = session
        self.scheduling = scheduling  # read by `scheduler.ScheduledRun`
        self.settings = config        # not `config`: DoitMain sets loader.config itself
        self.fsync = fsync

    def setup(self, opt_values):
        pass

    def load_doit_config(self):
        return dict(self.settings)

    def load_tasks(self, cmd, pos_args):
        return [doit_task(t) for t in self.session.tasks(fsync=self.fsync)]


def doit_main(session: PipelineSession, ctx: RunContext | None = None, durable: bool = True,
              fsync: bool = False, scheduling: Scheduling | None = None) -> DoitMain:
    session.paths.ensure()
    if session.pipeline.batches:
        record_items(session)           # so items that leave the pipeline later show up as orphans
    check_database(session.paths.db)
    doit.plugin.entry_points_impl = lambda: doit_plugins
    loader = PipelineLoader(session, session.doit_config(ctx, durable=durable), fsync=fsync, scheduling=scheduling)
    extra = {"GLOBAL": {"backend": "durable" if durable else "sqlite3", "dep_file": str(session.paths.db)},
             "BACKEND": {"durable": BACKEND_PLUGIN}, "COMMAND": {"run": RUN_COMMAND}}
    return DoitMain(loader, config_filenames=(), extra_config=extra)
