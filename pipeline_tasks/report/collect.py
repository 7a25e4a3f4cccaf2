"""What the report shows, assembled from what its caller passes: the pipeline's status (stage
states, timing, outputs: `engine.status`) and, when known, the pipeline itself (stage types and
edges). Nothing here reads a file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.status import PipelineStatus, StageStatus
from ..models import Pipeline
from ..spec import dag


@dataclass
class StageView:
    id: str
    type: str | None = None
    depends_on: list[str] = field(default_factory=list)
    state: str = "pending"            # a StageState value: completed | up to date | running | failed | …
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


def _view(st: StageStatus, depends_on: list[str]) -> StageView:
    return StageView(st.stage_id, type=st.type, depends_on=depends_on, state=st.state.value, started=st.started,
                     finished=st.finished, duration=st.duration, attempts=st.attempts, retries=st.retries,
                     error=st.error, outputs=dict(st.outputs), metrics=dict(st.metrics))


def collect(status: PipelineStatus, pipeline: Pipeline | None = None, notes: list[str] | tuple[str, ...] = (),
            ) -> RunView:
    """The report's view of a run. With `pipeline`, stages come in topological order with their
    edges; without it, in the order `status` lists them, with none."""
    run = RunView(pipeline_id=status.pipeline_id, name=status.name, state=status.state, state_dir=status.state_dir,
                  started=status.started, finished=status.finished, notes=list(notes), edges_known=pipeline is not None)
    deps = {s.id: list(s.depends_on) for s in pipeline.stages} if pipeline is not None else {}
    by_id = {s.stage_id: s for s in status.stages}
    order = _topological(pipeline) if pipeline is not None else list(by_id)
    run.stages = [_view(by_id[sid], deps.get(sid, [])) for sid in order if sid in by_id]
    return run


def _topological(pipeline: Pipeline) -> list[str]:
    return dag.topological_order(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})
