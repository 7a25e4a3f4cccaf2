"""The default frame_extraction -> segmentation -> clustering chain on a moving-camera cartoon.

    python bench/cartoon_chain.py                       # render once, then both backends side by side
    python bench/cartoon_chain.py --workdir /tmp/cc --duration 20 --width 640 --height 360
    python bench/cartoon_chain.py --workdir /tmp/cc_front --in-front 1   # characters in front of others

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
"""
from __future__ import annotations

import argparse
import json
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


def run_worker(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
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


if __name__ == "__main__":
    main()
