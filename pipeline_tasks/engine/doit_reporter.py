"""The doit reporter of a pipeline run (main process): pipeline-level events, the run record,
checkpoint.json, concise failure messages and the progress display.

One `RunContext` describes the run; `make_reporter(ctx)` returns a reporter class for doit's
`reporter` setting (doit instantiates it itself), used by the CLI, the API and the root dodo.py.
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit.exceptions import UnmetDependency
from doit.reporter import ConsoleReporter

from ..errors import PipelineError
from ..models import OrchestratorConfig, PipelineState
from ..state import events as ev
from ..state.checkpoint import CheckpointData, CheckpointManager, CheckpointWriter, read_checkpoint
from ..state.events import EventBus
from ..state.paths import AbortRun, RunLock, StatePaths, state_write_error, update_record
from . import lockfile
from . import manifest as mf
from .items import ItemCounts
from .progress import ProgressDisplay


@dataclass
class RunContext:
    pipeline_id: str
    pipeline_name: str
    paths: StatePaths
    stage_order: list[str]
    manifests: dict[str, str]
    output_dirs: list[str] = field(default_factory=list)     # locked for the run (`RunLock`)
    source: str | None = None
    secrets: list[str] = field(default_factory=list)
    show_progress: bool = True
    manage_lock: bool = True              # False when the caller (CLI/API) holds the lock already
    checkpoint_interval: float = OrchestratorConfig.checkpoint_interval   # seconds between checkpoint files
    checkpoint_dir: str | None = None     # where checkpoint files go (None: the state root)
    checkpoint_keep_last: int = OrchestratorConfig.checkpoint_keep_last
    definition: dict[str, Any] | None = None      # a pipeline without a file: the dict it came from
    output_root: str | None = None
    quiet: bool = False
    freeze_heap_at_end: bool = False      # the process exits after the run (plain `doit`): skip its final GC
    lock_file: str | None = None          # the pipeline's lock file, rewritten at the end of the run
    lock_specs: list[dict[str, Any]] = field(default_factory=list)      # `lockfile.write`'s stage specs
    # filled in during the run
    executed: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)    # never ran: a stage it needs failed (its names)
    state: PipelineState | None = None
    started: float | None = None
    finished: float | None = None
    interrupted: bool = False
    checkpoints: list[tuple[Path, frozenset[str]]] = field(default_factory=list)   # files written, what they list
    stage_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)   # of the completed stages, at the end

    @property
    def completed(self) -> list[str]:
        done = set(self.executed) | set(self.up_to_date)
        return [s for s in self.stage_order if s in done]


class Interrupt:
    """Set when this process got SIGTERM or SIGINT during a run."""
    received: bool = False


def install_sigterm_handler() -> None:
    """SIGTERM (`pipeline-tasks cancel`, `kill`) and Ctrl-C become KeyboardInterrupt, so doit stops
    the way it does on Ctrl-C (workers terminated, database closed), and the run is marked
    cancelled."""
    Interrupt.received = False

    def handler(signum, frame):
        Interrupt.received = True
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def _state_writes() -> Iterator[None]:
    """Inside doit's reporter hooks: a state file that cannot be written stops the run with its
    PipelineError (`AbortRun` gets past doit's catch-all, which would print a traceback)."""
    try:
        yield
    except PipelineError as exc:
        raise AbortRun(exc) from None
    except OSError as exc:
        raise AbortRun(state_write_error(exc.filename or "the state directory", "a state file", exc)) from None


class PipelineReporter(ConsoleReporter):
    """doit's reporter of a pipeline run; `make_reporter` binds it to one `RunContext`."""

    desc = "pipeline_tasks reporter"
    run_context: RunContext

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.ctx = ctx = self.run_context
        self.bus = EventBus(ctx.paths.events, redact=ctx.secrets)
        self.checkpoints = CheckpointManager(ctx.checkpoint_dir or ctx.paths.root.parent,
                                             keep_last=ctx.checkpoint_keep_last)
        self.writer = CheckpointWriter(self.checkpoints, ctx.paths.checkpoint, on_written=self._written)
        self.outputs: dict[str, dict[str, Any]] = {}
        self._outputs_lock = threading.Lock()        # the writer thread fills `outputs` too
        self._previous_outputs: dict[str, dict[str, Any]] = {}
        self._next_checkpoint = 0.0
        self._last_write = 0.0
        self._lock: RunLock | None = None
        self._refused = False
        self._monitor: ProgressDisplay | None = None
        self._items: ItemCounts | None = None

    def write(self, text):
        """A line of the run; above the progress bars when both are on one terminal, so neither
        draws over the other."""
        monitor = self._monitor
        if monitor is not None and monitor.live and getattr(self.outstream, "isatty", lambda: False)():
            monitor.print_above(text)
        else:
            super().write(text)

    # -- run start / end ------------------------------------------------------------------
    def initialize(self, tasks, selected_tasks):
        # the state folders exist already: doit_main / dodo_namespace made them before doit opened its DB
        ctx = self.ctx
        if ctx.manage_lock:
            self._take_lock()
        ctx.started = time.time()
        ctx.state = PipelineState.RUNNING
        with _state_writes():
            offset = ctx.paths.events.stat().st_size if ctx.paths.events.exists() else 0
            update_record(ctx.paths, pipeline_id=ctx.pipeline_id, name=ctx.pipeline_name, source=ctx.source,
                          project_dir=os.getcwd(),
                          output_root=ctx.output_root,
                          state=PipelineState.RUNNING.value, started_at=ctx.started, finished_at=None,
                          events_offset=offset, stage_count=len(ctx.stage_order))
            self.bus.emit(ev.PIPELINE_STARTED, pipeline_id=ctx.pipeline_id, name=ctx.pipeline_name,
                          stages=len(ctx.stage_order), selected=len(selected_tasks or ()))
        if any(task.subtask_of for task in tasks.values()):
            self._items = ItemCounts(tasks.values())
        if ctx.show_progress:
            self._monitor = ProgressDisplay(ctx.paths.events).start()
        # outputs of stages that will turn out up to date: from the last checkpoint, not by
        # reading every manifest again
        try:
            previous = read_checkpoint(ctx.paths.checkpoint)
            self._previous_outputs = previous.stage_outputs if previous.pipeline_id == ctx.pipeline_id else {}
        except PipelineError:
            self._previous_outputs = {}

    def _take_lock(self) -> None:
        """Plain `doit` (no CLI or API around it to hold the lock): take it here."""
        ctx = self.ctx
        try:
            self._lock = RunLock(ctx.paths, ctx.pipeline_id, ctx.output_dirs).acquire()
        except PipelineError as exc:
            sys.stderr.write(f"error: {exc}\n")
            self._refused = True
            raise SystemExit(exc.exit_code) from None
        install_sigterm_handler()
        ctx.paths.cancel_flag.unlink(missing_ok=True)

    def complete_run(self):
        if self._refused:
            return
        try:
            if self._monitor is not None:
                self._monitor.stop()
            with _state_writes():
                self._finish()
        finally:
            if self._lock is not None:
                self._lock.release()
            if self.ctx.freeze_heap_at_end:
                gc.freeze()

    def _finish(self) -> None:
        ctx = self.ctx
        ctx.finished = time.time()
        if ctx.interrupted or Interrupt.received or ctx.paths.cancel_flag.exists():
            ctx.state = PipelineState.CANCELLED
        elif self.failures or self.runtime_errors or ctx.failed or ctx.blocked:
            ctx.state = PipelineState.FAILED
        else:
            ctx.state = PipelineState.COMPLETED
        self._write_checkpoint(force=True)
        self.writer.flush()
        with self._outputs_lock:
            ctx.stage_outputs = dict(self.outputs)
        if ctx.lock_file:
            try:
                lockfile.write(ctx.lock_file, ctx.pipeline_name, ctx.lock_specs, ctx.manifests, ctx.executed,
                               ctx.up_to_date, lockfile.InputDigests(ctx.paths.root / "input-digests.json"))
            except OSError as exc:          # the outputs are made: say so, do not fail the run for it
                self.write(f"warning: cannot write the lock file {ctx.lock_file}: {exc.strerror or exc}\n")
        update_record(ctx.paths, state=ctx.state.value, finished_at=ctx.finished,
                      executed=len(ctx.executed), up_to_date=len(ctx.up_to_date))
        event = {PipelineState.COMPLETED: ev.PIPELINE_COMPLETED, PipelineState.FAILED: ev.PIPELINE_FAILED,
                 PipelineState.CANCELLED: ev.PIPELINE_CANCELLED}[ctx.state]
        took = ctx.finished - (ctx.started or ctx.finished)
        extra = {}
        if ctx.state == PipelineState.FAILED:
            extra["error"] = "; ".join(ctx.failed.values()) or "; ".join(map(str, self.runtime_errors)) or "failed"
        self.bus.emit(event, pipeline_id=ctx.pipeline_id, name=ctx.pipeline_name, executed=len(ctx.executed),
                      up_to_date=len(ctx.up_to_date), failed=sorted(ctx.failed), blocked=sorted(ctx.blocked),
                      duration=round(took, 3), **extra)
        for msg in self.runtime_errors:
            self.write(f"ERROR: {msg}\n")
        if not ctx.quiet:
            for stage_id in ctx.completed:      # what the stages said of their outputs' quality
                summary = self.outputs.get(stage_id, {}).get("quality_summary")
                if summary:
                    self.write(f"quality: {stage_id}: {summary}\n")
            blocked = f", {len(ctx.blocked)} blocked" if ctx.blocked else ""
            self.write(f"{ctx.state.value}: {len(ctx.executed)} stage(s) run, {len(ctx.up_to_date)} up to date, "
                       f"{len(ctx.failed)} failed{blocked} ({took:.2f} s)\n")

    # -- per task -----------------------------------------------------------------------------
    def execute_task(self, task):
        if task.has_subtask:         # a batch stage's group task: its items report
            return
        if not self.ctx.quiet:
            self.write(f".  {task.name}\n")

    def skip_uptodate(self, task):
        if task.has_subtask:
            return
        self.ctx.up_to_date.append(task.name)
        self._count_item(task.name, failed=False)
        if task.name in self._previous_outputs:
            with self._outputs_lock:
                self.outputs[task.name] = self._previous_outputs[task.name]
        if not self.ctx.quiet:
            self.write(f"-- {task.name} (up to date)\n")
        self._write_checkpoint()

    def add_success(self, task):
        if task.has_subtask:
            return
        self.ctx.executed.append(task.name)
        self._count_item(task.name, failed=False)
        with self._outputs_lock:
            self.outputs.pop(task.name, None)
        self._write_checkpoint()

    def add_failure(self, task, fail):
        if task.has_subtask:
            return
        if isinstance(fail, UnmetDependency):      # never ran: a stage it needs failed (or is blocked)
            self.ctx.blocked[task.name] = str(fail.message)
            self.write(f"blocked {task.name}: needs {fail.message}, which did not complete\n")
            self._count_item(task.name, failed=True)
            return
        message = fail.get_msg().strip() if hasattr(fail, "get_msg") else str(fail)
        # TaskFailed from our runtime already says what is wrong; other doit errors keep their text
        self.ctx.failed[task.name] = message.splitlines()[-1] if message else type(fail).__name__
        self.write(f"FAILED {task.name}: {self.ctx.failed[task.name]}\n")
        self._count_item(task.name, failed=True)
        self._write_checkpoint(force=True)

    def _count_item(self, name: str, failed: bool) -> None:
        event = self._items.update(name, failed, time.monotonic()) if self._items is not None else None
        if event is not None:
            with _state_writes():
                self.bus.emit(ev.STAGE_ITEMS, pipeline_id=self.ctx.pipeline_id, **event)

    def _write_checkpoint(self, force: bool = False):
        """Hand a checkpoint to the writer thread, at most every `checkpoint_interval` seconds (and
        no sooner than 20 times as long as the last one took to write) unless `force`d."""
        now = time.monotonic()
        if not force and now < self._next_checkpoint:
            return
        ctx = self.ctx
        completed = ctx.completed
        state = ctx.state.value if ctx.state else PipelineState.RUNNING.value
        with _state_writes():
            self.writer.submit(lambda: self._snapshot(completed, state))
        self._next_checkpoint = now + max(ctx.checkpoint_interval, 20 * self._last_write)

    def _snapshot(self, completed: list[str], state: str) -> CheckpointData:
        """The checkpoint of these stages (in the writer thread: manifests are read there)."""
        started = time.monotonic()
        ctx = self.ctx
        with self._outputs_lock:
            outputs = dict(self.outputs)
        for stage_id in completed:
            if stage_id not in outputs:
                data = mf.read(ctx.manifests[stage_id])
                outputs[stage_id] = (data or {}).get("outputs", {})
        with self._outputs_lock:
            self.outputs.update(outputs)
        done = set(completed)
        self._last_write = time.monotonic() - started
        return CheckpointData(
            pipeline_id=ctx.pipeline_id, completed_stages=completed,
            stage_outputs={s: outputs[s] for s in completed}, pipeline_state=state,
            next_stage=next((s for s in ctx.stage_order if s not in done), None), source=ctx.source,
            definition=ctx.definition, output_root=ctx.output_root, state_dir=str(ctx.paths.root))

    def _written(self, data: CheckpointData, path: Path) -> None:
        self.ctx.checkpoints.append((path, frozenset(data.completed_stages)))


def make_reporter(ctx: RunContext) -> type:
    """A reporter class for doit's `reporter` setting (doit instantiates it itself), bound to `ctx`."""
    return type("PipelineReporter", (PipelineReporter,), {"run_context": ctx})
