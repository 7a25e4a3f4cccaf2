"""Stage callables used by the engine tests (importable from subprocesses via PYTHONPATH)."""
from __future__ import annotations

import os
import time
from pathlib import Path


def _mark(stage_id: str) -> None:
    """Append the stage id to runs.log in the working directory: which stages really executed."""
    with open("runs.log", "a") as fh:
        fh.write(stage_id + "\n")


def write_text(output_dir, stage_id, args, inputs):
    """Writes args['text'] (plus each upstream's text, uppercased) into out.txt."""
    _mark(stage_id)
    parts = [args.get("text", "")]
    for upstream in sorted(inputs):
        up = Path(inputs[upstream]["output_dir"]) / "out.txt"
        parts.append(up.read_text().upper())
    Path(output_dir, "out.txt").write_text("|".join(parts))
    return {"chars": sum(len(p) for p in parts)}


def slow(output_dir, stage_id, args, progress):
    """Counts to args['steps'], sleeping args['delay'] each step (no sleep once a file named
    `fast` exists in the working directory: lets a test finish a resumed run quickly without
    changing the stage's config), reporting progress."""
    _mark(stage_id)
    steps = int(args.get("steps", 10))
    work_start = time.time()
    for i in range(steps):
        Path(output_dir, "started").write_text(str(i))
        if not os.path.exists("fast"):
            time.sleep(float(args.get("delay", 0.1)))
        progress(i + 1, steps)
    Path(output_dir, "out.txt").write_text(f"done {steps}")
    if args.get("record_span"):        # opt-in: makes the output differ on every run
        Path(output_dir, "work_span.txt").write_text(f"{work_start} {time.time()}")
    return {"steps": steps}


def flaky(output_dir, stage_id, args):
    """Fails with ConnectionError until it has been called args['fail_times'] times."""
    _mark(stage_id)
    counter = Path(output_dir, "calls")
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    Path(output_dir, "partial.txt").write_text(f"attempt {calls}")
    if calls <= int(args.get("fail_times", 1)):
        raise ConnectionError(f"transient failure {calls}")
    Path(output_dir, "out.txt").write_text("ok")
    return {"calls": calls}


def broken(output_dir, stage_id):
    _mark(stage_id)
    Path(output_dir, "partial.txt").write_text("half")
    raise ValueError("bad things")


def echo_secret(output_dir, stage_id, args, log):
    _mark(stage_id)
    log.info("using token %s", args["token"])
    print("token is", args["token"])
    Path(output_dir, "out.txt").write_text("used a token")
    return {"token_echo": args["token"]}


def burn_cpu(output_dir, stage_id, args):
    """CPU-bound work for the parallelism benchmark and test."""
    _mark(stage_id)
    start = time.time()
    total = 0
    for i in range(int(args.get("n", 2_000_000))):
        total += i * i % 7
    Path(output_dir, "out.txt").write_text(str(total))
    return {"start": start, "end": time.time(), "pid": os.getpid()}


def sleeper(output_dir, stage_id, args):
    """Writes its pid and that of a `sleep` it started (same process group) to args['pids'], then
    waits: a stage that is still busy when its run is killed."""
    import subprocess
    _mark(stage_id)
    child = subprocess.Popen(["sleep", "600"])
    Path(args["pids"]).write_text(f"{os.getpid()} {child.pid}")
    child.wait()
