"""What a stage attempt used: peak memory, CPU time, wall time, bytes written, GPU memory.

`measure()` brackets one attempt. CPU seconds and bytes written are the differences of the running
process's counters (which include every child it has waited for: the kernel adds a reaped child's
CPU time and I/O to its parent's), so they are exact for the attempt's whole process tree and cost
two reads of `/proc/self`. Peak RSS is the largest of: this process's high-water mark, reset when
the attempt starts (`/proc/self/clear_refs`); the largest waited-for child; and the sum over the
live process tree (this process and its descendants) sampled every `interval` seconds by one
thread per process, which sleeps between attempts. GPU memory and utilisation are sampled the
same way on the attempt's devices when NVML (`pynvml`, from the `nvidia-ml-py` package) is present.

`TreeWatch` watches another process's tree (a stage attempt run in a child) against a memory
limit, so that a stage going past its `mem_gb` is stopped with a clear error before the kernel's
OOM killer picks a victim.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024
SAMPLE_INTERVAL = 0.5          # seconds between samples of a running attempt's process tree
LIMIT_INTERVAL = 0.1           # seconds between checks of an attempt against its memory limit


def tree_rss(root: psutil.Process) -> int:
    """Resident memory of `root` and its live descendants, in bytes (shared pages count in each)."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _written(proc: psutil.Process) -> int:
    try:
        return proc.io_counters().write_bytes
    except (psutil.Error, AttributeError, NotImplementedError):
        return 0


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _high_water_mark() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children_max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


class _Gpu:
    """NVML, when installed and a driver answers; otherwise nothing is measured."""

    _nvml = None
    _tried = False

    @classmethod
    def lib(cls):
        if not cls._tried:
            cls._tried = True
            try:
                import pynvml
                pynvml.nvmlInit()
                cls._nvml = pynvml
            except Exception:       # no package, no driver, no device: GPU figures are left out
                cls._nvml = None
        return cls._nvml

    @classmethod
    def sample(cls, devices: tuple[str, ...], pids: set[int]) -> tuple[int, float] | None:
        """(memory in bytes used by `pids` on `devices`, mean utilisation %) or None."""
        nvml = cls.lib()
        if nvml is None or not devices:
            return None
        used, utilisation = 0, []
        try:
            for device in devices:
                handle = (nvml.nvmlDeviceGetHandleByIndex(int(device)) if device.isdigit()
                          else nvml.nvmlDeviceGetHandleByUUID(device))
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid in pids and proc.usedGpuMemory:
                        used += proc.usedGpuMemory
                utilisation.append(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            return None
        return used, sum(utilisation) / len(utilisation)


@dataclass
class Usage:
    """One attempt's figures, as they go into the manifest's `metrics.resources` and the events."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    disk_write_mb: float = 0.0
    gpu_peak_mem_mb: float | None = None
    gpu_util_percent: float | None = None
    samples: int = 0
    _rss: int = field(default=0, repr=False)
    _gpu_mem: int = field(default=0, repr=False)
    _gpu_util: list[float] = field(default_factory=list, repr=False)

    def note_rss(self, rss: int) -> None:
        if rss > self._rss:
            self._rss = rss

    def note_gpu(self, sample: tuple[int, float] | None) -> None:
        if sample is not None:
            self._gpu_mem = max(self._gpu_mem, sample[0])
            self._gpu_util.append(sample[1])

    def as_dict(self) -> dict:
        out = {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
               "peak_rss_mb": round(self._rss / MB, 1), "disk_write_mb": round(self.disk_write_mb, 3)}
        if self._gpu_util:
            out["gpu_peak_mem_mb"] = round(self._gpu_mem / MB, 1)
            out["gpu_util_percent"] = round(sum(self._gpu_util) / len(self._gpu_util), 1)
        return out


def describe(usage: dict) -> str:
    """`cpu 1.20 s, peak 312 MB, wrote 40.0 MB, gpu 0 (2,048 MB)`: one stage's usage in a line."""
    parts = [f"cpu {usage.get('cpu_s', 0):.2f} s", f"peak {usage.get('peak_rss_mb', 0):,.0f} MB",
             f"wrote {usage.get('disk_write_mb', 0):,.1f} MB"]
    if usage.get("gpu_devices"):
        gpu = f"gpu {','.join(usage['gpu_devices'])}"
        if usage.get("gpu_peak_mem_mb") is not None:
            gpu += f" ({usage['gpu_peak_mem_mb']:,.0f} MB, {usage.get('gpu_util_percent', 0):.0f}%)"
        parts.append(gpu)
    elif usage.get("device") == "cpu":
        parts.append("on the cpu")
    return ", ".join(parts)


class _Sampler:
    """One thread per process that samples the process tree of the attempt in progress."""

    def __init__(self, interval: float):
        self.interval = interval
        self.current: tuple[Usage, tuple[str, ...]] | None = None
        self.wake = threading.Event()
        self.pid = os.getpid()
        self.me = psutil.Process()
        thread = threading.Thread(target=self._loop, name="pipeline-tasks-usage", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            while self.current is not None:
                time.sleep(self.interval)
                current = self.current
                if current is None:
                    break
                usage, devices = current
                usage.note_rss(tree_rss(self.me))
                usage.samples += 1
                if devices:
                    pids = {self.pid, *(p.pid for p in self.me.children(recursive=True))}
                    usage.note_gpu(_Gpu.sample(devices, pids))
            self.wake.clear()


_sampler: _Sampler | None = None


def _process_sampler(interval: float) -> _Sampler:
    global _sampler
    if _sampler is None or _sampler.pid != os.getpid():      # threads do not survive a fork
        _sampler = _Sampler(interval)
    return _sampler


class measure:
    """`with measure(gpu_devices) as usage:` ... `usage.as_dict()` once the block has ended."""

    def __init__(self, gpu_devices: tuple[str, ...] = (), interval: float = SAMPLE_INTERVAL):
        self.usage = Usage()
        self.devices = tuple(gpu_devices)
        self.interval = interval

    def __enter__(self) -> Usage:
        self.sampler = _process_sampler(self.interval)
        me = self.sampler.me
        self.cpu0, self.written0 = _cpu_seconds(me), _written(me)
        self.children0 = _children_max_rss()
        self.reset = _reset_high_water_mark()
        self.t0 = time.monotonic()
        self.sampler.current = (self.usage, self.devices)
        self.sampler.wake.set()
        return self.usage

    def __exit__(self, *exc) -> None:
        self.sampler.current = None
        me, usage = self.sampler.me, self.usage
        usage.wall_s = time.monotonic() - self.t0
        usage.cpu_s = _cpu_seconds(me) - self.cpu0
        usage.disk_write_mb = (_written(me) - self.written0) / MB
        usage.note_rss(_high_water_mark() if self.reset else me.memory_info().rss)
        children = _children_max_rss()
        if children > self.children0:          # a child that ended during the attempt peaked higher
            usage.note_rss(children)


class TreeWatch:
    """Samples process `pid` and its descendants every `interval` s in a thread; calls
    `on_limit(rss)` once if their resident memory goes above `limit` bytes."""

    def __init__(self, pid: int, limit: int, on_limit: Callable[[int], None], usage: Usage | None = None,
                 interval: float = LIMIT_INTERVAL):
        self.root = psutil.Process(pid)
        self.limit = limit
        self.on_limit = on_limit
        self.usage = usage
        self.interval = interval
        self.peak = 0
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline-tasks-mem-limit", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            rss = tree_rss(self.root)
            self.peak = max(self.peak, rss)
            if self.usage is not None:
                self.usage.note_rss(rss)
            if rss > self.limit and not self.tripped:
                self.tripped = True
                self.on_limit(rss)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
