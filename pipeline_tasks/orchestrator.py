"""Python API for running pipelines: PipelineOrchestrator over doit."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .engine.doit_reporter import RunContext, install_sigterm_handler
from .engine.monitor import PipelineProgressMonitor
from .engine.progress import EventTail
from .engine.runtime import run_standalone
from .engine.safety import Guard
from .engine.scheduler import Scheduling
from .engine.session import PipelineSession, doit_main, fewer_gc_passes
from .errors import PipelineError, PipelineNotFoundError
from .models import (
    ExecutionStatus,
    OrchestratorConfig,
    Pipeline,
    PipelineResult,
    PipelineStage,
    PipelineState,
    StageResult,
)
from .spec import dag
from .spec.loader import load_pipeline, load_pipeline_dict
from .spec.registry import ExecutorRegistry
from .state import events as ev
from .state.checkpoint import CheckpointData, CheckpointManager, read_checkpoint
from .state.events import EventBus, latest_run_events
from .state.paths import AbortRun, RunLock, read_record, update_record

EVENT_POLL_INTERVAL = 0.05      # seconds between reads of the run's events for the event bus


class PipelineOrchestrator:
    """Runs pipelines: `execute_pipeline`, `execute_stage`, `resume_from_checkpoint`.

    `executor_registry` is the stage types of this process (type name -> executor class; setting a
    name registers a type); `checkpoint_manager` keeps the checkpoint files under
    `config.checkpoint_dir` (else the state folder); `progress_monitor` tracks the run in progress.
    An `event_bus` passed in gets every event of every run as it happens, also those of stages that
    run in worker processes (unless `config.event_bus_enabled` is False)."""

    def __init__(self, config: OrchestratorConfig | None = None, event_bus: EventBus | None = None):
        self.config = config or OrchestratorConfig()
        self.event_bus = event_bus
        self.executor_registry = ExecutorRegistry()
        self.checkpoint_manager = CheckpointManager(self.checkpoint_root, keep_last=self.config.checkpoint_keep_last)
        self.progress_monitor = PipelineProgressMonitor(self._bus())
        self.follow_events = True       # relay the run's events to the bus and the monitor as they happen
        # this process may hold native threads (a decoder, a thread pool) a forked worker would inherit
        # mid-lock: fork no more workers than the plan can use (the command line's fresh process: False)
        self.cap_workers_by_plan = True

    @property
    def checkpoint_root(self) -> Path:
        return Path(self.config.checkpoint_dir or self.config.state_dir)

    def _bus(self) -> EventBus | None:
        return self.event_bus if self.config.event_bus_enabled else None

    def session(self, pipeline: Pipeline) -> PipelineSession:
        session = PipelineSession.open(pipeline, self.config.state_dir)
        session.default_retry = self.config.default_retry()
        return session

    def workers(self, pipeline: Pipeline) -> int:
        """Worker processes for a run: 1 without parallel execution, else the smaller of
        `max_parallel_stages` and the pipeline's own `max_parallel_stages`, and (`cap_workers_by_plan`)
        no more than its widest group."""
        if not self.config.enable_parallel_execution:
            return 1
        n = min(self.config.max_parallel_stages, pipeline.max_parallel_stages or self.config.max_parallel_stages)
        if self.cap_workers_by_plan:
            deps = {s.id: s.depends_on for s in pipeline.stages}
            n = min(n, max((len(g) for g in dag.generations(pipeline.stage_ids, deps)), default=1))
            if n > 1 and native_threads():
                # a forked worker could inherit a native lock mid-hold and hang (docs/architecture.md)
                logging.getLogger("pipeline_tasks").warning(
                    "running the stages of '%s' one at a time, not %d at once: this process runs threads "
                    "Python did not start (a decoder's, a thread pool's) that forked workers would inherit; "
                    "run the pipeline with the CLI (pipeline-tasks run -n %d) or from a process that has not "
                    "used such libraries yet", pipeline.name, n, n)
                n = 1
        return max(1, n)

    # -- whole pipeline ---------------------------------------------------------------------------
    def execute_pipeline(self, pipeline: Pipeline, resume: bool = False, *, force: bool = False,
                         stages: list[str] | None = None, doit_args: list[str] | None = None) -> PipelineResult:
        """Run the pipeline: stages whose outputs are complete and current are skipped, the others
        run in dependency order. `resume=True` continues from the pipeline's checkpoint, which must
        exist (PipelineNotFoundError otherwise); `force=True` re-executes every stage; `stages`
        runs only those (and what they need)."""
        with fewer_gc_passes():
            return self._execute(pipeline, resume, force, stages, doit_args)

    def _execute(self, pipeline: Pipeline, resume: bool, force: bool, stages: list[str] | None,
                 doit_args: list[str] | None) -> PipelineResult:
        session = self.session(pipeline)
        if resume and not session.paths.checkpoint.exists():
            raise PipelineNotFoundError(f"pipeline '{session.pipeline_id}' has no checkpoint to resume from",
                                        path=session.paths.checkpoint, hint="run it without resume first")
        session.tasks()                     # compile now: spec errors surface here, not inside doit
        scheduling = session.scheduling(self.config.resources)
        scheduling.guard = Guard(pipeline.safety, session.paths, session.pipeline_id,
                                 [str(session.paths.root), *session.output_dirs()],
                                 EventBus(session.paths.events, redact=pipeline.secret_values),
                                 gpu_devices=scheduling.capacity.gpu_devices)
        ctx = session.run_context(show_progress=self.config.show_progress, manage_lock=False,
                                  checkpoint_interval=self.config.checkpoint_interval,
                                  checkpoint_dir=str(self.checkpoint_root),
                                  checkpoint_keep_last=self.config.checkpoint_keep_last)
        n = self.workers(pipeline)
        args = ["run"]
        if n > 1:
            args += ["-n", str(n), "-P", "process"]
        if self.config.continue_on_error:
            args.append("--continue")
        if force:
            args.append("--always-execute")
        args += list(doit_args or []) + list(stages or [])
        return self._run_doit(session, ctx, args, scheduling)

    def _run_doit(self, session: PipelineSession, ctx: RunContext, args: list[str],
                  scheduling: Scheduling) -> PipelineResult:
        pipeline = session.pipeline
        lock = RunLock(session.paths, session.pipeline_id, session.output_dirs()).acquire()
        main_thread = threading.current_thread() is threading.main_thread()   # signals: main thread only
        previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) if main_thread else None
        started = time.time()
        pipeline.state, pipeline.checkpoint_dir = PipelineState.RUNNING, Path(os.path.abspath(session.paths.root))
        self.progress_monitor.start_pipeline(pipeline)
        relay = _EventRelay(session.paths.events, self._bus(), self.progress_monitor)
        try:
            session.paths.cancel_flag.unlink(missing_ok=True)
            session.paths.pause_flag.unlink(missing_ok=True)      # a pause belongs to the run it paused
            session.paths.ensure()
            update_record(session.paths, capacity=scheduling.capacity.amounts)    # for `status`
            if main_thread:
                install_sigterm_handler()
            if self.follow_events:
                relay.start()
            try:
                code = doit_main(session, ctx, durable=self.config.durable, scheduling=scheduling).run(args)
            except AbortRun as stop:        # a state file could not be written: the run cannot go on
                raise stop.error from None
            except KeyboardInterrupt:
                ctx.interrupted = True
                code = 130
                if ctx.state != PipelineState.CANCELLED:      # reporter did not get to finish
                    update_record(session.paths, state=PipelineState.CANCELLED.value, finished_at=time.time())
                    ctx.state = PipelineState.CANCELLED
        finally:
            if self.follow_events:
                relay.stop()
            if previous:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
            session.paths.cancel_flag.unlink(missing_ok=True)
            session.paths.pause_flag.unlink(missing_ok=True)
            lock.release()
        state = ctx.state or (PipelineState.COMPLETED if code == 0 else PipelineState.FAILED)
        if code not in (0, 130) and state == PipelineState.COMPLETED:
            state = PipelineState.FAILED
        error = "; ".join(ctx.failed.values()) or (None if code in (0, 130) else f"doit exited with {code}")
        for stage_id in ctx.up_to_date:
            self.progress_monitor.skip_stage(session.pipeline_id, stage_id)
        self.progress_monitor.finish_pipeline(session.pipeline_id, state)
        results = run_results(session, ctx)
        _apply(pipeline, results, state)
        return PipelineResult(pipeline_id=session.pipeline_id, status=state, total_duration=time.time() - started,
                              stage_results=results, final_outputs=final_outputs(pipeline, results),
                              error_message=error, executed=list(ctx.executed), up_to_date=list(ctx.up_to_date),
                              failed=list(ctx.failed) + list(ctx.blocked), blocked=list(ctx.blocked))

    # -- one stage --------------------------------------------------------------------------------
    def execute_stage(self, stage: PipelineStage, inputs: dict[str, Any]) -> StageResult:
        """Run one stage's executor here, now, on `inputs` (upstream stage id -> its outputs), with
        its retry policy (else the orchestrator's default) and timeout; its events go to the event
        bus. Standalone: no manifest is written and nothing is skipped (to bring a stage of a
        pipeline up to date, `execute_pipeline(pipeline, stages=[stage_id])`). The stage's status,
        outputs, duration and error_message are updated."""
        result = run_standalone(stage.id, stage.type, stage.config, inputs,
                                policy=stage.retry or self.config.default_retry(), timeout=stage.timeout,
                                bus=self._bus())
        stage.status, stage.outputs, stage.duration, stage.error_message = (
            result.status, dict(result.outputs), result.duration, result.error_message)
        return result

    # -- resuming -----------------------------------------------------------------------------------
    def resume_from_checkpoint(self, checkpoint_path: str | os.PathLike) -> Pipeline:
        """The pipeline a checkpoint file belongs to (or of a pipeline id under the state folder),
        loaded again, with the stages the checkpoint lists as complete marked SUCCESS and their
        outputs; run it on with `execute_pipeline(pipeline, resume=True)`."""
        path = Path(checkpoint_path)
        if not path.exists():
            candidate = Path(self.config.state_dir) / str(checkpoint_path) / "checkpoint.json"
            if not candidate.exists():
                raise PipelineNotFoundError(f"no checkpoint file or pipeline id '{checkpoint_path}'",
                                            hint=f"see `pipeline-tasks list` (state dir {self.config.state_dir})")
            path = candidate
        data = read_checkpoint(path)
        pipeline = pipeline_of(data, path)
        done = set(data.completed_stages)
        for stage in pipeline.stages:
            if stage.id in done:
                stage.status, stage.outputs = ExecutionStatus.SUCCESS, dict(data.stage_outputs.get(stage.id) or {})
        pipeline.state = PipelineState(data.pipeline_state) if data.pipeline_state in PipelineState._value2member_map_ \
            else PipelineState.PENDING
        pipeline.checkpoint_dir = Path(data.state_dir) if data.state_dir else None
        return pipeline


def native_threads() -> bool:
    """Whether this process runs threads Python did not start (a decoder's, a thread pool's): forking
    it then is unsafe. Linux tells by /proc/self/task; elsewhere, assume so."""
    try:
        return len(os.listdir("/proc/self/task")) > threading.active_count()
    except OSError:
        return True


def pipeline_of(data: CheckpointData, path: str | os.PathLike, **load: Any) -> Pipeline:
    """The pipeline a checkpoint was written for, loaded from its file (with `load_pipeline`'s
    `load` arguments) or the dict it keeps."""
    if data.source:
        return load_pipeline(data.source, output_root=data.output_root, **load)
    if data.definition:
        return load_pipeline_dict(data.definition, output_root=data.output_root)
    raise PipelineError("the checkpoint names neither its pipeline file nor its definition", path=path)


class _EventRelay:
    """Reads the run's events as they are appended (by this process and by worker processes) and
    hands each to the event bus and the progress monitor, from a thread, until stopped."""

    def __init__(self, events_path: Path, bus: EventBus | None, monitor: PipelineProgressMonitor):
        self.tail = EventTail(events_path)
        self.bus = bus
        self.monitor = monitor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pipeline-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(EVENT_POLL_INTERVAL):
            self.poll()

    def poll(self) -> None:
        for event in self.tail.read():
            self.monitor.observe(event)
            if self.bus is not None:
                self.bus.dispatch(event)


def run_results(session: PipelineSession, ctx: RunContext) -> list[StageResult]:
    """A StageResult per stage, in the pipeline's order, from the run itself: status from what
    doit did (run: SUCCESS, up to date: SKIPPED, failed: FAILED or CANCELLED, not reached: PENDING),
    timing, attempts, metrics and errors from the run's events, outputs from its last checkpoint."""
    events: dict[str, dict[str, Any]] = {}
    for event in latest_run_events(session.paths.events, read_record(session.paths),
                                   (ev.STAGE_COMPLETED, ev.STAGE_FAILED)):
        if event["type"] in (ev.STAGE_COMPLETED, ev.STAGE_FAILED) and isinstance(event.get("stage_id"), str):
            events[event["stage_id"]] = event
    executed, skipped = set(ctx.executed), set(ctx.up_to_date)
    ran = executed | set(ctx.failed)           # once: a union per stage is quadratic in the stages
    written = [(path, listed) for path, listed in ctx.checkpoints]
    results = []
    for stage in session.pipeline.stages:
        event = events.get(stage.id, {})
        if stage.id in executed:
            status = ExecutionStatus.SUCCESS
        elif stage.id in skipped:
            status = ExecutionStatus.SKIPPED
        elif stage.id in ctx.failed:
            status = ExecutionStatus.CANCELLED if event.get("cancelled") else ExecutionStatus.FAILED
        else:
            status = ExecutionStatus.PENDING
        done = status in (ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED)
        results.append(StageResult(
            stage_id=stage.id, status=status, duration=event.get("duration") if stage.id in ran else None,
            outputs=dict(ctx.stage_outputs.get(stage.id) or {}) if done else {},
            metrics=dict(event.get("metrics") or {}) if status == ExecutionStatus.SUCCESS else {},
            error_message=(event.get("error") or ctx.failed.get(stage.id)) if stage.id in ctx.failed else None,
            checkpoints=[path for path, listed in written if stage.id in listed] if done else [],
            started_at=event.get("started"), finished_at=event.get("finished"),
            attempts=event.get("attempts") or (0 if status == ExecutionStatus.PENDING else 1)))
    return results


def status_results(session: PipelineSession) -> list[StageResult]:
    """A StageResult per stage from the pipeline's status (`engine.status.pipeline_status`: outputs
    from manifests, timing and errors from the latest run), for a run made by another process."""
    # imported here: a run needs none of it
    from .engine.status import pipeline_status
    results = []
    for st in pipeline_status(session).stages:
        done = st.state.done
        results.append(StageResult(
            stage_id=st.stage_id, status=st.state.execution_status, duration=st.duration,
            outputs=st.outputs if done else {}, metrics=st.metrics if done else {},
            error_message=None if done else st.error, started_at=st.started, finished_at=st.finished,
            attempts=st.attempts or 0))
    return results


def final_outputs(pipeline: Pipeline, results: list[StageResult]) -> dict[str, dict[str, Any]]:
    """Outputs of the stages no other stage depends on (the pipeline's products), per stage id."""
    needed = {d for s in pipeline.stages for d in s.depends_on}
    return {r.stage_id: r.outputs for r in results
            if r.stage_id not in needed and r.status in (ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED)}


def _apply(pipeline: Pipeline, results: list[StageResult], state: PipelineState) -> None:
    """The run's outcome written onto the pipeline object (its state, each stage's status …)."""
    pipeline.state = state
    by_id = {r.stage_id: r for r in results}
    for stage in pipeline.stages:
        result = by_id.get(stage.id)
        if result is not None:
            stage.status, stage.outputs, stage.duration, stage.error_message = (
                result.status, dict(result.outputs), result.duration, result.error_message)
