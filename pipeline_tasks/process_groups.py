"""Child process groups that die with the process that started them.

A stage that runs a command (or a stage attempt with a timeout) runs it in a process group of its
own, so that a timeout or a cancel can stop the command and everything it started. That also puts
the group out of reach of a signal sent to the run's own group (`kill -9 -PGID` from a terminal, a
job scheduler, a test), which would leave the command writing into an output folder after the run,
and its locks, are gone. So each such group gets a guard: a `/bin/sh` in a session of its own that
waits on a pipe from the process that started the group. If that process ends without saying the
group is finished (it was killed), the pipe closes and the guard kills the group, and its leader
by pid in case the leader had not made its group yet.

    with process_groups.start(["/bin/sh", "-c", command], stdout=PIPE) as proc:
        out, _ = proc.communicate()

or, for a group made another way, `guard = process_groups.Guard(pid)` ... `guard.release()`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

# stdin is the pipe from the starting process: "done" means the group may live on its own (it has
# ended or was stopped already); end of file without it means the starting process is gone
_GUARD = 'read -r word; [ "$word" = done ] || kill -s KILL -- "-$1" "$1" 2>/dev/null'


class Guard:
    """Kills process group `pgid` if this process dies before calling `release()`."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self._proc: subprocess.Popen | None = subprocess.Popen(
            ["/bin/sh", "-c", _GUARD, "process-group-guard", str(pgid)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)

    def release(self) -> None:
        """The group is finished with (or was killed): the guard exits without touching it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        proc.wait()


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
