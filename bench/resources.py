"""Resource benchmark: what measuring a stage costs, and how close capacity-aware scheduling comes
to the ideal schedule.

    python bench/resources.py              # both parts
    python bench/resources.py --part sampling --repeat 7
    python bench/resources.py --part schedule

1. Sampling: a CPU-bound stage body (pure Python, ~1 s of CPU) run bare and inside `usage.measure()`
   (the sampler thread awake every 0.5 s), alternated side by side, --repeat times each; the
   medians of CPU and wall time as a ratio. Also the cost of one sample of the process tree and of
   measure()'s start and end (what a tiny stage pays).
2. Scheduling: 8 stages with mixed cpu / mem_gb / gpu needs and known durations (they sleep) run by
   the CLI with `-n 8 --resources cpu=4,mem_gb=8,gpu=2`. From the run's events: wall time from the
   first stage start to the last end, against the ideal schedule (the best list schedule over all
   8! start orders, computed here), and the most of each resource held at once, against the
   capacity.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline_tasks.engine import usage  # noqa: E402

CAPACITY = {"cpu": 4, "mem_gb": 8, "gpu": 2}
# (id, cpu, mem_gb, gpu, seconds)
STAGES = [("s1", 2, 0, 1, 1.0), ("s2", 1, 0, 1, 1.0), ("s3", 2, 4, 0, 0.5), ("s4", 1, 4, 0, 1.5),
          ("s5", 1, 2, 0, 0.5), ("s6", 2, 0, 1, 0.5), ("s7", 1, 0, 0, 1.0), ("s8", 3, 6, 0, 1.0)]


def spin(n: int = 20_000_000) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def sampling(repeat: int) -> None:
    bare, measured = [], []
    spin(200_000)
    for _ in range(repeat):
        for runs, wrap in ((bare, False), (measured, True)):
            c0, w0 = time.process_time(), time.perf_counter()
            if wrap:
                with usage.measure():
                    spin()
            else:
                spin()
            runs.append((time.process_time() - c0, time.perf_counter() - w0))
    cpu_b, cpu_m = statistics.median(r[0] for r in bare), statistics.median(r[0] for r in measured)
    wall_b, wall_m = statistics.median(r[1] for r in bare), statistics.median(r[1] for r in measured)
    me = os.getpid()
    n = 500
    t0 = time.process_time()
    for _ in range(n):
        usage.tree_rss(me)
    per_sample = (time.process_time() - t0) / n
    processes = len(usage.descendants(1))
    t0 = time.process_time()
    for _ in range(n):
        with usage.measure():
            pass
    per_stage = (time.process_time() - t0) / n
    print("| CPU-bound stage body | bare (reference) | measured | ratio |")
    print("|---|---|---|---|")
    print(f"| CPU time, median of {repeat} | {cpu_b:.3f} s | {cpu_m:.3f} s | {cpu_m / cpu_b:.3f} |")
    print(f"| wall time, median of {repeat} | {wall_b:.3f} s | {wall_m:.3f} s | {wall_m / wall_b:.3f} |")
    print()
    print(f"CPU time of one sample of the process tree ({processes} processes on the machine): "
          f"{per_sample * 1e6:.0f} µs, every {usage.SAMPLE_INTERVAL:g} s: "
          f"{100 * per_sample / usage.SAMPLE_INTERVAL:.3f} % of one core; "
          f"measure() start + end: {per_stage * 1e6:.0f} µs of CPU a stage")


def best_list_schedule(stages, capacity, orders=None) -> float:
    """The shortest makespan over every start order (or the `orders` given) of a list scheduler
    (start the next stage of the order as soon as it fits)."""
    best = float("inf")
    for order in orders or itertools.permutations(stages):
        t, running, free, pending = 0.0, [], dict(capacity), list(order)
        while pending or running:
            started = True
            while started and pending:
                started = False
                s = pending[0]
                if s[1] <= free["cpu"] and s[2] <= free["mem_gb"] and s[3] <= free["gpu"]:
                    pending.pop(0)
                    free["cpu"] -= s[1]
                    free["mem_gb"] -= s[2]
                    free["gpu"] -= s[3]
                    running.append((t + s[4], s))
                    started = True
            running.sort()
            end, s = running.pop(0)
            t = end
            free["cpu"] += s[1]
            free["mem_gb"] += s[2]
            free["gpu"] += s[3]
            if t >= best:
                break
        else:
            best = min(best, t)
    return best


def schedule() -> None:
    ideal = best_list_schedule(STAGES, CAPACITY)
    bound = max(max(s[4] for s in STAGES),
                *(sum(s[i] * s[4] for s in STAGES) / CAPACITY[k] for i, k in ((1, "cpu"), (2, "mem_gb"), (3, "gpu"))))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bench_hold.py").write_text("import time\n\ndef hold(output_dir, args):\n"
                                           "    time.sleep(args['s'])\n    return {}\n")
        lines = ["pipeline: {name: schedule8}", "stages:"]
        for sid, cpu, mem, gpu, sec in STAGES:
            lines.append(f"  - {{id: {sid}, type: custom, resources: {{cpu: {cpu}, mem_gb: {mem}, gpu: {gpu}}}, "
                         f"config: {{callable: 'bench_hold:hold', args: {{s: {sec}}}, output_dir: out/{sid}}}}}")
        (root / "p.yaml").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(REPO)]))
        res = ",".join(f"{k}={v}" for k, v in CAPACITY.items())
        subprocess.run([sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "-n", "8", "--resources", res,
                        "--no-progress"], cwd=root, env=env, check=True, capture_output=True)
        (events_file,) = root.glob(".pipeline/*/events.jsonl")
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
    starts = {e["stage_id"]: e for e in events if e["type"] == "pipeline.stage_started"}
    ends = {e["stage_id"]: e["time"] for e in events if e["type"] == "pipeline.stage_completed"}
    wall = max(ends.values()) - min(e["time"] for e in starts.values())
    chosen = sorted(starts, key=lambda sid: starts[sid]["time"])
    same_order = best_list_schedule(STAGES, CAPACITY, [[next(s for s in STAGES if s[0] == sid) for sid in chosen]])
    marks = sorted([(e["time"], 1, sid) for sid, e in starts.items()] + [(t, -1, sid) for sid, t in ends.items()],
                   key=lambda m: (m[0], m[1]))
    held = {k: 0.0 for k in CAPACITY}
    peak = dict(held)
    for _, sign, sid in marks:
        granted = starts[sid].get("granted", {})
        for k in CAPACITY:
            held[k] += sign * granted.get(k, 0)
            peak[k] = max(peak[k], held[k])
    print("| 8 stages, capacity cpu=4, mem_gb=8, gpu=2 | seconds |")
    print("|---|---|")
    print(f"| ideal schedule (best list schedule, 8! orders) | {ideal:.2f} |")
    print(f"| lower bound (longest stage; resource-seconds / capacity) | {bound:.2f} |")
    print(f"| the order the run chose ({' '.join(chosen)}), without overhead | {same_order:.2f} |")
    print(f"| measured: first start to last end (`-n 8`) | {wall:.2f} |")
    print(f"| ratio measured / ideal | {wall / ideal:.2f} |")
    print()
    print("most held at once: " + ", ".join(f"{k} {peak[k]:g} of {CAPACITY[k]}" for k in CAPACITY))
    assert all(peak[k] <= CAPACITY[k] for k in CAPACITY), "capacity exceeded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["sampling", "schedule", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.part in ("sampling", "all"):
        sampling(args.repeat)
        print()
    if args.part in ("schedule", "all"):
        schedule()


if __name__ == "__main__":
    main()
