"""What a stage attempt used: peak memory, CPU time, wall time, bytes written, GPU memory.

`measure()` brackets one attempt. CPU seconds and bytes written are differences of this
process's `getrusage` counters, of itself and of its waited-for children (the kernel adds a
reaped child's CPU time and block output to its parent's), so they are exact for the attempt's
whole process tree and cost four system calls an attempt (bytes written are counted in 512-byte
blocks, the kernel's `write_bytes` of `/proc/PID/io`). Peak RSS is the largest of: this process's
high-water mark when the attempt raised it (else what it holds at the end), the largest child
waited for when the attempt raised that, and the sum over the live process tree (this process and
its descendants, one pass over /proc) sampled every `SAMPLE_INTERVAL` seconds by one thread per
process, which sleeps between attempts and leaves alone an attempt younger than one interval (a
short stage pays nothing for it). GPU memory and utilisation are sampled the same way on the
attempt's devices when NVML (`pynvml`, from the `nvidia-ml-py` package) is present.

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

MB = 1024 * 1024
SAMPLE_INTERVAL = 1.0          # seconds between samples of a running attempt's process tree
LIMIT_INTERVAL = 0.1           # seconds between checks of an attempt against its memory limit
RESCAN_INTERVAL = 1.0          # seconds between looks for new processes in a watched tree
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = os.path.isdir("/proc/self")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, resident bytes) of `pid` from one read of /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[1]), int(fields[21]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int) -> set[int]:
    """`root` and every live process below it: one pass over /proc (psutil where there is none)."""
    if not _PROC:
        import psutil
        try:
            proc = psutil.Process(root)
            return {root, *(p.pid for p in proc.children(recursive=True))}
        except psutil.Error:
            return set()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry.name))
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def rss_of(pids: set[int]) -> int:
    """Resident memory of `pids` together, in bytes (shared pages count in each)."""
    total = 0
    for pid in pids:
        if _PROC:
            info = _stat(pid)
            total += info[1] if info else 0
        else:
            import psutil
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
    return total


def tree_rss(root: int) -> int:
    """Resident memory of `root` and its live descendants, in bytes."""
    return rss_of(descendants(root))


def _times() -> tuple[resource.struct_rusage, resource.struct_rusage]:
    return resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


BLOCK = 512         # the unit of `ru_oublock`: the kernel counts `write_bytes >> 9`


class _Own:
    """This process's /proc/self files, kept open (one `pread` a reading, no open and close)."""

    pid = -1
    fds: dict[str, int] = {}

    @classmethod
    def read(cls, name: str) -> bytes:
        if cls.pid != os.getpid():              # a forked child: its own files
            cls.pid, cls.fds = os.getpid(), {}
        fd = cls.fds.get(name)
        if fd is None:
            fd = cls.fds[name] = os.open(f"/proc/self/{name}", os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, 4096, 0)


def _own_rss() -> int:
    try:
        return int(_Own.read("statm").split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return rss_of({os.getpid()})


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
        self.current: tuple[Usage, tuple[str, ...], float] | None = None   # usage, devices, start
        self.pid = os.getpid()
        thread = threading.Thread(target=self._loop, name="pipeline-tasks-usage", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:                     # asleep between samples: an attempt only sets `current`
            time.sleep(self.interval)
            current = self.current
            if current is None:
                continue
            usage, devices, started = current
            if time.monotonic() - started < self.interval:     # a short attempt is not sampled
                continue
            pids = descendants(self.pid)
            usage.note_rss(rss_of(pids))
            usage.samples += 1
            if devices:
                usage.note_gpu(_Gpu.sample(devices, pids))


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
        self.self0, self.children0 = _times()
        self.t0 = time.monotonic()
        self.sampler.current = (self.usage, self.devices, self.t0)
        return self.usage

    def __exit__(self, *exc) -> None:
        self.sampler.current = None
        usage = self.usage
        usage.wall_s = time.monotonic() - self.t0
        self1, children1 = _times()
        usage.cpu_s = _cpu(self1) - _cpu(self.self0) + _cpu(children1) - _cpu(self.children0)
        blocks = (self1.ru_oublock - self.self0.ru_oublock) + (children1.ru_oublock - self.children0.ru_oublock)
        usage.disk_write_mb = blocks * BLOCK / MB
        # a new high-water mark of this process, or of the largest child waited for, was set
        # during the attempt: exact; otherwise what this process holds now (and the samples)
        if self1.ru_maxrss > self.self0.ru_maxrss:
            usage.note_rss(self1.ru_maxrss * 1024)
        else:
            usage.note_rss(_own_rss())
        if children1.ru_maxrss > self.children0.ru_maxrss:
            usage.note_rss(children1.ru_maxrss * 1024)


class TreeWatch:
    """Samples process `pid` and its descendants every `interval` s in a thread; calls
    `on_limit(rss)` once if their resident memory goes above `limit` bytes. Between looks for new
    processes (every RESCAN_INTERVAL s) it reads only the processes it knows."""

    def __init__(self, pid: int, limit: int, on_limit: Callable[[int], None], usage: Usage | None = None,
                 interval: float = LIMIT_INTERVAL):
        self.root = pid
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
        members: set[int] = set()
        rescan = 0.0
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if now >= rescan:
                members = descendants(self.root)
                rescan = now + RESCAN_INTERVAL
            rss = rss_of(members)
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
