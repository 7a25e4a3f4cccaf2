"""Progress on the terminal, fed by `stage.progress` events from whichever process runs a stage.

`ProgressDisplay` tails `events.jsonl` in a thread: a rich progress bar per running stage
(stage, done/total, rate, ETA) on a TTY, plain throttled lines otherwise. Because the file is the
channel, it works the same for stages in doit's worker processes and for `status --follow`.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..state import events as ev


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(event: dict[str, Any]) -> str:
    total = event.get("total")
    done = event.get("done", 0)
    unit = event.get("unit", "items")
    pct = f" {100 * done / total:5.1f}%" if total else ""
    of = f"/{total}" if total is not None else ""
    return (f"  {event['stage_id']}: {done}{of} {unit}{pct}  {event.get('rate', 0):.1f} {unit}/s  "
            f"ETA {format_eta(event.get('eta'))}" + (f"  {event['message']}" if event.get("message") else ""))


READ_LIMIT = 16 << 20        # bytes read at most per call: a huge backlog is taken in several calls


class EventTail:
    """Reads new complete lines appended to an events file since the last call."""

    def __init__(self, path: str | os.PathLike, from_end: bool = True):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if (from_end and self.path.exists()) else 0
        self._buffer = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):     # a device or a pipe is no event log
                    return []
                fh.seek(self.offset)
                data = fh.read(READ_LIMIT)
        except OSError:
            return []
        self.offset += len(data)
        data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                out.append(event)
        return out


class ProgressDisplay:
    """Shows item progress of running stages; `subscribe`-style callbacks get every event."""

    def __init__(self, events_path: str | os.PathLike, *, stream: TextIO | None = None,
                 interval: float = 0.25, plain_every: float = 2.0, tty: bool | None = None):
        self.tail = EventTail(events_path)
        self.stream = stream or sys.stderr
        self.interval = interval
        self.plain_every = plain_every
        self.tty = self.stream.isatty() if tty is None else tty
        self.callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_plain: dict[str, float] = {}
        self._progress = None
        self._bars: dict[str, Any] = {}

    def on_event(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.callbacks.append(callback)

    def start(self) -> ProgressDisplay:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                      console=Console(file=self.stream), transient=True)
            self._progress.start()
        self._thread = threading.Thread(target=self._run, name="pipeline-progress", daemon=True)
        self._thread.start()
        return self

    @property
    def live(self) -> bool:
        """Bars are drawn in place (a TTY): other output must go through `print_above`."""
        return self._progress is not None

    def print_above(self, text: str) -> None:
        """Print `text` above the bars, which are redrawn below it (a line written past them would
        be drawn over at their next refresh)."""
        self._progress.console.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.poll()
        if self._progress is not None:
            self._progress.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        for event in self.tail.read():
            for callback in self.callbacks:
                callback(event)
            self.handle(event)

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        stage = event.get("stage_id")
        if kind == ev.STAGE_PROGRESS:
            if self._progress is not None:
                bar = self._bars.get(stage)
                if bar is None:
                    bar = self._bars[stage] = self._progress.add_task(stage, total=event.get("total"), rate="")
                self._progress.update(bar, completed=event.get("done", 0), total=event.get("total"),
                                      rate=f"{event.get('rate', 0):.1f} {event.get('unit', '')}/s")
            else:
                now = time.monotonic()
                finished = event.get("total") is not None and event.get("done", 0) >= event["total"]
                if finished or now - self._last_plain.get(stage, 0) >= self.plain_every:
                    self._last_plain[stage] = now
                    print(progress_line(event), file=self.stream, flush=True)
        elif kind == ev.STAGE_ITEMS:
            self._items(event)
        elif kind in (ev.STAGE_COMPLETED, ev.STAGE_FAILED) and self._progress is not None:
            bar = self._bars.pop(stage, None)
            if bar is not None:
                self._progress.remove_task(bar)

    def _items(self, event: dict[str, Any]) -> None:
        """A batch stage's item count (`segment 7/12 items`): a bar that stays, or a plain line."""
        stage, done, total = event["stage_id"], event.get("done", 0), event.get("total")
        failed = len(event.get("failed") or ())
        key = f"{stage} items"
        if self._progress is not None:
            bar = self._bars.get(key)
            if bar is None:
                bar = self._bars[key] = self._progress.add_task(key, total=total, rate="")
            self._progress.update(bar, completed=done + failed, total=total,
                                  rate=f"{failed} failed" if failed else "")
            return
        now = time.monotonic()
        if done + failed >= (total or 0) or now - self._last_plain.get(key, 0) >= self.plain_every:
            self._last_plain[key] = now
            print(f"  {stage}: {done}/{total} items" + (f", {failed} failed" if failed else ""),
                  file=self.stream, flush=True)
