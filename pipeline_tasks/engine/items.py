"""Batch stages seen from outside: per-stage item counts for status, plan and progress, and the
items a pipeline no longer has (orphans) with the outputs they left behind.

Every run records the items it knows (`items.jsonl` in the state folder: each item's stage id and
manifest). An item recorded once and gone from the pipeline now is an orphan while its manifest
exists; `clean --orphans` removes the files that manifest lists (only what the item wrote).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import atomic
from ..models import Pipeline, PipelineStage
from ..spec.foreach import item_order
from . import manifest as mf
from .compile import clean_stage

if TYPE_CHECKING:
    from .session import PipelineSession

REGISTRY = "items.jsonl"
DONE = frozenset({"success", "up to date"})     # the StageState values of a stage that is done
SHOWN = 5           # item keys named in a one-line summary


@dataclass
class StageItems:
    """One row of a summary: a plain stage, or a batch stage with its items' states."""
    stage_id: str
    states: Counter = field(default_factory=Counter)       # state -> number of items (or of the one stage)
    keys: dict[str, list[str]] = field(default_factory=dict)  # state -> item keys, for batch stages
    batch: bool = False

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def state(self) -> str:
        """The row's state: failed or running if any item is; success if all are done (up to date
        if none ran in the latest run); else the most common."""
        for state in ("running", "failed", "cancelled"):
            if self.states.get(state):
                return state
        if self.states and set(self.states) <= DONE:
            return "success" if self.states.get("success") else "up to date"
        return self.states.most_common(1)[0][0] if self.states else "success"

    @property
    def done(self) -> int:
        return sum(self.states.get(state, 0) for state in DONE)

    def to_dict(self) -> dict[str, Any]:
        return {"stage_id": self.stage_id, "state": self.state, "items": self.total if self.batch else None,
                "states": dict(self.states), "running": self.keys.get("running", []),
                "failed": self.keys.get("failed", [])}


def summarise(pipeline: Pipeline, states: Iterable[tuple[str, str]]) -> list[StageItems]:
    """Rows in pipeline order from (stage id, state) pairs: one per plain stage, one per batch stage."""
    groups = {s.id: s.group for s in pipeline.stages if s.group is not None}
    rows: dict[str, StageItems] = {}
    for stage_id, state in states:
        group = groups.get(stage_id)
        row = rows.get(group or stage_id)
        if row is None:
            row = rows[group or stage_id] = StageItems(group or stage_id, batch=group is not None)
        row.states[state] += 1
        if group is not None:
            row.keys.setdefault(state, []).append(stage_id.partition(":")[2])
    for group, keys in pipeline.batches.items():
        if not keys:
            rows.setdefault(group, StageItems(group, batch=True))
    return list(rows.values())


def as_written(pipeline: Pipeline) -> Pipeline:
    """The pipeline with one stage per batch stage (its type says how many items), for graphs."""
    if not pipeline.batches:
        return pipeline
    stages: dict[str, PipelineStage] = {}
    for stage in pipeline.stages:
        name = stage.group or stage.id
        if name not in stages:
            kind = f"{stage.type}, {len(pipeline.batches[name])} items" if stage.group else stage.type
            deps = list(dict.fromkeys(d.partition(":")[0] for d in stage.depends_on))
            stages[name] = replace(stage, id=name, type=kind, depends_on=deps, group=None, item=None)
    return replace(pipeline, stages=list(stages.values()))


def describe(row: StageItems) -> str:
    """`7/12 items` and the running and failed items, for a batch stage's status line."""
    text = f"{row.done}/{row.total} items"
    for state in ("running", "failed", "blocked", "cancelled", "stale"):
        if row.keys.get(state):
            text += f"  {state}: {name_some(row.keys[state])}"
    return text


def name_some(keys: list[str]) -> str:
    return " ".join(keys[:SHOWN]) + (f" (+{len(keys) - SHOWN})" if len(keys) > SHOWN else "")


def plan_lines(pipeline: Pipeline, entries: list) -> list[str]:
    """`plan` output: a line per plain stage, and per batch stage how many items would run and why
    ("run  segment  1 of 12 items  (new input: ep13)")."""
    groups = {s.id: s.group for s in pipeline.stages if s.group is not None}
    lines: list[str] = []
    batches: dict[str, list] = {}
    for entry in entries:
        group = groups.get(entry.stage_id)
        if group is None:
            mark = "run " if entry.will_run else "may " if entry.may_run else "skip"
            lines.append(f"  {mark} {entry.stage_id}"
                         + (f"  ({'; '.join(entry.reasons)})" if entry.reasons else "  (up to date)"))
            continue
        if group not in batches:
            batches[group] = []
            lines.append(group)         # replaced below, keeps the stage's place
        batches[group].append(entry)
    for group, items in batches.items():
        runs = [e for e in items if e.will_run]
        mays = [e for e in items if e.may_run]
        by_reason: dict[str, list[str]] = {}
        for entry in runs or mays:
            by_reason.setdefault("; ".join(entry.reasons), []).append(entry.stage_id.partition(":")[2])
        why = "; ".join(f"{reason}: {name_some(keys)}" for reason, keys in by_reason.items())
        if runs:
            text = f"  run  {group}  {len(runs)} of {len(items)} items  ({why})"
        elif mays:
            text = f"  may  {group}  {len(mays)} of {len(items)} items  ({why})"
        elif any(e.ignored for e in items):
            text = f"  skip {group}  {len(items)} items  ({items[0].reasons[0]})"
        else:
            text = f"  skip {group}  {len(items)} items  (up to date)"
        lines[lines.index(group)] = text
    return lines


class ItemCounts:
    """A run's item counts per batch stage, for `pipeline.stage_items` events: one when an item of
    a stage ends at most every `interval` seconds, and always the stage's last."""

    def __init__(self, tasks: Iterable, interval: float = 0.5):
        self.interval = interval
        self.counts: dict[str, dict[str, Any]] = {}
        for task in tasks:
            if task.subtask_of:
                row = self.counts.setdefault(task.subtask_of, {"total": 0, "done": 0, "failed": []})
                row["total"] += 1
        self._last: dict[str, float] = {}

    def update(self, task_name: str, failed: bool, now: float) -> dict[str, Any] | None:
        """Count an item that ended; the event's fields when one is due."""
        group, _, item = task_name.partition(":")
        row = self.counts.get(group)
        if row is None or not item:
            return None
        if failed:
            row["failed"].append(item)
        else:
            row["done"] += 1
        last = row["done"] + len(row["failed"]) >= row["total"]
        if not last and now - self._last.get(group, 0.0) < self.interval:
            return None
        self._last[group] = now
        return {"stage_id": group, "done": row["done"], "total": row["total"], "failed": list(row["failed"])}


# -- the items a run knew ----------------------------------------------------------------------------
def _current(pipeline: Pipeline, manifests: dict[str, str]) -> dict[str, str]:
    return {s.id: manifests[s.id] for s in pipeline.stages if s.group is not None}


def _digest(items: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(items, sort_keys=True).encode()).hexdigest()


def read_registry(session: PipelineSession) -> tuple[str | None, dict[str, str]]:
    path = session.paths.root / REGISTRY
    try:
        with open(path, encoding="utf-8") as fh:
            digest = fh.readline().strip() or None
            items = {}
            for line in fh:
                try:
                    record = json.loads(line)
                    items[record["id"]] = record["manifest"]
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        return None, {}
    return digest, items


def record_items(session: PipelineSession) -> None:
    """Add the pipeline's items to the registry (before a run). Cheap when nothing changed: the
    registry's first line is the digest of the items last recorded."""
    current = _current(session.pipeline, session.manifests())
    digest = _digest(current)
    path = session.paths.root / REGISTRY
    if not current and not path.exists():
        return
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.readline().strip() == digest:
                return
    except FileNotFoundError:
        pass
    _, known = read_registry(session)
    known.update(current)
    _write(session, digest, known)


def _write(session: PipelineSession, digest: str, items: dict[str, str]) -> None:
    lines = [digest] + [json.dumps({"id": k, "manifest": v}) for k, v in sorted(items.items())]
    atomic.write_text(session.paths.root / REGISTRY, "\n".join(lines) + "\n")


@dataclass
class Orphan:
    stage_id: str           # "stage:item" as it was
    manifest: str
    output_dir: str | None
    files: int


def find_orphans(session: PipelineSession) -> list[Orphan]:
    """Recorded items the pipeline no longer has whose outputs are still there."""
    _, known = read_registry(session)
    current = {s.id for s in session.pipeline.stages}
    out = []
    for stage_id, manifest in sorted(known.items(), key=lambda kv: item_order(kv[0])):
        if stage_id in current:
            continue
        data = mf.read(manifest)
        if data is None:
            continue
        out.append(Orphan(stage_id, manifest, (data.get("outputs") or {}).get("output_dir"),
                          len(data.get("files") or ())))
    return out


def clean_orphans(session: PipelineSession) -> list[Orphan]:
    """Remove what each orphan's manifest lists, then the manifest (and folders left empty);
    forget the removed items."""
    orphans = find_orphans(session)
    for orphan in orphans:
        folder = os.path.dirname(orphan.manifest)
        clean_stage(orphan.manifest, folder)
    digest, known = read_registry(session)
    gone = {o.stage_id for o in orphans} | {k for k, m in known.items() if not os.path.exists(m)
                                            and k not in {s.id for s in session.pipeline.stages}}
    if gone:
        _write(session, digest or "", {k: v for k, v in known.items() if k not in gone})
    return orphans
