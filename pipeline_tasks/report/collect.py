"""What the report shows, read from a pipeline's state dir (works during a run and after it).

Reuses the engine's readers: `events.latest_run_events` for the latest run's events,
`status.pipeline_status` for stage states when the pipeline is known, the checkpoint and the
stage manifests for outputs."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import manifest as mf
from ..errors import PipelineError, PipelineNotFoundError
from ..spec.loader import load_pipeline
from ..state import events as ev
from ..state.checkpoint import CheckpointManager
from ..state.events import latest_run_events
from ..state.paths import StatePaths, read_record


@dataclass
class StageView:
    id: str
    type: str | None = None
    depends_on: list[str] = field(default_factory=list)
    state: str = "pending"            # completed | up to date | running | failed | cancelled | stale | pending
    started: float | None = None      # wall-clock times of this run (None: did not run in it)
    finished: float | None = None
    duration: float | None = None
    attempts: int | None = None
    retries: int = 0
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunView:
    pipeline_id: str
    name: str
    state: str
    state_dir: Path
    started: float | None = None
    finished: float | None = None
    stages: list[StageView] = field(default_factory=list)
    edges_known: bool = False
    notes: list[str] = field(default_factory=list)

    def stage(self, stage_id: str) -> StageView:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        ends = [s.finished for s in self.stages if s.finished] + ([self.finished] if self.finished else [])
        return (max(ends) if ends else self.started) - self.started


def _load_pipeline(record: dict[str, Any], notes: list[str]):
    source = record.get("source")
    if not source:
        notes.append("the run was not started from a YAML file: stage dependencies are not known")
        return None
    if not os.path.exists(source):
        notes.append(f"pipeline file {source} no longer exists: stage dependencies are not known")
        return None
    try:
        return load_pipeline(source, check_inputs=False)
    except PipelineError as exc:
        notes.append(f"pipeline file {source} does not load any more ({exc}): stage dependencies are not known")
        return None


def _events_by_stage(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        sid = e.get("stage_id")
        if not sid:
            continue
        d = out.setdefault(sid, {"retries": 0})
        kind = e.get("type")
        if kind == ev.STAGE_STARTED:
            d["started_event"] = e
            d.pop("end", None)
        elif kind in (ev.STAGE_COMPLETED, ev.STAGE_FAILED):
            d["end"] = e
        elif kind == ev.STAGE_RETRY:
            d["retries"] += 1
    return out


def collect(state_dir: str | os.PathLike, pipeline=None) -> RunView:
    paths = StatePaths(state_dir)
    record = read_record(paths)
    if record is None and not paths.events.exists():
        raise PipelineNotFoundError("no pipeline state here (no pipeline.json or events.jsonl); pass the "
                                    "state dir of a run: .pipeline/<pipeline_id>/", path=paths.root)
    record = record or {}
    notes: list[str] = []
    if pipeline is None:
        pipeline = _load_pipeline(record, notes)
    events = latest_run_events(paths.events, record)
    by_stage = _events_by_stage(events)
    try:
        checkpoint = CheckpointManager(paths.root).load()
        cp_outputs, cp_done = checkpoint.stage_outputs, list(checkpoint.completed_stages)
    except PipelineNotFoundError:
        cp_outputs, cp_done = {}, []
    run = RunView(pipeline_id=record.get("pipeline_id") or paths.root.name,
                  name=record.get("name") or (pipeline.name if pipeline else paths.root.name),
                  state=record.get("state", "unknown"), state_dir=paths.root, started=record.get("started_at"),
                  finished=record.get("finished_at"), notes=notes)
    states: dict[str, str] = {}
    manifests: dict[str, str] = {}
    if pipeline is not None:
        from ..engine.session import PipelineSession
        from ..engine.status import pipeline_status
        session = PipelineSession(pipeline, run.pipeline_id, paths)
        order = session.stage_order()
        try:
            status = pipeline_status(session)
            states = {s.stage_id: s.state for s in status.stages}
            if status.state:
                run.state = status.state
        except Exception as exc:          # noqa: BLE001 - a report must not fail on a status quirk
            notes.append(f"stage states from events only ({type(exc).__name__}: {exc})")
        manifests = session.manifests()
        run.edges_known = True
        specs = {s.id: s for s in pipeline.stages}
    else:
        order = list(dict.fromkeys(cp_done + list(by_stage)))
        specs = {}
    for sid in order:
        d = by_stage.get(sid, {})
        end, start = d.get("end"), d.get("started_event")
        view = StageView(sid, retries=d.get("retries", 0))
        spec = specs.get(sid)
        if spec is not None:
            view.type, view.depends_on = spec.type, list(spec.depends_on)
        elif start:
            view.type = start.get("stage_type")
        if end:
            view.started, view.finished = end.get("started"), end.get("finished")
            view.duration, view.attempts = end.get("duration"), end.get("attempts")
            view.metrics = dict(end.get("metrics") or {})
            view.error = end.get("error")
            if end.get("type") == ev.STAGE_COMPLETED:
                view.outputs = dict(end.get("outputs") or {})
        elif start:
            view.started = start.get("time")
        if not view.outputs and sid in cp_outputs:
            view.outputs = dict(cp_outputs[sid] or {})
        if not view.outputs and sid in manifests:
            data = mf.read(manifests[sid]) or {}
            view.outputs = dict(data.get("outputs") or {})
            view.type = view.type or data.get("type")
        # state: the engine's status when the pipeline is known, else what the events say
        state = states.get(sid)
        if state is None:
            if end is not None:
                state = "completed" if end.get("type") == ev.STAGE_COMPLETED else (
                    "cancelled" if end.get("cancelled") else "failed")
            elif start is not None:
                state = "running" if run.state == "running" else "interrupted"
            elif sid in cp_done:
                state = "completed"
            else:
                state = "pending"
        if state == "completed" and end is None and start is None:
            state = "up to date"        # complete, but did not run in this run
        view.state = state
        run.stages.append(view)
    return run
