"""What `status` and `plan` report, computed from files only (works while a run is going).

- `pipeline_status`: pipeline state, % done, current stage and its item progress, per-stage state
  and duration, ETA. Stage state comes from the manifests (complete = manifest present, matching
  the current config fingerprint) and the events of the latest run (running / failed / timing).
- `plan`: a dry run through doit's own up-to-date checks, with reasons, propagated downstream
  (doit's `list --status` is not transitive).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from doit.dependency import Dependency
from doit.task import dict_to_task

from ..state import events as ev
from ..state.events import latest_run_events
from ..state.paths import RunLock, read_record
from . import manifest as mf
from .compile import StageUpToDate, fingerprint
from .durable_backend import DurableSqliteDB, read_journal
from .session import PipelineSession


@dataclass
class StageStatus:
    stage_id: str
    state: str                      # completed | running | failed | cancelled | stale | pending
    duration: float | None = None
    attempts: int | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    started: float | None = None


@dataclass
class PipelineStatus:
    pipeline_id: str
    name: str
    state: str
    stages: list[StageStatus] = field(default_factory=list)
    running_pid: int | None = None
    started: float | None = None
    finished: float | None = None
    eta: float | None = None

    @property
    def done(self) -> int:
        return sum(1 for s in self.stages if s.state == "completed")

    @property
    def percent(self) -> float:
        return 100.0 * self.done / len(self.stages) if self.stages else 100.0

    @property
    def current(self) -> list[StageStatus]:
        return [s for s in self.stages if s.state == "running"]

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "name": self.name, "state": self.state,
                "percent": round(self.percent, 1), "done": self.done, "total": len(self.stages),
                "current": [s.stage_id for s in self.current], "eta": self.eta, "running_pid": self.running_pid,
                "started": self.started, "finished": self.finished,
                "stages": [vars(s) for s in self.stages]}


def recorded_fingerprints(db_path) -> dict[str, str]:
    """Config fingerprint doit recorded for each stage's last successful run (read-only): the
    sqlite rows, then what the durable journal holds on top (a running or killed run's stages)."""
    records: dict[str, Any] = {}
    if os.path.exists(db_path):
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            for task_id, data in conn.execute("select task_id, task_data from doit").fetchall():
                try:
                    records[task_id] = json.loads(data)
                except ValueError:
                    continue
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    records.update(read_journal(db_path))
    out = {}
    for task_id, record in records.items():
        values = record.get("_values_:", {}) if isinstance(record, dict) else {}
        if isinstance(values, dict) and "_config_changed" in values:
            out[task_id] = values["_config_changed"]
    return out


def pipeline_status(session: PipelineSession) -> PipelineStatus:
    paths = session.paths
    record = read_record(paths) or {}
    lock = RunLock(paths, session.pipeline_id)
    running = lock.is_held_elsewhere()
    holder = lock.holder() if running else None
    last: dict[str, dict[str, Any]] = {}
    progress: dict[str, dict[str, Any]] = {}
    durations: dict[str, float] = {}
    for event in latest_run_events(paths.events, record):
        stage = event.get("stage_id")
        if not stage:
            continue
        kind = event["type"]
        if kind == ev.STAGE_PROGRESS:
            progress[stage] = event
        elif kind in (ev.STAGE_STARTED, ev.STAGE_COMPLETED, ev.STAGE_FAILED):
            last[stage] = event
            if kind == ev.STAGE_COMPLETED:
                durations[stage] = event.get("duration", 0.0)
    manifests = session.manifests()
    recorded = recorded_fingerprints(paths.db)
    stages = []
    for stage in session.pipeline.stages:
        event = last.get(stage.id, {})
        kind = event.get("type")
        data = mf.read(manifests[stage.id])
        if kind == ev.STAGE_STARTED and running:
            st = StageStatus(stage.id, "running", started=event.get("time"), progress=progress.get(stage.id))
        elif data is not None:
            current = recorded.get(stage.id) == fingerprint(stage) and not mf.missing_files(data, manifests[stage.id])
            st = StageStatus(stage.id, "completed" if current else "stale", duration=durations.get(stage.id),
                             attempts=event.get("attempts"))
        elif kind == ev.STAGE_FAILED:
            st = StageStatus(stage.id, "cancelled" if event.get("cancelled") else "failed",
                             duration=event.get("duration"), attempts=event.get("attempts"), error=event.get("error"))
        else:
            st = StageStatus(stage.id, "pending")
        stages.append(st)
    state = record.get("state", "created")
    if state == "running" and not running:
        state = "interrupted"        # the process that ran it is gone (killed, crashed)
    status = PipelineStatus(pipeline_id=session.pipeline_id, name=session.pipeline.name, state=state,
                            stages=stages, running_pid=(holder or {}).get("pid"),
                            started=record.get("started_at"), finished=record.get("finished_at"))
    if running:
        status.eta = _eta(status, durations)
    return status


def _eta(status: PipelineStatus, durations: dict[str, float]) -> float | None:
    remaining = [s for s in status.stages if s.state in ("pending", "stale", "failed", "cancelled")]
    mean = sum(durations.values()) / len(durations) if durations else None
    eta = 0.0
    for s in status.current:
        p = s.progress or {}
        if p.get("eta") is not None:
            eta = max(eta, p["eta"])
        elif mean is not None and s.started:
            eta = max(eta, mean - (time.time() - s.started))
    if remaining:
        if mean is None:
            return None
        eta += mean * len(remaining)
    return max(eta, 0.0)


# -- plan ------------------------------------------------------------------------------------------
@dataclass
class PlanEntry:
    stage_id: str
    will_run: bool
    reasons: list[str]


def plan(session: PipelineSession) -> list[PlanEntry]:
    task_dicts = session.tasks()
    tasks = {t["name"]: dict_to_task(t) for t in task_dicts}
    manifest_owner = {m: s for s, m in session.manifests().items()}
    by_id = {s.id: s for s in session.pipeline.stages}
    entries: dict[str, PlanEntry] = {}
    if not session.paths.db.exists():
        return [PlanEntry(s, True, ["never run"]) for s in session.stage_order()]
    dep = Dependency(DurableSqliteDB, str(session.paths.db), checker_cls=mf.ManifestChecker)
    try:
        for stage_id in session.stage_order():
            task = tasks[stage_id]
            reasons: list[str] = []
            if not dep._in(stage_id):
                reasons.append("never run")
            else:
                status = dep.get_status(task, tasks, get_log=True)
                for kind, args in status.reasons.items():
                    reasons.extend(_describe(kind, args, manifest_owner, dep, stage_id))
            upstream_runs = [d for d in by_id[stage_id].depends_on if entries[d].will_run]
            if upstream_runs and not reasons:
                reasons.append("upstream " + ", ".join(f"'{u}'" for u in upstream_runs)
                               + " will run (this stage reruns only if its output changes)")
            entries[stage_id] = PlanEntry(stage_id, bool(reasons), _unique(reasons))
    finally:
        dep.backend._conn.close()
    return [entries[s] for s in session.stage_order()]


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _describe(kind: str, args: Any, manifest_owner: dict[str, str], dep: Dependency, stage_id: str) -> list[str]:
    if kind == "uptodate_false":
        out = []
        for utd, _a, _k in args:
            if isinstance(utd, StageUpToDate) and utd.failed == "outputs":
                out.append("output missing or changed")
            else:
                out.append("config changed")
        return out
    if kind == "missing_target":
        return ["output missing"]
    if kind in ("changed_file_dep", "missing_file_dep"):
        files = args if isinstance(args, list) else [args]
        out = []
        for f in files:
            owner = manifest_owner.get(f)
            if owner:
                out.append(f"upstream '{owner}' changed" if kind == "changed_file_dep" else f"upstream '{owner}' has no output yet")
            else:
                out.append(f"input file changed: {f}" if kind == "changed_file_dep" else f"input file missing: {f}")
        return out
    if kind in ("added_file_dep", "removed_file_dep"):
        return ["dependencies changed"] if args else []
    if kind == "checker_changed":
        return ["file checker changed"]
    return [kind.replace("_", " ")]
