"""What `status`, `plan`, the report and the API say about a pipeline, computed from files only
(works while a run is going).

- `stage_state`: the one rule that turns what the files say of a stage (is its manifest current,
  what did the latest run's events say of it, is the run lock held) into a `StageState`;
- `pipeline_status`: every stage's state with its timing, attempts, error, outputs and item
  progress from the latest run; the pipeline's state, % done and ETA;
- `recorded_status`: the same from a state directory alone, when the pipeline is not known (a run
  started from a dict, a pipeline file gone): states from the events and the checkpoint;
- `plan`: a dry run through doit's own up-to-date checks, with reasons, propagated downstream
  (doit's `list --status` is not transitive).

A stage's manifest is *current* when doit recorded a successful run with the stage's present config
fingerprint and the manifest and its files are as that run left them: the check doit itself makes
(`StageUpToDate`), so `status` never calls complete what `run` would redo.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit.dependency import Dependency
from doit.task import dict_to_task

from ..models import StageState
from ..spec.foreach import item_order
from ..spec.registry import get_executor_class
from ..state import events as ev
from ..state.checkpoint import read_checkpoint
from ..state.events import latest_run_events
from ..state.paths import RunLock, StatePaths, read_record
from . import lockfile
from . import manifest as mf
from .compile import StageUpToDate, fingerprint
from .durable_backend import DurableSqliteDB, check_database, read_journal, read_records
from .items import read_registry
from .session import PipelineSession

# what the files say of a stage's output
CURRENT = "current"      # manifest intact, recorded with the present config
OUTDATED = "outdated"    # a manifest, but the config or the files changed since
ABSENT = "absent"        # no manifest (or one that does not parse)
UNKNOWN = "unknown"      # the pipeline is not known: only the events and the checkpoint speak


def stage_state(output: str, last_event: dict[str, Any] | None, run_alive: bool,
                done_earlier: bool = False) -> StageState:
    """The state of one stage. `output`: CURRENT, OUTDATED, ABSENT or UNKNOWN; `last_event`: the
    stage's latest started/completed/failed event in the latest run (None: it did not run in it);
    `run_alive`: the run lock is held; `done_earlier`: the checkpoint lists it as complete (read
    only when `output` is UNKNOWN)."""
    kind = (last_event or {}).get("type")
    if kind == ev.STAGE_STARTED and run_alive:
        return StageState.RUNNING
    if kind == ev.STAGE_FAILED:         # the latest attempt failed, whatever an older manifest says
        return StageState.CANCELLED if last_event.get("cancelled") else StageState.FAILED
    if output == CURRENT:
        return StageState.SUCCESS if kind else StageState.UP_TO_DATE
    if output == OUTDATED:
        return StageState.STALE
    if kind == ev.STAGE_STARTED:
        return StageState.INTERRUPTED
    if output == UNKNOWN:
        if kind == ev.STAGE_COMPLETED:
            return StageState.SUCCESS
        if done_earlier:
            return StageState.UP_TO_DATE
    return StageState.PENDING


@dataclass
class StageStatus:
    stage_id: str
    state: StageState
    type: str | None = None
    started: float | None = None        # times of the latest run (None: the stage did not run in it)
    finished: float | None = None
    duration: float | None = None
    attempts: int | None = None
    retries: int = 0
    error: str | None = None
    progress: dict[str, Any] | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] | None = None   # what its last attempt used (`engine.usage`), when it ran in the latest run
    granted: dict[str, Any] | None = None  # what the scheduler gave it (cpu, mem_gb, gpu and GPU ids)
    # the run that made the stage's current outputs: "latest" (the latest run), "earlier" (an earlier
    # run; the times, metrics and attempts above are that run's), None (no current outputs)
    produced_by: str | None = None
    version: str | None = None          # the executor version that made the current outputs
    params: dict[str, Any] | None = None        # the config it ran with (secrets masked)
    inputs: dict[str, Any] | None = None        # input and upstream digests, from the lock file

    def to_dict(self) -> dict[str, Any]:
        return {"stage_id": self.stage_id, "state": self.state.value, "type": self.type, "started": self.started,
                "finished": self.finished, "duration": self.duration, "attempts": self.attempts,
                "retries": self.retries, "error": self.error, "progress": self.progress, "usage": self.usage,
                "granted": self.granted, "produced_by": self.produced_by, "version": self.version,
                "metrics": self.metrics, "params": self.params, "inputs": self.inputs}


@dataclass
class PipelineStatus:
    pipeline_id: str
    name: str
    state: str
    state_dir: Path
    stages: list[StageStatus] = field(default_factory=list)
    running_pid: int | None = None
    started: float | None = None
    finished: float | None = None
    eta: float | None = None
    paused_reason: str | None = None      # while state is "paused": why
    capacity: dict[str, float] = field(default_factory=dict)   # what the run's stages may hold at once

    @property
    def held(self) -> dict[str, float]:
        """What the running stages hold now (their grants), per resource of the capacity."""
        out = {name: 0.0 for name in self.capacity}
        for st in self.current:
            for name, amount in (st.granted or {}).items():
                if name in out and isinstance(amount, (int, float)):
                    out[name] += amount
        return out

    @property
    def done(self) -> int:
        return sum(1 for s in self.stages if s.state.done)

    @property
    def percent(self) -> float:
        return 100.0 * self.done / len(self.stages) if self.stages else 100.0

    @property
    def current(self) -> list[StageStatus]:
        return [s for s in self.stages if s.state == StageState.RUNNING]

    def stage(self, stage_id: str) -> StageStatus:
        for s in self.stages:
            if s.stage_id == stage_id:
                return s
        raise KeyError(stage_id)

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "name": self.name, "state": self.state,
                "percent": round(self.percent, 1), "done": self.done, "total": len(self.stages),
                "current": [s.stage_id for s in self.current], "eta": self.eta, "running_pid": self.running_pid,
                "started": self.started, "finished": self.finished, "paused_reason": self.paused_reason,
                "capacity": self.capacity, "held": self.held,
                "stages": [s.to_dict() for s in self.stages]}


def recorded_values(db_path) -> dict[str, dict[str, Any]]:
    """The values doit saved with each stage's last successful run (config fingerprint, file
    facts), read-only: the sqlite rows, then what the durable journal holds on top (a running or
    killed run's stages). A damaged database reads as empty: every stage looks not current."""
    records: dict[str, Any] = {}
    if os.path.exists(db_path):
        try:
            rows = read_records(db_path)
        except sqlite3.Error:
            rows = []
        for task_id, data in rows:
            try:
                records[task_id] = json.loads(data)
            except (TypeError, ValueError):
                continue
    records.update(read_journal(db_path))
    out = {}
    for task_id, record in records.items():
        values = record.get("_values_:") if isinstance(record, dict) else None
        if isinstance(values, dict):
            out[task_id] = values
    return out


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _RunEvents:
    """Per stage, what the latest run's events say: the last started/completed/failed event, the
    number of retries, the latest progress event."""

    def __init__(self, events: list[dict[str, Any]]):
        self.last: dict[str, dict[str, Any]] = {}
        self.retries: dict[str, int] = {}
        self.progress: dict[str, dict[str, Any]] = {}
        self.granted: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        for event in events:
            stage = event.get("stage_id")
            if not isinstance(stage, str):
                continue
            kind = event["type"]
            if kind == ev.STAGE_PROGRESS:
                self.progress[stage] = event
            elif kind in (ev.STAGE_STARTED, ev.STAGE_COMPLETED, ev.STAGE_FAILED):
                if kind == ev.STAGE_STARTED and isinstance(event.get("granted"), dict):
                    self.granted[stage] = event["granted"]
                if stage not in self.last:
                    self.order.append(stage)
                self.last[stage] = event
            elif kind == ev.STAGE_RETRY:
                self.retries[stage] = self.retries.get(stage, 0) + 1

    def durations(self) -> list[float]:
        return [d for e in self.last.values() if e["type"] == ev.STAGE_COMPLETED
                and (d := _number(e.get("duration"))) is not None]

    def describe(self, stage_id: str, state: StageState, stage_type: str | None) -> StageStatus:
        event = self.last.get(stage_id)
        st = StageStatus(stage_id, state, type=stage_type, retries=self.retries.get(stage_id, 0))
        if event is None:
            return st
        st.type = st.type or (event.get("stage_type") if isinstance(event.get("stage_type"), str) else None)
        if isinstance(event.get("granted"), dict):
            st.granted = dict(event["granted"])
        elif isinstance(self.granted.get(stage_id), dict):
            st.granted = dict(self.granted[stage_id])
        if isinstance(event.get("usage"), dict):
            st.usage = dict(event["usage"])
        if event["type"] == ev.STAGE_STARTED:
            st.started = _number(event.get("time"))
            if state == StageState.RUNNING and isinstance(self.progress.get(stage_id), dict):
                st.progress = self.progress[stage_id]
            return st
        st.started, st.finished = _number(event.get("started")), _number(event.get("finished"))
        st.duration = _number(event.get("duration"))
        attempts = event.get("attempts")
        st.attempts = attempts if type(attempts) is int else None
        if isinstance(event.get("metrics"), dict):
            st.metrics = dict(event["metrics"])
        if event["type"] == ev.STAGE_COMPLETED:
            if isinstance(event.get("outputs"), dict):
                st.outputs = dict(event["outputs"])
        elif isinstance(event.get("error"), str):
            st.error = event["error"]
        return st


def _run_facts(paths: StatePaths, pipeline_id: str) -> tuple[dict[str, Any], bool, int | None, str]:
    """(run record, run lock held, holder's pid, pipeline state): a recorded 'running' whose
    process is gone reads 'interrupted'."""
    record = read_record(paths) or {}
    lock = RunLock(paths, pipeline_id)
    alive = lock.is_held_elsewhere()
    holder = lock.holder() if alive else None
    state = record.get("state") if isinstance(record.get("state"), str) else "pending"
    if state in ("running", "paused") and not alive:
        state = "interrupted"        # the process that ran it is gone (killed, crashed)
    pid = (holder or {}).get("pid")
    return record, alive, pid if type(pid) is int else None, state


def _checkpoint(paths: StatePaths) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(stages the checkpoint lists as complete, their outputs); nothing when there is no usable one."""
    try:
        data = read_checkpoint(paths.checkpoint)
    except Exception:  # noqa: BLE001 - PipelineError of any kind: a damaged checkpoint says nothing
        return [], {}
    return list(data.completed_stages), dict(data.stage_outputs)


def pipeline_status(session: PipelineSession) -> PipelineStatus:
    paths = session.paths
    record, alive, pid, state = _run_facts(paths, session.pipeline_id)
    run = _RunEvents(latest_run_events(paths.events, record))
    manifests = session.manifests()
    recorded = recorded_values(paths.db)
    source = session.pipeline.source
    locked = (lockfile.read(lockfile.lock_path(source)) if source else None) or {}
    stages = []
    history: dict[str, float] = {}
    for stage in session.pipeline.stages:
        data = mf.read(manifests[stage.id])
        if data is not None and _number(data.get("duration")) is not None:
            history[stage.id] = data["duration"]
        if data is None:
            output = ABSENT
        else:
            check = StageUpToDate(fingerprint(stage), manifests[stage.id])
            output = CURRENT if check(None, recorded.get(stage.id, {})) else OUTDATED
        st = run.describe(stage.id, stage_state(output, run.last.get(stage.id), alive), stage.type)
        if not st.outputs and data is not None:
            st.outputs = dict(data["outputs"])
        if st.state.done:
            _last_success(st, stage, data, recorded.get(stage.id, {}), locked)
        stages.append(st)
    _follow_upstream(session, stages)
    status = PipelineStatus(pipeline_id=session.pipeline_id, name=session.pipeline.name, state=state,
                            state_dir=paths.root, stages=stages, running_pid=pid,
                            started=_number(record.get("started_at")), finished=_number(record.get("finished_at")))
    if alive:
        status.eta = _eta(status, run.durations(), expected_durations(session, status, history))
    if state == "paused" and isinstance(record.get("paused_reason"), str):
        status.paused_reason = record["paused_reason"]
    if alive and isinstance(record.get("capacity"), dict):
        status.capacity = {k: v for k, v in record["capacity"].items() if isinstance(v, (int, float))}
    return status


def _last_success(st: StageStatus, stage, manifest: dict[str, Any] | None, values: dict[str, Any],
                  locked: dict[str, Any]) -> None:
    """Describe a done stage by the run that made its current outputs: the latest run's events
    when it ran in it, else what doit kept of its last successful run (times, attempts) and its
    manifest (metrics, version); the config it ran with; its input digests from the lock file."""
    if st.state == StageState.SUCCESS:
        st.produced_by = "latest"
    else:
        st.produced_by = "earlier"
        facts = values.get("_run")
        if isinstance(facts, dict):
            st.started, st.finished = _number(facts.get("started")), _number(facts.get("finished"))
            st.duration = _number(facts.get("duration"))
            st.attempts = facts.get("attempts") if type(facts.get("attempts")) is int else None
    if manifest is not None:
        if not st.metrics and isinstance(manifest.get("metrics"), dict):
            st.metrics = dict(manifest["metrics"])
        st.version = manifest.get("version") if isinstance(manifest.get("version"), str) else None
    st.params = dict(stage.fingerprint_config if stage.fingerprint_config is not None else stage.config)
    entry = locked.get(stage.id)
    if isinstance(entry, dict):
        st.inputs = {"files": entry.get("inputs") or {}, "upstream": entry.get("upstream") or {}}


_RERUNNING = {StageState.RUNNING, StageState.STALE, StageState.PENDING, StageState.INTERRUPTED}
_NOT_RUNNABLE = {StageState.FAILED, StageState.BLOCKED, StageState.CANCELLED}


def _follow_upstream(session: PipelineSession, stages: list[StageStatus]) -> None:
    """What a stage's own files cannot say: a complete stage waiting on an upstream stage that is
    (re)running or will rerun is stale (its input may change), and a stage that is not complete
    behind a failed one is blocked (it cannot run)."""
    by_id = {st.stage_id: st for st in stages}
    deps = {s.id: s.depends_on for s in session.pipeline.stages}
    for stage_id in session.stage_order():
        st = by_id[stage_id]
        upstream = {by_id[d].state for d in deps[stage_id]}
        if st.state in (StageState.UP_TO_DATE, StageState.SUCCESS) and upstream & _RERUNNING:
            st.state = StageState.STALE
        elif st.state == StageState.PENDING and upstream & _NOT_RUNNABLE:
            st.state = StageState.BLOCKED


def expected_durations(session: PipelineSession, status: PipelineStatus,
                       history: dict[str, float]) -> dict[str, float]:
    """Seconds each stage not done yet is expected to take: its duration in the run that last
    completed it (its manifest's), else its executor's `estimate_duration()`; stages with neither
    are left out (the ETA takes the mean of this run's stages for them)."""
    expected = {}
    for st in status.stages:
        if st.state.done:
            continue
        if st.stage_id in history:
            expected[st.stage_id] = history[st.stage_id]
            continue
        estimate = estimate_duration(session.pipeline.stage(st.stage_id))
        if estimate is not None:
            expected[st.stage_id] = estimate
    return expected


def estimate_duration(stage) -> float | None:
    """The executor's own estimate for a stage, or None (none given, or it could not tell)."""
    try:
        executor = get_executor_class(stage.type)(stage.id, stage.config)
        value = executor.estimate_duration()
    except Exception:  # noqa: BLE001 - an estimate must never break status
        return None
    return float(value) if _number(value) is not None and value >= 0 else None


def recorded_status(state_dir: str | os.PathLike) -> PipelineStatus:
    """The status of the run recorded in `state_dir` when its pipeline is not known: the stages the
    checkpoint and the latest run's events name, in that order, with no dependencies."""
    paths = StatePaths(state_dir)
    record = read_record(paths) or {}
    pipeline_id = record.get("pipeline_id") if isinstance(record.get("pipeline_id"), str) else paths.root.name
    record, alive, pid, state = _run_facts(paths, pipeline_id)
    run = _RunEvents(latest_run_events(paths.events, record))
    done, checkpoint_outputs = _checkpoint(paths)
    stages = []
    for stage_id in dict.fromkeys(done + run.order):
        st = run.describe(stage_id, stage_state(UNKNOWN, run.last.get(stage_id), alive, stage_id in done), None)
        if not st.outputs:
            st.outputs = dict(checkpoint_outputs.get(stage_id) or {})
        stages.append(st)
    name = record.get("name") if isinstance(record.get("name"), str) else paths.root.name
    return PipelineStatus(pipeline_id=pipeline_id, name=name, state=state, state_dir=paths.root, stages=stages,
                          running_pid=pid, started=_number(record.get("started_at")),
                          finished=_number(record.get("finished_at")))


def _eta(status: PipelineStatus, durations: list[float], expected: dict[str, float] | None = None) -> float | None:
    """Seconds left: the longest of the running stages' remaining times (their progress ETA, else
    their expected duration less the time they have run) plus the expected durations of the stages
    still to run (`expected`, else the mean duration of this run's finished stages)."""
    expected = expected or {}
    remaining = [s for s in status.stages if not s.state.done and s.state != StageState.RUNNING]
    mean = sum(durations) / len(durations) if durations else None
    eta = 0.0
    for s in status.current:
        p = s.progress or {}
        guess = expected.get(s.stage_id, mean)
        if _number(p.get("eta")) is not None:
            eta = max(eta, p["eta"])
        elif guess is not None and s.started:
            eta = max(eta, guess - (time.time() - s.started))
    for s in remaining:
        guess = expected.get(s.stage_id, mean)
        if guess is None:
            return None
        eta += guess
    return max(eta, 0.0)


# -- plan ------------------------------------------------------------------------------------------
@dataclass
class PlanEntry:
    """What a run would do with a stage: run it (`will_run`), run it only if an upstream stage that
    runs first produces different output (`may_run`: early cutoff decides), or neither (up to date,
    or `ignored` by `doit ignore`)."""
    stage_id: str
    will_run: bool
    reasons: list[str]
    may_run: bool = False
    ignored: bool = False


def plan(session: PipelineSession) -> list[PlanEntry]:
    task_dicts = session.tasks()
    tasks = {t["name"]: dict_to_task(t) for t in task_dicts}
    manifest_owner = {m: s for s, m in session.manifests().items()}
    by_id = {s.id: s for s in session.pipeline.stages}
    entries: dict[str, PlanEntry] = {}
    order = session.stage_order()
    if not session.paths.db.exists():
        return [PlanEntry(s, True, ["never run"]) for s in order]
    check_database(session.paths.db)
    dep = Dependency(DurableSqliteDB, str(session.paths.db), checker_cls=mf.ManifestChecker)
    dep.backend.preload()
    new_items = _new_items(session)
    try:
        for stage_id in order:
            entries[stage_id] = _plan_entry(stage_id, tasks, dep, by_id, entries, manifest_owner, new_items)
    finally:
        dep.backend._conn.close()
    return [entries[s] for s in order]


def _plan_entry(stage_id: str, tasks: dict, dep: Dependency, by_id: dict, entries: dict[str, PlanEntry],
                manifest_owner: dict[str, str], new_items: set[str]) -> PlanEntry:
    upstream = [entries[d] for d in by_id[stage_id].depends_on]
    ignored_up = [e.stage_id for e in upstream if e.ignored]
    known = dep._in(stage_id)           # before any other look-up: a look-up makes a record
    if known and dep.status_is_ignore(tasks[stage_id]):             # doit skips it, and what depends on it
        return PlanEntry(stage_id, False, ["ignored with `doit ignore`; `doit forget` ends that"], ignored=True)
    if ignored_up:
        return PlanEntry(stage_id, False, [f"upstream {_names(ignored_up)} is ignored"], ignored=True)
    reasons: list[str] = []
    if not known:
        reasons.append("new input" if stage_id in new_items else "never run")
    else:
        status = dep.get_status(tasks[stage_id], tasks, get_log=True)
        for kind, args in status.reasons.items():
            reasons.extend(_describe(kind, args, manifest_owner, dep, stage_id))
        added = next((r.split(": ", 1)[1].split() for r in reasons if r.startswith("items added: ")), ())
        reasons = [r for r in reasons if r not in {f"upstream '{a}' has no output yet" for a in added}]
    if reasons:
        return PlanEntry(stage_id, True, _condense(_unique(reasons)))
    runs = [e.stage_id for e in upstream if e.will_run]
    may = [e.stage_id for e in upstream if e.may_run]
    if not runs and not may:
        return PlanEntry(stage_id, False, [])
    why = []
    if runs:
        why.append(f"upstream {_names(runs)} will run")
    if may:
        why.append(f"upstream {_names(may)} may run")
    return PlanEntry(stage_id, False, [" and ".join(why) + "; this stage runs only if that changes its input"],
                     may_run=True)


def _names(stage_ids: list[str]) -> str:
    """'a', 'b', or for items of one batch stage 'frames' (3 items): one mention per stage."""
    groups: dict[str, int] = {}
    for stage_id in stage_ids:
        group = stage_id.partition(":")[0]
        groups[group] = groups.get(group, 0) + (1 if ":" in stage_id else 0)
    return ", ".join(f"'{g}'" + (f" ({n} item{'s' if n > 1 else ''})" if n else "") for g, n in groups.items())


def _condense(reasons: list[str]) -> list[str]:
    """"upstream 'frames:ep01' changed", "upstream 'frames:ep02' changed" -> one reason naming the stage."""
    import re
    out: list[str] = []
    merged: dict[str, list[str]] = {}
    for reason in reasons:
        match = re.fullmatch(r"upstream '([^':]+):([^']+)' (.+)", reason)
        if not match:
            out.append(reason)
            continue
        key = f"{match.group(1)}\0{match.group(3)}"
        if key not in merged:
            merged[key] = []
            out.append(key)
        merged[key].append(f"{match.group(1)}:{match.group(2)}")
    return [f"upstream {_names(merged[r])} {r.partition(chr(0))[2]}" if r in merged else r for r in out]


def _new_items(session: PipelineSession) -> set[str]:
    """Items of batch stages that existed at the last run which that run did not know: their input
    appeared since (a new file under the glob, a new entry in the list)."""
    _, known = read_registry(session)
    groups_known = {stage_id.partition(":")[0] for stage_id in known}
    return {s.id for s in session.pipeline.stages
            if s.group is not None and s.group in groups_known and s.id not in known}


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
                out.append(f"upstream '{owner}' changed" if kind == "changed_file_dep"
                           else f"upstream '{owner}' has no output yet")
            else:
                out.append(f"input file changed: {f}" if kind == "changed_file_dep" else f"input file missing: {f}")
        return out
    if kind in ("added_file_dep", "removed_file_dep"):
        files = sorted(args) if isinstance(args, (list, set, tuple)) else [args]
        owners = [manifest_owner.get(f) for f in files]
        if kind == "added_file_dep" and files and all(o and ":" in o for o in owners):
            return ["items added: " + " ".join(sorted(owners, key=item_order))]     # a gather's new items
        return ["dependencies changed"] if args else []
    if kind == "checker_changed":
        return ["file checker changed"]
    return [kind.replace("_", " ")]
