"""EventBus: subscribe / emit, and every event appended to `events.jsonl` by the emitting process."""
from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import redaction
from ..atomic import append_line, pid

PIPELINE_STARTED = "pipeline.started"
STAGE_STARTED = "pipeline.stage_started"
STAGE_COMPLETED = "pipeline.stage_completed"
STAGE_FAILED = "pipeline.stage_failed"
STAGE_RETRY = "pipeline.stage_retry"
PIPELINE_COMPLETED = "pipeline.completed"
PIPELINE_FAILED = "pipeline.failed"
PIPELINE_CANCELLED = "pipeline.cancelled"
STAGE_PROGRESS = "stage.progress"
STAGE_ITEMS = "pipeline.stage_items"        # a batch stage's item counts (done, failed, total)
PIPELINE_PAUSED = "pipeline.paused"         # no stage starts: a safety limit crossed, or `pipeline-tasks pause`
PIPELINE_RESUMED = "pipeline.resumed"

EVENT_TYPES = (PIPELINE_STARTED, STAGE_STARTED, STAGE_COMPLETED, STAGE_FAILED, STAGE_RETRY,
               PIPELINE_COMPLETED, PIPELINE_FAILED, PIPELINE_CANCELLED, STAGE_PROGRESS, STAGE_ITEMS,
               PIPELINE_PAUSED, PIPELINE_RESUMED)

Handler = Callable[[dict[str, Any]], None]


_ENCODE = json.JSONEncoder(default=str, sort_keys=True).encode


class EventBus:
    """Publish/subscribe for pipeline events.

    `subscribe("pipeline.*", fn)` or an exact type; `"*"` gets everything. When `log_path` is set,
    each event is also appended to that JSON-lines file (one `write` per event, so several processes
    can share the file). `redact` lists secret strings that must never reach the file.
    """

    def __init__(self, log_path: str | os.PathLike | None = None, redact: list[str] | None = None):
        self._log_file = os.fspath(log_path) if log_path else None
        self.redact = [r for r in (redact or []) if r]
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path | None:
        return Path(self._log_file) if self._log_file else None

    def subscribe(self, event_type: str, handler: Handler) -> Callable[[], None]:
        with self._lock:
            self._handlers[event_type].append(handler)

        def unsubscribe() -> None:
            with self._lock:
                if handler in self._handlers[event_type]:
                    self._handlers[event_type].remove(handler)
        return unsubscribe

    def emit(self, event_type: str, data: dict[str, Any] | None = None, /, **payload: Any) -> dict[str, Any]:
        """Publish an event: `emit("pipeline.started", {"pipeline_id": ..., "name": ...})`, or with
        the fields as keywords. Handlers get the fields plus `type`, `time` and `pid`."""
        event = {"type": event_type, "time": time.time(), "pid": pid(), **(data or {}), **payload}
        self.dispatch(event)
        return event

    def dispatch(self, event: dict[str, Any]) -> None:
        """Log (when the bus has a file) and hand to the handlers an event made elsewhere."""
        event_type = event["type"]
        if self._log_file is not None:
            line = _ENCODE(event)
            append_line(self._log_file, redaction.redact(line, self.redact) if self.redact else line)
        if self._handlers:
            with self._lock:
                handlers = list(self._handlers.get(event_type, ()))
                prefix = event_type.split(".")[0] + ".*"
                handlers += self._handlers.get(prefix, []) + self._handlers.get("*", [])
            for handler in handlers:
                handler(event)


def read_events(path: str | os.PathLike, offset: int = 0, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Events of an `events.jsonl` from byte `offset` on (the run record keeps where the latest run
    starts); with `types`, only events of those types (a line that names none of them is not
    parsed). A line that is not a JSON object with a string `type` (a torn last line from a killed
    writer, bytes that are not UTF-8, anything else) is skipped: the log is a record for people
    and for status, never a reason for them to fail."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    wanted = None if types is None else frozenset(types)
    marks = None if wanted is None else [json.dumps(t).encode() for t in wanted]
    events = []
    with fh:
        fh.seek(max(offset, 0))
        for line in fh:
            if marks is not None and not any(mark in line for mark in marks):
                continue
            try:
                event = json.loads(line)
            except ValueError:          # JSONDecodeError and UnicodeDecodeError
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str) \
                    and (wanted is None or event["type"] in wanted):
                events.append(event)
    return events


def latest_run_events(path, record: dict[str, Any] | None, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Events of the latest run (from the offset its run record keeps, else scanning
    back to the last `pipeline.started`); with `types`, only those (and `pipeline.started`)."""
    offset = (record or {}).get("events_offset", 0)
    if types is not None:
        types = {*types, PIPELINE_STARTED}
    events = read_events(path, offset if isinstance(offset, int) else 0, types)
    for i in range(len(events) - 1, -1, -1):
        if events[i]["type"] == PIPELINE_STARTED:
            return events[i:]
    return events
