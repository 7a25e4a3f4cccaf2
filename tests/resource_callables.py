"""Stage callables of the resource tests: memory, GPU grants, rendezvous, CPU work."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from pipeline_tasks.executor import StageExecutor
from pipeline_tasks.models import StageResult


def _mark(stage_id: str) -> None:
    with open("runs.log", "a") as f:
        f.write(stage_id + "\n")


def allocate(output_dir, stage_id, args):
    """Holds args['mb'] MB of touched memory for args['hold'] s while a file `allocate` exists in
    the working directory; writes out.txt."""
    _mark(stage_id)
    if os.path.exists("allocate"):
        block = bytearray(int(args["mb"]) * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])            # touch every page: resident, not just reserved
        deadline = time.monotonic() + float(args.get("hold", 30))
        while time.monotonic() < deadline:
            time.sleep(0.05)
        del block
    Path(output_dir, "out.txt").write_text("done")
    return {}


def gpu_span(output_dir, stage_id, args):
    """Records CUDA_VISIBLE_DEVICES and the span of its work."""
    _mark(stage_id)
    start = time.time()
    time.sleep(float(args.get("hold", 0.3)))
    Path(output_dir, "seen.txt").write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')}\n{start} {time.time()}\n")
    return {}


def meet(output_dir, stage_id, args):
    """Says it has started (a file under args['room']) and waits up to args['wait'] s for every
    stage in args['peers'] to say so too; records what it saw and its CUDA_VISIBLE_DEVICES."""
    _mark(stage_id)
    room = Path(args["room"])
    room.mkdir(parents=True, exist_ok=True)
    (room / stage_id).write_text("here")
    deadline = time.monotonic() + float(args.get("wait", 60))
    peers = [room / p for p in args["peers"]]
    while not all(p.exists() for p in peers) and time.monotonic() < deadline:
        time.sleep(0.02)
    met = all(p.exists() for p in peers)
    Path(output_dir, "seen.txt").write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')}\n{met}\n")
    return {}


def write_and_spin(output_dir, stage_id, args):
    """Writes args['mb'] MB to a file (fsynced) and counts to args['count']."""
    _mark(stage_id)
    data = os.urandom(1024 * 1024)
    with open(Path(output_dir, "data.bin"), "wb") as f:
        for _ in range(int(args.get("mb", 1))):
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    total = 0
    for i in range(int(args.get("count", 0))):
        total += i * i
    return {"total": total}


def wait_for_file(output_dir, stage_id, args, progress):
    """Reports progress until a file args['until'] exists (at most args['wait'] s), then writes out.txt."""
    _mark(stage_id)
    deadline = time.monotonic() + float(args.get("wait", 60))
    step = 0
    while not os.path.exists(args["until"]) and time.monotonic() < deadline:
        step += 1
        Path(output_dir, "alive.txt").write_text(str(time.time()))
        progress(step, None)
        time.sleep(0.05)
    Path(output_dir, "out.txt").write_text("done")
    return {}


def fill_until(output_dir, stage_id, args, progress):
    """Writes data.bin in 256 KB chunks until its file system has less than args['leave_mb'] MB
    free (or args['max_mb'] MB are written), then reports progress until a file args['until']
    exists; writes out.txt."""
    _mark(stage_id)
    chunk = b"\0" * 256 * 1024
    written = 0
    with open(Path(output_dir, "data.bin"), "wb") as f:
        while (shutil.disk_usage(output_dir).free > float(args["leave_mb"]) * 1024 * 1024
               and written < float(args.get("max_mb", 1e9)) * 1024 * 1024):
            f.write(chunk)
            f.flush()
            written += len(chunk)
    step = 0
    deadline = time.monotonic() + float(args.get("wait", 60))
    while not os.path.exists(args["until"]) and time.monotonic() < deadline:
        step += 1
        progress(step, None)
        time.sleep(0.05)
    Path(output_dir, "out.txt").write_text(str(written))
    return {"written": written}


class AutoDeviceProbe(StageExecutor):
    """A stage type whose need is `gpu: auto`: records the CUDA_VISIBLE_DEVICES it was given after
    meeting its peers (so it proves it did not wait for a GPU)."""

    type_name = "auto_device_probe"
    config_schema = {
        "output_dir": {"type": "string", "required": True},
        "room": {"type": "string", "required": True},
        "peers": {"type": "list", "schema": {"type": "string"}, "required": True},
    }

    def default_resources(self):
        return {"cpu": 1, "gpu": "auto"}

    def execute(self, inputs):
        s = self.settings
        os.makedirs(s.output_dir, exist_ok=True)
        room = Path(s.room)
        room.mkdir(parents=True, exist_ok=True)
        (room / self.stage_id).write_text("here")
        deadline = time.monotonic() + 60
        while not all((room / p).exists() for p in s.peers) and time.monotonic() < deadline:
            time.sleep(0.02)
        met = all((room / p).exists() for p in s.peers)
        Path(s.output_dir, "seen.txt").write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')}\n{met}\n")
        return StageResult(self.stage_id, outputs={"output_dir": s.output_dir})
