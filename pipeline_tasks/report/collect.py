"""What the report shows, assembled from what its caller passes: the pipeline's status (stage
states, timing, outputs: `engine.status`) and, when known, the pipeline itself (stage types and
edges). A batch stage (`foreach`) is one row whose `items` are its items' views, in item order.
Nothing here reads a file."""
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
    state: str = "pending"            # a StageState value: success | up to date | running | failed | …
    started: float | None = None      # wall-clock times of this run (None: did not run in it)
    finished: float | None = None
    duration: float | None = None
    attempts: int | None = None
    retries: int = 0
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)    # what its last attempt used (engine.usage)
    item: str | None = None           # an item of a batch stage: its key
    items: list[StageView] | None = None   # a batch stage: its items (its own state, times: theirs folded)

    @property
    def counts(self) -> dict[str, int]:
        """A batch stage's items per state."""
        out: dict[str, int] = {}
        for i in self.items or ():
            out[i.state] = out.get(i.state, 0) + 1
        return out

    @property
    def label(self) -> str:
        return self.id if self.item is None else f"{self.id}:{self.item}"


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

    def units(self) -> list[StageView]:
        """Every plain stage and every item of a batch stage: what publishes outputs."""
        return [u for s in self.stages for u in (s.items if s.items is not None else [s])]

    @property
    def batches(self) -> list[StageView]:
        return [s for s in self.stages if s.items is not None]

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        ends = [s.finished for s in self.stages if s.finished] + ([self.finished] if self.finished else [])
        return (max(ends) if ends else self.started) - self.started


def _view(st: StageStatus, depends_on: list[str]) -> StageView:
    return StageView(st.stage_id, type=st.type, depends_on=depends_on, state=st.state.value, started=st.started,
                     finished=st.finished, duration=st.duration, attempts=st.attempts, retries=st.retries,
                     error=st.error, outputs=dict(st.outputs), metrics=dict(st.metrics), usage=dict(st.usage or {}))


def collect(status: PipelineStatus, pipeline: Pipeline | None = None, notes: list[str] | tuple[str, ...] = (),
            ) -> RunView:
    """The report's view of a run. With `pipeline`, stages come in topological order with their
    edges; without it, in the order `status` lists them, with none."""
    run = RunView(pipeline_id=status.pipeline_id, name=status.name, state=status.state, state_dir=status.state_dir,
                  started=status.started, finished=status.finished, notes=list(notes), edges_known=pipeline is not None)
    deps = {s.id: list(s.depends_on) for s in pipeline.stages} if pipeline is not None else {}
    by_id = {s.stage_id: s for s in status.stages}
    order = _topological(pipeline) if pipeline is not None else list(by_id)
    run.stages = _fold_batches([_view(by_id[sid], deps.get(sid, [])) for sid in order if sid in by_id],
                               pipeline.batches if pipeline is not None else {})
    return run


def _fold_batches(views: list[StageView], batches: dict[str, list[str]]) -> list[StageView]:
    """One row per batch stage in place of its items ("stage:item" ids), in item order; its
    dependencies are the stages its items depend on."""
    rows: list[StageView] = []
    groups: dict[str, StageView] = {}
    for view in views:
        view.depends_on = list(dict.fromkeys(d.partition(":")[0] for d in view.depends_on))
        group, colon, key = view.id.partition(":")
        if not colon:
            rows.append(view)
            continue
        row = groups.get(group)
        if row is None:
            row = groups[group] = StageView(group, type=view.type, items=[])
            rows.append(row)
        view.id, view.item = group, key
        row.items.append(view)
        row.depends_on = list(dict.fromkeys([*row.depends_on, *view.depends_on]))
    for group, keys in batches.items():          # a batch without items (allow_empty)
        if not keys and group not in groups:
            groups[group] = StageView(group, state="up to date", items=[])
            rows.append(groups[group])
    for row in groups.values():
        rank = {k: i for i, k in enumerate(batches.get(row.id, ()))}
        row.items.sort(key=lambda v: rank.get(v.item, len(rank)))
        _summarise(row)
    return rows


def _summarise(row: StageView) -> None:
    """A batch stage's state and times from its items': failed or running if one is, done when all
    are; it ran from its first item's start to its last item's end."""
    states = row.counts
    for state in ("running", "failed", "cancelled", "interrupted"):
        if states.get(state):
            row.state = state
            break
    else:
        if states and set(states) <= {"success", "up to date"}:
            row.state = "success" if states.get("success") else "up to date"
        elif states:
            row.state = max(states, key=lambda k: states[k])
    ran = [i for i in row.items if i.started is not None]
    if ran:
        row.started = min(i.started for i in ran)
        ends = [i.finished for i in ran if i.finished is not None]
        row.finished = max(ends) if len(ends) == len(ran) else None
        row.duration = row.finished - row.started if row.finished is not None else None
    failed = [i.item for i in row.items if i.state == "failed"]
    if failed:
        row.error = f"{len(failed)} item(s) failed: " + " ".join(failed)
    done = sum(states.get(k, 0) for k in ("success", "up to date"))
    row.outputs = {"items": f"{done} of {len(row.items)} done"}


def _topological(pipeline: Pipeline) -> list[str]:
    return dag.topological_order(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})
