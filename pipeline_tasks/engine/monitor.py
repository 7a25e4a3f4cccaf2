"""PipelineProgressMonitor: what is known of running pipelines, in memory, and their events.

The orchestrator feeds it the run's events as they happen (`observe`), from whichever process runs
a stage; it can also be driven by hand (`start_pipeline`, `update_stage_progress`, `complete_stage`).
`get_pipeline_status` answers with progress, the current stage, stage durations, an ETA, the
throughput and the resource tokens in use.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineNotFoundError
from ..models import ExecutionStatus, Pipeline, PipelineState, StageResult
from ..state import events as ev
from ..state.events import EventBus

DONE = (ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED)
_STAGE_EVENTS = {ev.STAGE_STARTED, ev.STAGE_COMPLETED, ev.STAGE_FAILED, ev.STAGE_PROGRESS, ev.STAGE_RETRY}


@dataclass
class _Stage:
    stage_id: str
    expected: float | None = None            # seconds, before it runs: its last duration or its estimate
    resources: dict[str, float] = field(default_factory=dict)
    status: ExecutionStatus = ExecutionStatus.PENDING
    progress: float = 0.0                    # 0.0 .. 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    duration: float | None = None
    items: float = 0.0                       # items processed (progress events' `done`, a result's `items`)
    estimate_from: Any = field(default=None, repr=False)    # the stage whose executor gives `expected`

    def expected_seconds(self) -> float | None:
        """`expected`, asking the executor for its estimate the first time (an ETA is asked for
        far less often than a run of thousands of stages starts)."""
        if self.estimate_from is not None:
            from .status import estimate_duration  # the registry and executors: only when asked
            self.expected, self.estimate_from = estimate_duration(self.estimate_from), None
        return self.expected


@dataclass
class _Run:
    pipeline_id: str
    name: str
    stages: dict[str, _Stage]
    capacity: dict[str, float]
    started: float = field(default_factory=time.time)
    finished: float | None = None
    state: PipelineState = PipelineState.RUNNING


class PipelineProgressMonitor:
    """Progress of pipelines: per stage a fraction done (0.0 to 1.0), metrics, status and duration.

    `emit_event(type, data)` publishes on `event_bus` (when one is set) and returns the event."""

    def __init__(self, event_bus: EventBus | None = None):
        self.event_bus = event_bus
        self._runs: dict[str, _Run] = {}
        self._latest: str | None = None          # the pipeline the stage-level calls refer to
        self._lock = threading.Lock()

    # -- the documented calls -----------------------------------------------------------------------
    def start_pipeline(self, pipeline: Pipeline, expected: dict[str, float] | None = None) -> None:
        """Track a run of `pipeline` from now. `expected`: seconds per stage known from earlier
        runs; a stage without is expected to take its executor's `estimate_duration()`."""
        expected = expected or {}
        stages = {}
        for stage in pipeline.stages:
            if stage.id in expected:
                stages[stage.id] = _Stage(stage.id, expected[stage.id], dict(stage.resources))
            else:
                stages[stage.id] = _Stage(stage.id, None, dict(stage.resources), estimate_from=stage)
        with self._lock:
            self._runs[pipeline.id] = _Run(pipeline.id, pipeline.name, stages, dict(pipeline.resources))
            self._latest = pipeline.id

    def update_stage_progress(self, stage_id: str, progress: float, metrics: dict[str, Any] | None = None) -> None:
        """Stage `stage_id` is `progress` done (a fraction, 0.0 to 1.0) and running; `metrics` are
        merged into what is known of it (a `done` count of items feeds the throughput)."""
        with self._lock:
            stage = self._stage(stage_id)
            if stage.status == ExecutionStatus.PENDING or stage.started is None:
                stage.status, stage.started = ExecutionStatus.RUNNING, stage.started or time.time()
            stage.progress = min(max(float(progress), 0.0), 1.0)
            stage.metrics.update(metrics or {})
            if isinstance((metrics or {}).get("done"), (int, float)):
                stage.items = float(metrics["done"])

    def complete_stage(self, stage_id: str, result: StageResult) -> None:
        """Stage `stage_id` finished with `result` (its status, duration and metrics)."""
        with self._lock:
            stage = self._stage(stage_id)
            stage.status = result.status
            stage.progress = 1.0 if result.status in DONE else stage.progress
            if result.duration is not None:
                stage.duration = result.duration
            elif stage.started is not None:
                stage.duration = time.time() - stage.started
            stage.metrics.update(result.metrics or {})
            items = (result.metrics or {}).get("items")
            if isinstance(items, (int, float)):
                stage.items = float(items)

    def get_pipeline_status(self, pipeline_id: str) -> dict[str, Any]:
        """progress_percent, state, current_stage (and current_stages), stage_durations,
        eta_seconds (None while unknown), throughput (items per second over the run so far),
        resource_utilization (resource tokens in use per declared capacity), elapsed, and per
        stage its status, progress, duration and metrics."""
        with self._lock:
            run = self._runs.get(pipeline_id)
            if run is None:
                raise PipelineNotFoundError(f"no run of pipeline '{pipeline_id}' is being monitored",
                                            hint="start_pipeline(pipeline) first")
            now = run.finished or time.time()
            stages = list(run.stages.values())
            done = [s for s in stages if s.status in DONE]
            running = [s for s in stages if s.status == ExecutionStatus.RUNNING]
            elapsed = max(now - run.started, 0.0)
            items = sum(s.items for s in stages)
            return {
                "pipeline_id": run.pipeline_id, "name": run.name, "state": run.state.value,
                "progress_percent": round(100.0 * len(done) / len(stages), 3) if stages else 100.0,
                "current_stage": running[0].stage_id if running else None,
                "current_stages": [s.stage_id for s in running],
                "stage_durations": {s.stage_id: s.duration if s.duration is not None else
                                    (now - s.started if s.started else None) for s in stages
                                    if s.started is not None or s.duration is not None},
                "eta_seconds": None if run.finished else _eta(stages, now),
                "throughput": round(items / elapsed, 3) if elapsed > 0 and items else 0.0,
                "resource_utilization": _tokens(running, run.capacity),
                "elapsed": round(elapsed, 3),
                "stages": {s.stage_id: {"status": s.status.value, "progress": s.progress, "duration": s.duration,
                                        "metrics": dict(s.metrics)} for s in stages},
            }

    def emit_event(self, event_type: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Publish an event on the monitor's bus; the event (with `type` and `time`) either way."""
        if self.event_bus is not None:
            return self.event_bus.emit(event_type, dict(data or {}))
        return {"type": event_type, "time": time.time(), **(data or {})}

    # -- fed by a run's events --------------------------------------------------------------------------
    def observe(self, event: dict[str, Any]) -> None:
        """Take in one event of a run (as written to its events.jsonl)."""
        kind = event.get("type")
        pipeline_id = event.get("pipeline_id")
        if kind in _STAGE_EVENTS:
            stage_id = event.get("stage_id")
            with self._lock:
                run = self._runs.get(pipeline_id) if pipeline_id else None
                known = run is not None and stage_id in run.stages
            if not known:
                return
            self._latest = pipeline_id
            if kind == ev.STAGE_STARTED:
                with self._lock:
                    stage = self._runs[pipeline_id].stages[stage_id]
                    stage.status, stage.started, stage.progress = ExecutionStatus.RUNNING, event.get("time"), 0.0
            elif kind == ev.STAGE_PROGRESS:
                total = event.get("total")
                fraction = event.get("done", 0) / total if total else 0.0
                self.update_stage_progress(stage_id, fraction, {k: event[k] for k in ("done", "total", "unit", "rate")
                                                                if k in event})
            elif kind == ev.STAGE_COMPLETED:
                self.complete_stage(stage_id, StageResult(stage_id, ExecutionStatus.SUCCESS, event.get("duration"),
                                                          metrics=dict(event.get("metrics") or {})))
            elif kind == ev.STAGE_FAILED:
                status = ExecutionStatus.CANCELLED if event.get("cancelled") else ExecutionStatus.FAILED
                self.complete_stage(stage_id, StageResult(stage_id, status, event.get("duration"),
                                                          error_message=event.get("error")))
        elif kind in _ENDS and pipeline_id in self._runs:
            self.finish_pipeline(pipeline_id, _ENDS[kind])

    def skip_stage(self, pipeline_id: str, stage_id: str) -> None:
        """A stage found up to date: done without running."""
        with self._lock:
            stage = self._runs[pipeline_id].stages.get(stage_id)
            if stage is not None and stage.status == ExecutionStatus.PENDING:
                stage.status, stage.progress = ExecutionStatus.SKIPPED, 1.0

    def finish_pipeline(self, pipeline_id: str, state: PipelineState) -> None:
        with self._lock:
            run = self._runs[pipeline_id]
            run.state, run.finished = state, run.finished or time.time()

    def _stage(self, stage_id: str) -> _Stage:
        run = self._runs.get(self._latest) if self._latest else None
        if run is None or stage_id not in run.stages:
            raise PipelineNotFoundError(f"stage '{stage_id}' is not in the monitored pipeline",
                                        hint="start_pipeline(pipeline) with the pipeline that has it")
        return run.stages[stage_id]


_ENDS = {ev.PIPELINE_COMPLETED: PipelineState.COMPLETED, ev.PIPELINE_FAILED: PipelineState.FAILED,
         ev.PIPELINE_CANCELLED: PipelineState.CANCELLED}


def _eta(stages: list[_Stage], now: float) -> float | None:
    """Seconds left: the longest remaining time of the running stages plus the expected durations
    of those still to run. A running stage's remaining time comes from its progress (elapsed times
    the share left over the share done), else from what it was expected to take; a stage expected
    nothing takes the mean duration of this run's finished stages. None while nothing tells."""
    finished = [s.duration for s in stages if s.status in DONE and s.duration is not None
                and s.status != ExecutionStatus.SKIPPED]
    mean = sum(finished) / len(finished) if finished else None
    longest = 0.0
    for s in stages:
        if s.status != ExecutionStatus.RUNNING:
            continue
        ran = now - s.started if s.started else 0.0
        guess = s.expected_seconds()
        guess = mean if guess is None else guess
        if s.progress > 0:
            longest = max(longest, ran * (1 - s.progress) / s.progress)
        elif guess is not None:
            longest = max(longest, guess - ran)
        else:
            return None
    total = longest
    for s in stages:
        if s.status == ExecutionStatus.PENDING:
            guess = s.expected_seconds()
            guess = mean if guess is None else guess
            if guess is None:
                return None
            total += guess
    return round(max(total, 0.0), 3)


def _tokens(running: list[_Stage], capacity: dict[str, float]) -> dict[str, dict[str, float]]:
    """Resource tokens held by the running stages, per token: in use, capacity, and their ratio."""
    used: dict[str, float] = {}
    for s in running:
        for name, amount in s.resources.items():
            used[name] = used.get(name, 0.0) + amount
    out = {}
    for name in sorted(set(used) | set(capacity)):
        cap = capacity.get(name)
        out[name] = {"in_use": used.get(name, 0.0), "capacity": cap,
                     "utilization": round(used.get(name, 0.0) / cap, 3) if cap else None}
    return out
