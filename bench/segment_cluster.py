"""Benchmark of the segmentation and clustering stages: quality against the synthetic
ground truth, images per second for each segmentation backend, clustering of 1,000 and 10,000
crops, and peak memory -- each measurement in its own process.

    python bench/segment_cluster.py                    # everything (about 10 minutes on 2 cores)
    python bench/segment_cluster.py --skip sam,u2net   # leave out the slow model backends

- quality: `synthetic_video` with its default settings (640x360, 20 s, 6 scenes, 4 characters,
  seed 0), `frame_extraction` in hybrid mode with a frame every 0.25 s and dedup off, then the
  default `segmentation` (weight-free background model) and `clustering`; also the sampling of
  configs/demo.yaml (hybrid, one frame a second, default dedup) on the same video.
- SAM vit_b and u2net run with randomly initialised weights of the real architectures (speed, not
  quality): SAM through `_build_sam` with vit_b's dimensions, u2net as the U^2-Net network below,
  exported to ONNX with rembg's [1, 3, 320, 320] input.
- clustering: 1,000 / 10,000 RGBA crops made from the segmentation's crops (mirrored and rescaled
  copies), timed through ClusteringExecutor.execute (embedding, HDBSCAN, folders, contact sheets).
Peak memory is the worker process's `ru_maxrss`.
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


# -- U^2-Net (Qin et al. 2020), the architecture behind rembg's u2net.onnx ---------------------------

def u2net_module(full: bool = True):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class REBNCONV(nn.Module):
        def __init__(self, cin, cout, d=1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=d, dilation=d)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def up(x, ref):
        return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)

    class RSU(nn.Module):
        """RSU-L: an L-level U-block (pooling between levels, dilation 2 at the bottom)."""
        def __init__(self, L, cin, mid, cout):
            super().__init__()
            self.inp = REBNCONV(cin, cout)
            self.enc = nn.ModuleList([REBNCONV(cout, mid)] + [REBNCONV(mid, mid) for _ in range(L - 2)])
            self.bottom = REBNCONV(mid, mid, 2)
            self.dec = nn.ModuleList([REBNCONV(2 * mid, mid) for _ in range(L - 2)] + [REBNCONV(2 * mid, cout)])

        def forward(self, x):
            hin = self.inp(x)
            feats, h = [], hin
            for i, conv in enumerate(self.enc):
                h = conv(h if i == 0 else F.max_pool2d(h, 2, 2, ceil_mode=True))
                feats.append(h)
            h = self.bottom(h)
            for conv, f in zip(self.dec, reversed(feats)):
                h = conv(torch.cat([up(h, f), f], 1))
            return h + hin

    class RSUF(nn.Module):
        """RSU-4F: dilations 1, 2, 4, 8 instead of pooling."""
        def __init__(self, cin, mid, cout):
            super().__init__()
            self.inp = REBNCONV(cin, cout)
            self.e = nn.ModuleList([REBNCONV(cout, mid, 1), REBNCONV(mid, mid, 2), REBNCONV(mid, mid, 4)])
            self.b = REBNCONV(mid, mid, 8)
            self.d = nn.ModuleList([REBNCONV(2 * mid, mid, 4), REBNCONV(2 * mid, mid, 2), REBNCONV(2 * mid, cout, 1)])

        def forward(self, x):
            hin = self.inp(x)
            h1 = self.e[0](hin)
            h2 = self.e[1](h1)
            h3 = self.e[2](h2)
            h = self.b(h3)
            h = self.d[0](torch.cat([h, h3], 1))
            h = self.d[1](torch.cat([h, h2], 1))
            return self.d[2](torch.cat([h, h1], 1)) + hin

    if full:   # u2net.onnx (176 MB)
        enc = [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), ("F", 512, 256, 512),
               ("F", 512, 256, 512)]
        dec = [("F", 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)]
    else:      # u2netp.onnx (4.7 MB)
        enc = [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), ("F", 64, 16, 64), ("F", 64, 16, 64)]
        dec = [("F", 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)]

    def block(spec):
        L, cin, mid, cout = spec
        return RSUF(cin, mid, cout) if L == "F" else RSU(L, cin, mid, cout)

    class U2Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([block(s) for s in enc])
            self.dec = nn.ModuleList([block(s) for s in dec])
            side_ch = [s[3] for s in reversed(dec)] + [enc[-1][3]]
            self.side = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in side_ch])
            self.out = nn.Conv2d(6, 1, 1)

        def forward(self, x):
            feats, h = [], x
            for i, b in enumerate(self.enc):
                h = b(h if i == 0 else F.max_pool2d(h, 2, 2, ceil_mode=True))
                feats.append(h)
            h = feats[-1]
            decs = []
            for b, f in zip(self.dec, reversed(feats[:-1])):
                h = b(torch.cat([up(h, f), f], 1))
                decs.append(h)
            maps = list(reversed(decs)) + [feats[-1]]          # d1 (finest) ... d5, stage 6
            sides = [up(s(m), x) for s, m in zip(self.side, maps)]
            d0 = self.out(torch.cat(sides, 1))
            return tuple(torch.sigmoid(t) for t in [d0] + sides)

    return U2Net()


# -- workers (each runs in its own process) --------------------------------------------------------

def worker_prepare(a):
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    from pipeline_tasks.stages.synthetic_video import SyntheticVideoExecutor
    w = Path(a.workdir)
    if not (w / "video" / "ground_truth.json").exists():
        SyntheticVideoExecutor("video", {"output_dir": str(w / "video")}).execute({})
    for name, cfg in (("frames", {"mode": "hybrid", "interval": 0.25, "dedup_threshold": -1}),
                      ("frames_demo", {"mode": "hybrid", "interval": 1.0})):
        if not (w / name / "frames.jsonl").exists():
            FrameExtractionExecutor(name, {"input_video": str(w / "video" / "video.mp4"), "output_dir": str(w / name),
                                        **cfg}).execute({})
    return {}


def worker_segment(a):
    from cluster_scores import rss_mb

    from pipeline_tasks.stages.characters.metrics import instance_mask_iou
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    w = Path(a.workdir)
    out = w / f"seg_{a.name}"
    shutil.rmtree(out, ignore_errors=True)
    stage = SegmentationExecutor("seg", {"input_dir": str(w / a.frames), "output_dir": str(out)})
    t0 = time.perf_counter()
    r = stage.execute({})
    sec = time.perf_counter() - t0
    m = instance_mask_iou(out / "instances.jsonl", w / "video" / "ground_truth.json")
    return {"seconds": sec, "images": r.outputs["frame_count"], "images_per_s": r.outputs["frame_count"] / sec,
            "instances": r.outputs["character_count"], "iou": m, "rss_mb": rss_mb()}


def worker_cluster(a):
    from cluster_scores import mask_identity_scores, timed_clustering
    w = Path(a.workdir)
    src, out = w / a.input, w / f"clu_{a.name}"
    res = timed_clustering(src, out)
    if (src / "instances.jsonl").exists():
        res["scores"] = mask_identity_scores(out / "clusters.jsonl", src / "instances.jsonl",
                                             w / "video" / "ground_truth.json")
    return res


def _frames(w: Path, n: int):
    from pipeline_tasks.stages.characters.frames_input import read_rgb
    from pipeline_tasks.stages.video.formats import read_frames
    return [read_rgb(w / "frames" / r.file) for r in read_frames(w / "frames" / "frames.jsonl")[:n]]


def worker_sam(a):
    import torch
    from cluster_scores import rss_mb
    from segment_anything.build_sam import _build_sam

    from pipeline_tasks.stages.characters.sam_backend import SamBackend
    w = Path(a.workdir)
    ckpt = w / "sam_vit_b_random.pth"
    if not ckpt.exists():
        torch.manual_seed(0)
        torch.save(_build_sam(768, 12, 12, [2, 5, 8, 11]).state_dict(), ckpt)
    images = _frames(w, a.images)
    backend = SamBackend(str(ckpt), device="cpu", mode=a.mode, points_per_side=a.points)
    backend.predict_scene(images[:1])                      # warm-up (first call allocates)
    t0 = time.perf_counter()
    backend.predict_scene(images)
    sec = time.perf_counter() - t0
    return {"seconds": sec, "images": len(images), "images_per_s": len(images) / sec, "rss_mb": rss_mb(),
            "mode": a.mode, "points_per_side": a.points, "threads": torch.get_num_threads()}


def worker_u2net(a):
    import torch
    from cluster_scores import rss_mb

    from pipeline_tasks.stages.characters.onnx_backend import OnnxBackend
    w = Path(a.workdir)
    path = w / "u2net_random.onnx"
    if not path.exists():
        torch.manual_seed(0)
        model = u2net_module(full=True).eval()
        torch.onnx.export(model, (torch.zeros(1, 3, 320, 320),), str(path), input_names=["input.1"],
                          output_names=[f"d{i}" for i in range(7)], opset_version=17, dynamo=False)
    images = _frames(w, a.images)
    backend = OnnxBackend(str(path), kind="u2net")
    backend.predict_scene(images[:1])
    t0 = time.perf_counter()
    backend.predict_scene(images)
    sec = time.perf_counter() - t0
    return {"seconds": sec, "images": len(images), "images_per_s": len(images) / sec, "rss_mb": rss_mb(),
            "onnx_mb": path.stat().st_size / 2**20}


def worker_make_crops(a):
    """`a.count` RGBA crops from the segmentation's crops: mirrored / rescaled copies."""
    import numpy as np
    from PIL import Image
    w = Path(a.workdir)
    src = sorted((w / "seg_default" / "characters").glob("*.png"))
    out = w / f"crops_{a.count}"
    if out.exists() and len(list(out.iterdir())) == a.count:
        return {}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    rng = np.random.default_rng(0)
    for i in range(a.count):
        im = Image.open(src[i % len(src)])
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        s = float(rng.uniform(0.6, 1.2))
        im = im.resize((max(8, int(im.width * s)), max(8, int(im.height * s))), Image.Resampling.BILINEAR)
        im.save(out / f"crop_{i:06d}.png", compress_level=1)
    return {}


WORKERS = {"prepare": worker_prepare, "segment": worker_segment, "cluster": worker_cluster, "sam": worker_sam,
           "u2net": worker_u2net, "make_crops": worker_make_crops}


def run_worker(workdir: Path, kind: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--workdir", str(workdir)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_seconds"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/segment_cluster_bench")
    ap.add_argument("--skip", default="")
    ap.add_argument("--worker")
    for k in ("name", "frames", "input", "mode"):
        ap.add_argument(f"--{k}", default="")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a), default=float))
        return
    w = Path(a.workdir)
    w.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, a.skip.split(",")))
    results: dict[str, dict] = {}
    run_worker(w, "prepare")
    results["segment_default"] = run_worker(w, "segment", name="default", frames="frames")
    results["segment_demo"] = run_worker(w, "segment", name="demo", frames="frames_demo")
    results["cluster_default"] = run_worker(w, "cluster", name="default", input="seg_default")
    results["cluster_demo"] = run_worker(w, "cluster", name="demo", input="seg_demo")
    for n in (1000, 10000):
        if f"c{n}" in skip:
            continue
        run_worker(w, "make_crops", count=n)
        results[f"cluster_{n}"] = run_worker(w, "cluster", name=str(n), input=f"crops_{n}")
    if "sam" not in skip:
        results["sam_vit_b_auto"] = run_worker(w, "sam", images=2, mode="auto", points=16)
        results["sam_vit_b_boxes"] = run_worker(w, "sam", images=4, mode="boxes")
    if "u2net" not in skip:
        results["u2net"] = run_worker(w, "u2net", images=8)
    (w / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
