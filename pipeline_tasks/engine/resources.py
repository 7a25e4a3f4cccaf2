"""Resource tokens: a stage declaring `resources: {gpu: 1}` holds one of the pipeline's `gpu`
tokens while it runs, so parallel stages (`-n N`) never oversubscribe a scarce resource.

Tokens are `flock`s on files `<state>/resources/<name>.<slot>`, so they work across doit's worker
processes and are released by the kernel if a worker dies.
"""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def hold(folder: str | os.PathLike, wanted: dict[str, float], capacity: dict[str, float],
         on_wait: Callable[[str], None] | None = None, poll: float = 0.05) -> Iterator[None]:
    """Hold `wanted[name]` of each capacity-limited resource until the block ends."""
    folder = Path(folder)
    held: list[int] = []
    try:
        for name in sorted(wanted):
            if name not in capacity:
                continue                 # no declared capacity: informational only
            need, slots = math.ceil(wanted[name]), int(capacity[name])
            folder.mkdir(parents=True, exist_ok=True)
            got: list[int] = []
            waited = False
            while len(got) < need:
                for slot in range(slots):
                    if len(got) == need:
                        break
                    fd = os.open(folder / f"{name}.{slot}", os.O_RDWR | os.O_CREAT, 0o644)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    got.append(fd)
                if len(got) < need:
                    if not waited and on_wait:
                        on_wait(name)
                    waited = True
                    for fd in got:          # never sit on part of a request: no deadlock
                        os.close(fd)
                    got = []
                    time.sleep(poll)
            held.extend(got)
        yield
    finally:
        for fd in held:
            os.close(fd)
