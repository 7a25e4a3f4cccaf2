"""Python API for running pipelines: PipelineOrchestrator over doit."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from .engine.doit_reporter import RunContext, install_sigterm_handler
from .engine.safety import Guard
from .engine.scheduler import Scheduling
from .engine.session import PipelineSession, doit_main, fewer_gc_passes
from .engine.status import pipeline_status
from .errors import PipelineError, PipelineNotFoundError, StageExecutionError
from .models import OrchestratorConfig, Pipeline, PipelineResult, PipelineState, StageResult
from .spec.loader import load_pipeline
from .state.checkpoint import CheckpointManager
from .state.events import EventBus
from .state.paths import AbortRun, RunLock, update_record


class PipelineOrchestrator:
    def __init__(self, config: OrchestratorConfig | None = None):
        self.config = config or OrchestratorConfig()

    def session(self, pipeline: Pipeline) -> PipelineSession:
        return PipelineSession.open(pipeline, self.config.state_dir)

    # -- whole pipeline ---------------------------------------------------------------------------
    def execute_pipeline(self, pipeline: Pipeline, resume: bool = True, *, stages: list[str] | None = None,
                         doit_args: list[str] | None = None) -> PipelineResult:
        """Run the pipeline. With `resume=True` (default) stages that are up to date are skipped;
        `resume=False` re-executes every stage."""
        with fewer_gc_passes():
            return self._execute(pipeline, resume, stages, doit_args)

    def _execute(self, pipeline: Pipeline, resume: bool, stages: list[str] | None,
                 doit_args: list[str] | None) -> PipelineResult:
        session = self.session(pipeline)
        session.tasks()                     # compile now: spec errors surface here, not inside doit
        scheduling = session.scheduling(self.config.resources)
        scheduling.guard = Guard(pipeline.safety, session.paths, session.pipeline_id,
                                 [str(session.paths.root), *session.output_dirs()],
                                 EventBus(session.paths.events, redact=pipeline.secret_values),
                                 gpu_devices=scheduling.capacity.gpu_devices)
        ctx = session.run_context(show_progress=self.config.show_progress, manage_lock=False)
        n = self.config.max_parallel_stages or pipeline.max_parallel_stages or 1
        args = ["run"]
        if n > 1:
            args += ["-n", str(n), "-P", "process"]
        if self.config.continue_on_error:
            args.append("--continue")
        if not resume:
            args.append("--always-execute")
        args += list(doit_args or []) + list(stages or [])
        return self._run_doit(session, ctx, args, scheduling)

    def _run_doit(self, session: PipelineSession, ctx: RunContext, args: list[str],
                  scheduling: Scheduling) -> PipelineResult:
        lock = RunLock(session.paths, session.pipeline_id, session.output_dirs()).acquire()
        main_thread = threading.current_thread() is threading.main_thread()   # signals: main thread only
        previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) if main_thread else None
        started = time.time()
        try:
            session.paths.cancel_flag.unlink(missing_ok=True)
            session.paths.pause_flag.unlink(missing_ok=True)      # a pause belongs to the run it paused
            session.paths.ensure()
            update_record(session.paths, capacity=scheduling.capacity.amounts)    # for `status`
            if main_thread:
                install_sigterm_handler()
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
        return PipelineResult(pipeline_id=session.pipeline_id, state=state, executed=list(ctx.executed),
                              up_to_date=list(ctx.up_to_date), failed=list(ctx.failed) + list(ctx.blocked),
                              blocked=list(ctx.blocked), error=error,
                              duration=time.time() - started,
                              collect=lambda: stage_results(session))

    # -- one stage --------------------------------------------------------------------------------
    def execute_stage(self, pipeline: Pipeline, stage_id: str, *, force: bool = False) -> StageResult:
        """Bring one stage up to date (its stale upstream stages run first); its StageResult."""
        pipeline.stage(stage_id)            # KeyError for an unknown id
        result = self.execute_pipeline(pipeline, resume=True, stages=[stage_id],
                                       doit_args=["--always-execute"] if force else None)
        stage = result.stage_results.get(stage_id)
        if stage is None:
            raise StageExecutionError(result.error or "stage did not run", stage=stage_id)
        return stage

    def resume_from_checkpoint(self, checkpoint: str | os.PathLike) -> PipelineResult:
        """Continue a pipeline from its checkpoint file (or a pipeline id under the state dir)."""
        path = Path(checkpoint)
        if not path.exists():
            candidate = Path(self.config.state_dir) / str(checkpoint) / "checkpoint.json"
            if not candidate.exists():
                raise PipelineNotFoundError(f"no checkpoint file or pipeline id '{checkpoint}'",
                                            hint=f"see `pipeline-tasks list` (state dir {self.config.state_dir})")
            path = candidate
        data = CheckpointManager(path.parent).load(path)
        if not data.source:
            raise PipelineError("the checkpoint does not name its pipeline file", path=path)
        return self.execute_pipeline(load_pipeline(data.source), resume=True)


def stage_results(session: PipelineSession) -> dict[str, StageResult]:
    """StageResult per stage, from the pipeline's status (`engine.status.pipeline_status`: the
    state every entry point shows; outputs from manifests, timing and errors from the latest run)."""
    results = {}
    for st in pipeline_status(session).stages:
        done = st.state.done
        results[st.stage_id] = StageResult(
            stage_id=st.stage_id, status=st.state.execution_status, outputs=st.outputs if done else {},
            metrics=st.metrics if done else {}, error=None if done else st.error, started_at=st.started,
            finished_at=st.finished, attempts=st.attempts or 0)
    return results
