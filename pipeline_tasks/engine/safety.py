"""The run's safety guard: limits on free disk, memory and GPU memory that pause the run.

While a limit of the pipeline's `safety:` is crossed, or while `pipeline-tasks pause` holds it,
the run is PAUSED: the `pause` file exists in the state folder, no stage starts, and the running
stages are stopped (`on_exhaustion: suspend`: SIGSTOP to their processes, SIGCONT on resume;
`cancel`: interrupted and started again on resume, a batch stage's finished items kept). A stage
running in the run's own process (no `-n`) pauses at its next progress report, its child
processes at once. The run continues by itself when the resource recovers (`pipeline.resumed`)
or after `pipeline-tasks resume`; a limit still crossed after `pause_timeout` seconds fails the
running stages, and the run, with a `resource_exhausted` error (`ResourceExhaustedError`), which a
stage's retry policy may retry.

One `Guard` per run, in the run's main process: a thread looks at the pause file every `tick`
and measures every `check_interval`; the runners (`engine.scheduler`) ask it `may_start()`.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import atomic
from ..models import PipelineState, SafetySettings
from ..state import events as ev
from ..state.events import EventBus
from ..state.paths import StatePaths, update_record
from . import runtime
from .runtime import StagePreempted

if TYPE_CHECKING:
    import psutil

GB = 1024 ** 3
PREEMPT_SIGNAL = signal.SIGUSR1


def install_preempt_handler(paths: StatePaths) -> None:
    """In a process that runs stages: PREEMPT_SIGNAL raises StagePreempted in the stage it is
    running (and is ignored between stages). The reason is read from the pause file."""

    def handler(signum, frame):
        if not runtime.in_attempt():
            return
        info = read_pause(paths) or {}
        raise StagePreempted(info.get("reason") or "the run was paused", requeue=not info.get("failed"))
    signal.signal(PREEMPT_SIGNAL, handler)


def read_pause(paths: StatePaths) -> dict | None:
    """The pause file's content ({"by": "user"|"guard", "reason": ..., "figures": ...}), or None."""
    try:
        data = json.loads(paths.pause_flag.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"by": "user", "reason": "paused"}
    return data if isinstance(data, dict) else {"by": "user", "reason": "paused"}


def write_pause(paths: StatePaths, **info) -> None:
    atomic.write_json(paths.pause_flag, info)


def watched_folders(folders: list[str]) -> list[str]:
    """One folder per file system among `folders` (each taken at its nearest existing ancestor)."""
    seen: dict[int, str] = {}
    missing_at: dict[str, tuple[str, int] | None] = {}   # a missing folder's parent -> where it exists
    cwd = os.getcwd()           # once: os.path.abspath asks the kernel for it on every call
    for folder in folders:      # one stat a folder (a batch has thousands, most under a few parents)
        found = _existing(os.path.normpath(os.path.join(cwd, folder)), missing_at)
        if found is not None:
            seen.setdefault(found[1], found[0])
    return list(seen.values())


def _existing(path: str, missing_at: dict[str, tuple[str, int] | None]) -> tuple[str, int] | None:
    """(nearest existing ancestor of `path` or itself, its device); looked up once per parent of a
    missing folder."""
    try:
        return path, os.stat(path).st_dev
    except OSError:
        parent = os.path.dirname(path)
        if parent == path:
            return None
    if parent not in missing_at:
        missing_at[parent] = _existing(parent, missing_at)
    return missing_at[parent]


@dataclass
class Reading:
    """What one check found: the limits crossed (in words) and the figures measured."""
    problems: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def check(settings: SafetySettings, folders: list[str], gpu_devices: tuple[str, ...] = ()) -> Reading:
    import psutil
    reading = Reading()
    for folder in folders:
        try:
            free = psutil.disk_usage(folder).free / GB
        except OSError:
            continue
        reading.figures.setdefault("free_disk_gb", {})[folder] = round(free, 4)
        if free < settings.min_free_disk_gb:
            reading.problems.append(f"free disk on {folder}: {free:.3f} GB, below min_free_disk_gb "
                                    f"{settings.min_free_disk_gb:g}")
    memory = psutil.virtual_memory().percent
    reading.figures["memory_percent"] = memory
    if memory > settings.max_memory_percent:
        reading.problems.append(f"memory in use: {memory:.1f}%, above max_memory_percent "
                                f"{settings.max_memory_percent:g}")
    for device, percent in _gpu_memory_percent(gpu_devices).items():
        reading.figures.setdefault("gpu_memory_percent", {})[device] = percent
        if percent > settings.max_gpu_memory_percent:
            reading.problems.append(f"memory of GPU {device} in use: {percent:.1f}%, above max_gpu_memory_percent "
                                    f"{settings.max_gpu_memory_percent:g}")
    return reading


def _gpu_memory_percent(devices: tuple[str, ...]) -> dict[str, float]:
    if not devices:
        return {}
    from .usage import _Gpu
    nvml = _Gpu.lib()
    if nvml is None:
        return {}
    out = {}
    try:
        for device in devices:
            handle = (nvml.nvmlDeviceGetHandleByIndex(int(device)) if device.isdigit()
                      else nvml.nvmlDeviceGetHandleByUUID(device))
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            out[device] = round(100.0 * info.used / info.total, 1) if info.total else 0.0
    except Exception:       # a device NVML cannot read: not measured
        return out
    return out


class Guard:
    """Pauses and resumes the run; see the module's docstring."""

    def __init__(self, settings: SafetySettings, paths: StatePaths, pipeline_id: str, folders: list[str],
                 bus: EventBus, gpu_devices: tuple[str, ...] = (), tick: float = 0.2):
        self.settings = settings
        self.paths = paths
        self.pipeline_id = pipeline_id
        self.folders = watched_folders(folders)
        self.bus = bus
        self.gpu_devices = gpu_devices
        self.tick = min(tick, settings.check_interval)
        self.paused_since: float | None = None
        self.failed: str | None = None        # the resource_exhausted message, once pause_timeout has passed
        self.reason = ""
        self.stage_processes: Callable[[], list[int]] = lambda: []   # root pids of processes running stages
        self.can_interrupt = True              # the stage processes handle PREEMPT_SIGNAL
        self._stopped: list[psutil.Process] = []
        self._by = ""
        self._figures: dict = {}
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._end = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the runners ask ---------------------------------------------------------------------
    def may_start(self) -> bool:
        if self.paused_since is None and self.failed is None and self._next_check == 0.0:
            self.poll()                        # the first stage: measured before it starts
        return self.paused_since is None and self.failed is None

    def holding(self) -> bool:
        """Paused, and able to go on (not failed)."""
        return self.paused_since is not None and self.failed is None

    def wait(self, seconds: float) -> None:
        self._end.wait(min(seconds, self.tick))

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> Guard:
        self._thread = threading.Thread(target=self._loop, name="pipeline-tasks-safety", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._end.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._continue_stopped()
            if self._by == "guard":
                self.paths.pause_flag.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._end.wait(self.tick):
            try:
                self.poll()
            except OSError:           # a state file that cannot be written: the run reports it itself
                pass

    def poll(self) -> None:
        """Look at the pause file, measure when `check_interval` has passed, act on the result."""
        with self._lock:
            if self.failed is not None:
                return
            now = time.monotonic()
            flag = read_pause(self.paths)
            reading = None
            if now >= self._next_check:
                self._next_check = now + self.settings.check_interval
                reading = check(self.settings, self.folders, self.gpu_devices)
                self._figures = reading.figures
            if self.paused_since is None:
                if flag is not None and flag.get("by") != "guard":
                    self._pause("user", flag.get("reason") or "paused by pipeline-tasks pause", self._figures)
                elif reading is not None and reading.problems:
                    self._pause("guard", "; ".join(reading.problems), reading.figures)
                return
            # paused
            if self._by == "user":
                if flag is None:               # `pipeline-tasks resume`
                    self._resume()
                return
            if flag is not None and flag.get("by") != "guard":
                self._by = "user"              # held by hand now as well
                return
            if reading is not None and not reading.problems:
                self._resume()
            elif flag is None and reading is None:
                self._resume()                 # the pause file was removed by hand: look again next check
                self._next_check = 0.0
            elif now - self.paused_since > self.settings.pause_timeout:
                self._fail(now)

    # -- acting ---------------------------------------------------------------------------------------
    def _pause(self, by: str, reason: str, figures: dict) -> None:
        self.paused_since = time.monotonic()
        self._by, self.reason = by, reason
        if by == "guard":
            write_pause(self.paths, by="guard", reason=reason, figures=figures, since=time.time())
        roots = self.stage_processes()
        cancel = self.settings.on_exhaustion == "cancel" and by == "guard"
        stopped = [] if cancel else self._stop_trees(roots)
        update_record(self.paths, state=PipelineState.PAUSED.value, paused_reason=reason)
        self.bus.emit(ev.PIPELINE_PAUSED, pipeline_id=self.pipeline_id, by=by, reason=reason, figures=figures,
                      on_exhaustion="cancel" if cancel else "suspend", stopped_processes=len(stopped))
        if cancel:                      # after the event: the stages' own events follow it
            self._signal_roots(roots, PREEMPT_SIGNAL)

    def _resume(self) -> None:
        paused_for = time.monotonic() - (self.paused_since or time.monotonic())
        if self._by == "guard":
            self.paths.pause_flag.unlink(missing_ok=True)
        self._continue_stopped()
        self.paused_since = None
        self._by = ""
        update_record(self.paths, state=PipelineState.RUNNING.value, paused_reason=None)
        self.bus.emit(ev.PIPELINE_RESUMED, pipeline_id=self.pipeline_id, paused_for=round(paused_for, 3),
                      figures=self._figures)

    def _fail(self, now: float) -> None:
        self.failed = (f"resource exhausted for {now - (self.paused_since or now):.0f} s "
                       f"(safety.pause_timeout {self.settings.pause_timeout:g} s): {self.reason}")
        write_pause(self.paths, by="guard", reason=self.failed, figures=self._figures, failed=True)
        self._signal_roots(self.stage_processes(), PREEMPT_SIGNAL)
        self._continue_stopped()
        update_record(self.paths, state=PipelineState.RUNNING.value, paused_reason=None)

    def _stop_trees(self, roots: list[int]) -> list[psutil.Process]:
        import psutil
        me = os.getpid()
        procs: list[psutil.Process] = []
        for pid in roots:
            try:
                root = psutil.Process(pid)
                procs.extend(([] if pid == me else [root]) + root.children(recursive=True))
            except psutil.Error:
                continue
        for proc in procs:
            try:
                proc.send_signal(signal.SIGSTOP)
                self._stopped.append(proc)
            except psutil.Error:
                pass
        return self._stopped

    def _continue_stopped(self) -> None:
        import psutil
        for proc in self._stopped:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.Error:
                pass
        self._stopped = []

    def _signal_roots(self, roots: list[int], sig: int) -> None:
        if not self.can_interrupt:
            return
        for pid in roots:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
