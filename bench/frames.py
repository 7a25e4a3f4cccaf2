"""Benchmark of frame_extraction: speed against ffmpeg and the scenedetect CLI, interval
mode, and peak memory for a short and a long video -- side by side in one run.

    python bench/frames.py                      # 60 s and 600 s 720p videos, 3 repeats
    python bench/frames.py --long 0             # skip the 600 s video (no memory figure)

Needs `ffmpeg` on PATH (Debian: apt-get install ffmpeg) -- for the benchmark only. Videos are
generated once with the synthetic_video stage and cached in --workdir. Every timed command runs in
its own process, repeats are interleaved (A B C A B C ...) so a noisy neighbour hits all of them,
and the median is reported. Our stage is timed twice: `execute()` inside its process (`stage`)
and the whole process including Python start-up and imports (`process`).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- worker: one extraction in this process ----------------------------------------------------------

def worker(args: argparse.Namespace) -> None:
    # the libraries a pipeline process has loaded once it runs a video stage; their import time
    # (about 0.3 s) is in the `process` figure, not in `stage`
    import pipeline_tasks.stages.video.decode  # noqa: F401
    import pipeline_tasks.stages.video.image_writer  # noqa: F401
    import pipeline_tasks.stages.video.phash  # noqa: F401
    import pipeline_tasks.stages.video.scene_detect  # noqa: F401
    import pipeline_tasks.stages.video.selection  # noqa: F401
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor

    config = json.loads(args.config)
    stage = FrameExtractionExecutor("bench", config)
    stage.validate_config()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = stage.execute({})
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "maxrss_mb": maxrss_kb / 1024, "outputs": result.outputs,
                      "metrics": result.metrics}))


# -- driver -------------------------------------------------------------------------------------------

def render_worker(args: argparse.Namespace) -> None:
    from pipeline_tasks.stages.synthetic_video import SyntheticVideoExecutor

    cfg = json.loads(args.config)
    t0 = time.perf_counter()
    res = SyntheticVideoExecutor("bench_video", cfg).execute({})
    print(json.dumps({"video": res.outputs["video"], "cut_frames": res.outputs["cut_frames"], "config": cfg,
                      "frame_count": res.outputs["frame_count"], "render_seconds": time.perf_counter() - t0,
                      "render_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "size_mb": os.path.getsize(res.outputs["video"]) / 1e6}))


def make_video(workdir: Path, seconds: int, scene_seconds: float) -> dict:
    """Render (once; cached in workdir) a 720p30 video with hard cuts, in its own process."""
    out = workdir / f"video_{seconds}s"
    meta = out / "bench_meta.json"
    if meta.exists():
        return json.loads(meta.read_text())
    cfg = {"output_dir": str(out), "width": 1280, "height": 720, "fps": 30, "duration": float(seconds),
           "num_scenes": max(2, int(seconds / scene_seconds)), "num_characters": 6, "seed": 2024,
           "transition": "cut", "keyframe_interval": 2.0}
    print(f"rendering {seconds} s 720p video ...", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--render", "--config", json.dumps(cfg)]
    _, _, proc = timed(cmd, cwd=ROOT)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    meta.write_text(json.dumps(info))
    return info


def timed(cmd: list[str], **kw) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run `cmd`; (wall seconds, CPU seconds user+sys of the child, the completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed, cpu, proc


def run_stage(config: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--config", json.dumps(config)]
    elapsed, cpu, proc = timed(cmd, cwd=ROOT)
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["process_seconds"] = elapsed
    data["process_cpu"] = cpu
    return data


def scenedetect_cuts(csv_path: Path) -> list[int]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # "Start Frame" is 1-based in PySceneDetect's CSV
    return [int(r["Start Frame"]) - 1 for r in rows[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--short", type=int, default=60, help="length of the timed video, seconds (default 60)")
    ap.add_argument("--long", type=int, default=600, help="length of the memory video, seconds (0: skip)")
    ap.add_argument("--scene-seconds", type=float, default=4.0, help="average scene length (default 4 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pipeline_tasks_bench"))
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.render:
        render_worker(args)
        return
    if not shutil.which("ffmpeg"):
        raise SystemExit("ffmpeg is not on PATH (benchmark only): apt-get install -y ffmpeg")
    scenedetect_bin = shutil.which("scenedetect") or str(Path(sys.executable).parent / "scenedetect")

    from pipeline_tasks.stages.video.metrics import scene_cut_metrics

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    short = make_video(workdir, args.short, args.scene_seconds)
    video = short["video"]
    scratch = workdir / "runs"

    keys = ("ffmpeg", "scene_stage", "scene_process", "scenedetect", "interval_stage", "interval_process",
            "interval_jpeg_stage")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    last: dict[str, dict] = {}
    ffmpeg_cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", video, "-f", "null", "-"]

    def stage(name: str, config: dict) -> dict:
        r = run_stage(config)
        samples[f"{name}_stage"].append(r["seconds"])
        cpu[f"{name}_stage"].append(r["cpu"])
        if f"{name}_process" in samples:
            samples[f"{name}_process"].append(r["process_seconds"])
            cpu[f"{name}_process"].append(r["process_cpu"])
        last[name] = r
        return r

    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}", flush=True)
        t, c, _ = timed(ffmpeg_cmd)
        samples["ffmpeg"].append(t)
        cpu["ffmpeg"].append(c)

        shutil.rmtree(scratch, ignore_errors=True)
        stage("scene", {"input_video": video, "output_dir": str(scratch / "scene"), "mode": "scene"})

        sd_out = scratch / "sd"
        t, c, _ = timed([scenedetect_bin, "-i", video, "-o", str(sd_out), "detect-adaptive", "list-scenes", "-s",
                         "-f", "scenes.csv", "-q"])
        samples["scenedetect"].append(t)
        cpu["scenedetect"].append(c)
        last["scenedetect_cuts"] = {"cuts": scenedetect_cuts(sd_out / "scenes.csv")}

        stage("interval", {"input_video": video, "output_dir": str(scratch / "interval"), "mode": "interval",
                           "interval": 2.0})
        stage("interval_jpeg", {"input_video": video, "output_dir": str(scratch / "interval_jpeg"),
                                "mode": "interval", "interval": 2.0, "quality": "medium"})

    med = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    truth = short["cut_frames"]
    f1_ours = scene_cut_metrics(last["scene"]["outputs"]["cuts"], truth, tolerance=1)
    f1_sd = scene_cut_metrics(last["scenedetect_cuts"]["cuts"], truth, tolerance=1)

    memory = {}
    if args.long:
        long = make_video(workdir, args.long, args.scene_seconds)
        for name, info in (("short", short), ("long", long)):
            shutil.rmtree(scratch, ignore_errors=True)
            r = run_stage({"input_video": info["video"], "output_dir": str(scratch / name), "mode": "scene"})
            memory[name] = {"seconds": info["config"]["duration"], "maxrss_mb": r["maxrss_mb"],
                            "render_maxrss_mb": info.get("render_maxrss_mb"),
                            "render_seconds": info.get("render_seconds"),
                            "stage_seconds": r["seconds"],
                            "f1": scene_cut_metrics(r["outputs"]["cuts"], info["cut_frames"])["f1"]}
        shutil.rmtree(scratch, ignore_errors=True)

    result = {
        "video": {"seconds": args.short, "frames": short["frame_count"], "size_mb": round(short["size_mb"], 1),
                  "cuts": len(truth), "resolution": "1280x720", "fps": 30, "keyframe_interval_s": 2.0},
        "repeats": args.repeats, "cpus": os.cpu_count(),
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "min_seconds": {k: round(v, 3) for k, v in best.items()},
        "median_cpu_seconds": {k: round(v, 3) for k, v in med_cpu.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "ratios": {},
        "f1_tolerance_1": {"ours (adaptive, defaults)": round(f1_ours["f1"], 4),
                           "scenedetect detect-adaptive CLI": round(f1_sd["f1"], 4)},
        "interval_decoded_frames": last["interval"]["metrics"]["decoded_frames"],
        "interval_frames_written": last["interval"]["outputs"]["frame_count"],
        "memory": memory,
    }
    pairs = [("scene_stage", "ffmpeg"), ("scene_process", "ffmpeg"), ("scene_stage", "scenedetect"),
             ("scene_process", "scenedetect"), ("interval_stage", "ffmpeg"), ("interval_process", "ffmpeg"),
             ("interval_jpeg_stage", "ffmpeg")]
    for a, b in pairs:
        result["ratios"][f"{a} / {b}"] = {"median wall": round(med[a] / med[b], 3),
                                          "min wall": round(best[a] / best[b], 3),
                                          "median cpu": round(med_cpu[a] / med_cpu[b], 3)}
    if memory:
        result["ratios"]["maxrss long / short"] = round(memory["long"]["maxrss_mb"] / memory["short"]["maxrss_mb"], 3)
        if memory["long"]["render_maxrss_mb"] and memory["short"]["render_maxrss_mb"]:
            result["ratios"]["render maxrss long / short"] = round(
                memory["long"]["render_maxrss_mb"] / memory["short"]["render_maxrss_mb"], 3)
    r = result["ratios"]
    targets = {
        "scene <= 1.25x ffmpeg decode (median wall)": r["scene_stage / ffmpeg"]["median wall"] <= 1.25,
        "scene faster than scenedetect CLI (median wall)": med["scene_stage"] < med["scenedetect"],
        "F1 >= scenedetect CLI": f1_ours["f1"] >= f1_sd["f1"],
        "interval <= 0.5x ffmpeg decode (median wall)": r["interval_stage / ffmpeg"]["median wall"] <= 0.5,
    }
    if memory:
        targets["RSS 600 s <= 1.2x RSS 60 s"] = result["ratios"]["maxrss long / short"] <= 1.2
    result["targets_met"] = targets
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
