"""Child process groups that die with the process that started them.

A stage that runs a command (or a stage attempt with a timeout) runs it in a process group of its
own, so that a timeout or a cancel can stop the command and everything it started. That also puts
the group out of reach of a signal sent to the run's own group (`kill -9 -PGID` from a terminal, a
job scheduler, a test), which would leave the command writing into an output folder after the run,
and its locks, are gone. So each such group is watched by a guard: one `/bin/sh` per process, in a
session of its own, that reads `+ PGID` / `- PGID` lines from a pipe the process holds. When every
process holding the pipe has ended (killed, or exited) the guard reads the end of the pipe and
kills the groups still watched, and their leaders by pid in case a leader had not made its group
yet. Watching a group costs one short write.

    with process_groups.start(["/bin/sh", "-c", command], stdout=PIPE) as proc:
        out, _ = proc.communicate()

or, for a group made another way, `guard = process_groups.Guard(pid)` ... `guard.release()`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

# the watched groups are kept as " 12 34 56 " (POSIX sh has no arrays)
_GUARD = """
groups=" "
while read -r op pgid; do
  case "$op" in
    +) groups="$groups$pgid " ;;
    -) case "$groups" in *" $pgid "*) groups="${groups%% $pgid *} ${groups#* $pgid }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" "$g" 2>/dev/null; done
"""

_lock = threading.Lock()
_guard: subprocess.Popen | None = None      # this process's guard (a forked child writes to its parent's)


def _tell(line: str) -> None:
    """Send one line to the guard, starting it first if this process has none (or it was killed:
    a pipe with no reader fails the write)."""
    global _guard
    data = line.encode()
    with _lock:
        for _attempt in range(2):
            if _guard is None:
                _guard = subprocess.Popen(["/bin/sh", "-c", _GUARD], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            try:
                os.write(_guard.stdin.fileno(), data)
                return
            except BrokenPipeError:
                _guard = None
        raise OSError("the guard of child process groups (/bin/sh) stops at once")


class Guard:
    """Kills process group `pgid` (and process `pgid`) if every process of this run dies before
    `release()` is called."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self._watched = True
        _tell(f"+ {pgid}\n")

    def release(self) -> None:
        """The group is finished with (or was killed): stop watching it."""
        if self._watched:
            self._watched = False
            with contextlib.suppress(OSError):
                _tell(f"- {self.pgid}\n")


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def start(args: list[str], **popen_kwargs: Any) -> Iterator[subprocess.Popen]:
    """`subprocess.Popen(args, …)` in a new session, guarded. Leaving the block by an exception
    (a cancel, an error) kills the whole group first."""
    proc = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
    guard = Guard(proc.pid)
    try:
        with proc:
            try:
                yield proc
            except BaseException:
                kill_group(proc.pid)
                raise
    finally:
        guard.release()
