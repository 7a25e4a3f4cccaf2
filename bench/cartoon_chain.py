"""The default frame_extraction -> segmentation -> clustering chain on a moving-camera cartoon.

    python bench/cartoon_chain.py                       # render once, then both backends side by side
    python bench/cartoon_chain.py --workdir /tmp/cc --duration 20 --width 640 --height 360
    python bench/cartoon_chain.py --workdir /tmp/cc_front --in-front 1   # characters in front of others
    python bench/cartoon_chain.py --against /path/to/other/checkout --rounds 4   # segmentation side by side

The video: `synthetic_video` at 1280x720, 24 fps, 60 s, 16 scenes, 6 characters, seed 1, with
camera pans (wider backgrounds), zooms, shots returning to a place (`revisit: 0.4`), 10 two-frame
flashes and two characters sharing a body colour. Every stage runs with its default settings
(frame_extraction in its default mode and in `hybrid`), each measurement in its own process:
- scene cuts: F1 against the hard cuts (tolerance 1 frame), flashes taken for cuts;
- segmentation, with the weight-free backend reading its context from the source video (the
  default) and without (`video_context: false`: the kept frames only, as before): images/s, the
  share of instances whose box matches a true character's box (IoU >= 0.5, one-to-one per frame),
  the share of true characters found, frames without a background model;
- clustering (default settings) on each: identity ARI over the instances that match a character,
  noise share.

With `--against CHECKOUT`, only the segmentation of the hybrid frames (defaults, context from the
video) is measured, by this checkout's code and by CHECKOUT's (its own bench/cartoon_chain.py, with
CHECKOUT first on PYTHONPATH), alternating for `--rounds` rounds: images/s (wall), CPU seconds
(user + system of the worker and any processes it started), instance match, and whether the two
wrote the same instances.jsonl. Machines are shared and noisy: the ratio of the two, measured in
the same minutes, is the figure to compare.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def video_config(a) -> dict:
    return {"width": a.width, "height": a.height, "fps": 24, "duration": a.duration, "num_scenes": a.scenes,
            "num_characters": 6, "seed": 1, "zoom": True, "revisit": 0.4, "flashes": a.flashes,
            "shared_colour": True, "in_front": a.in_front}


def worker_prepare(a):
    from pipeline_tasks.stages.synthetic_video import SyntheticVideoExecutor
    w = Path(a.workdir)
    if not (w / "video" / "ground_truth.json").exists():
        t0 = time.perf_counter()
        SyntheticVideoExecutor("video", {"output_dir": str(w / "video"), **video_config(a)}).execute({})
        return {"render_seconds": time.perf_counter() - t0}
    return {}


def worker_frames(a):
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    from pipeline_tasks.stages.video.ground_truth import load
    from pipeline_tasks.stages.video.metrics import scene_cut_metrics
    w = Path(a.workdir)
    out = w / f"frames_{a.mode}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    interval = {"interval": float(a.interval)} if a.interval else {}
    r = FrameExtractionExecutor("frames", {"input_video": str(w / "video" / "video.mp4"), "output_dir": str(out),
                                        "mode": a.mode, **interval}).execute({})
    sec = time.perf_counter() - t0
    gt = load(w / "video" / "ground_truth.json")
    m = scene_cut_metrics(r.outputs["cuts"], gt["cut_frames"], tolerance=1)
    flashes = {f["start_frame"] + d for f in gt["flashes"] for d in range(-1, 3)}
    return {"seconds": sec, "frames": r.outputs["frame_count"], "cut_f1": m["f1"], "cut_precision": m["precision"],
            "cut_recall": m["recall"], "missed_cuts": m["missed"], "spurious_cuts": m["spurious"],
            "flashes_taken_for_cuts": len(set(m["spurious"]) & flashes), "flashes_found": len(r.outputs["flashes"])}


def worker_segment(a):
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    w = Path(a.workdir)
    out = w / f"seg_{a.name}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"input_dir": str(w / a.frames), "output_dir": str(out)}
    if a.context == "off":
        cfg["video_context"] = False
    for item in a.set:                     # --set key=value: a setting other than the default (YAML value)
        import yaml
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    stage = SegmentationExecutor("seg", cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    r = stage.execute({})
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    from pipeline_tasks.stages.characters.metrics import box_match
    s = box_match(out / "instances.jsonl", w / "video" / "ground_truth.json")
    s.pop("identity")
    return {"seconds": sec, "cpu_seconds": cpu, "images": r.outputs["frame_count"],
            "images_per_s": r.outputs["frame_count"] / sec, "images_per_cpu_s": r.outputs["frame_count"] / cpu,
            **s, "metrics": r.metrics}


def worker_cluster(a):
    from cluster_scores import box_identity_scores, timed_clustering
    w = Path(a.workdir)
    src, out = w / a.input, w / f"clu_{a.name}"
    res = timed_clustering(src, out)
    return {**res, **box_identity_scores(out / "clusters.jsonl", src / "instances.jsonl",
                                         w / "video" / "ground_truth.json")}


WORKERS = {"prepare": worker_prepare, "frames": worker_frames, "segment": worker_segment, "cluster": worker_cluster}


def run_worker(args: list[str], root: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(root / "bench" / "cartoon_chain.py"), *args], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/cartoon_chain_bench")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--flashes", type=int, default=10)
    ap.add_argument("--in-front", type=float, default=0.0, help="synthetic_video's in_front: scenes of a "
                    "character standing in front of another")
    ap.add_argument("--against", help="another checkout: its segmentation side by side with this one's")
    ap.add_argument("--rounds", type=int, default=4, help="with --against: alternating rounds")
    ap.add_argument("--worker")
    ap.add_argument("--set", action="append", default=[], help="segment worker: a stage setting, key=value")
    for k in ("name", "frames", "input", "mode", "context", "interval"):
        ap.add_argument(f"--{k}", default="")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a), default=float))
        return
    w = Path(a.workdir)
    w.mkdir(parents=True, exist_ok=True)
    common = ["--workdir", str(w), "--width", str(a.width), "--height", str(a.height), "--duration",
              str(a.duration), "--scenes", str(a.scenes), "--flashes", str(a.flashes),
              "--in-front", str(a.in_front)]
    results: dict[str, dict] = {"video": video_config(a)}
    results["prepare"] = run_worker(["--worker", "prepare", *common])
    if a.against:
        side_by_side(Path(a.against).resolve(), a.rounds, w, common)
        return
    for mode in ("scene", "hybrid"):
        results[f"frames_{mode}"] = run_worker(["--worker", "frames", "--mode", mode, *common])
        for context in ("on", "off"):
            name = f"{mode}_{context}"
            results[f"segment_{name}"] = run_worker(["--worker", "segment", "--name", name, "--frames",
                                                     f"frames_{mode}", "--context", context, *common])
            results[f"cluster_{name}"] = run_worker(["--worker", "cluster", "--name", name, "--input",
                                                     f"seg_{name}", *common])
            print(name, json.dumps({k: results[f"{k}_{name}"] for k in ("segment", "cluster")}, default=float),
                  flush=True)
    (w / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


def side_by_side(other: Path, rounds: int, w: Path, common: list[str]) -> None:
    """The segment worker of `other` and of this checkout, alternating, on the hybrid frames."""
    if not (w / "frames_hybrid" / "frames.jsonl").exists():
        run_worker(["--worker", "frames", "--mode", "hybrid", *common])
    runs: dict[str, list[dict]] = {"other": [], "this": []}
    for _ in range(rounds):
        for side, root in (("other", other), ("this", ROOT)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = run_worker(["--worker", "segment", "--name", f"side_{side}", "--frames", "frames_hybrid",
                              "--context", "on", *common], root=root)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            runs[side].append({"images_per_s": out["images_per_s"], "cpu_s": cpu,
                               "matched": out["matched"], "instances": out["instances"]})
            print(f"{side:5s} {out['images_per_s']:6.2f} images/s  {cpu:6.2f} CPU s  "
                  f"instance match {out['matched']}/{out['instances']}", flush=True)
    mean = {side: {k: sum(r[k] for r in rs) / len(rs) for k in ("images_per_s", "cpu_s")} for side, rs in runs.items()}
    same = len({(w / f"seg_side_{side}" / "instances.jsonl").read_bytes() for side in runs}) == 1
    print(f"mean: other {mean['other']['images_per_s']:.2f} images/s, {mean['other']['cpu_s']:.2f} CPU s; "
          f"this {mean['this']['images_per_s']:.2f} images/s, {mean['this']['cpu_s']:.2f} CPU s; "
          f"this / other: {mean['this']['images_per_s'] / mean['other']['images_per_s']:.2f}x images/s, "
          f"{mean['this']['cpu_s'] / mean['other']['cpu_s']:.2f}x CPU; "
          f"instances.jsonl {'the same' if same else 'differ'}")
    (w / "side_by_side.json").write_text(json.dumps({"other": str(other), "runs": runs, "mean": mean,
                                                     "same_instances": same}, indent=2))


if __name__ == "__main__":
    main()
