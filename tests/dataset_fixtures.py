"""Generated inputs for the dataset / evaluate / report tests: RGBA character crops on disk with the
clustering stage's output layout (clusters.jsonl, one folder per cluster, noise/, contact sheets)
and a segmentation-style instances.jsonl. Nothing here depends on the clustering code."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PALETTE = [(220, 60, 60), (60, 160, 220), (90, 200, 90), (230, 180, 40), (160, 90, 200)]


def crop_image(cluster: int, index: int, *, size: tuple[int, int] | None = None, blur: float = 0.0,
               seed: int = 0) -> Image.Image:
    """An RGBA crop: a textured body + head in the cluster's colour on a transparent background."""
    rng = np.random.default_rng(seed * 10007 + (cluster + 1) * 101 + index)
    w, h = size or (int(rng.integers(40, 90)), int(rng.integers(80, 160)))
    colour = PALETTE[cluster % len(PALETTE)] if cluster >= 0 else tuple(int(v) for v in rng.integers(0, 255, 3))
    base = np.zeros((h, w, 4), np.uint8)
    texture = rng.integers(-60, 60, (h, w, 1))
    base[..., :3] = np.clip(np.array(colour)[None, None, :] + texture, 0, 255)
    img = Image.fromarray(base, "RGBA")
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    d.ellipse([w * 0.25, 0, w * 0.75, h * 0.3], fill=255)                  # head
    d.rounded_rectangle([w * 0.1, h * 0.28, w * 0.9, h - 1], radius=max(2, w // 6), fill=255)
    img.putalpha(mask)
    if blur:
        rgb = img.convert("RGB").filter(ImageFilter.GaussianBlur(blur))
        rgb.putalpha(mask)
        img = rgb
    return img


def make_clustered_crops(root: Path, sizes: dict[int, int], *, noise: int = 0, duplicates: dict[int, int] | None = None,
                         blurred: dict[int, int] | None = None, path_style: str = "segmentation",
                         seed: int = 0) -> dict[str, Any]:
    """Write crops for clusters `sizes` ({cluster: count}) plus `noise` crops (cluster -1).

    `duplicates[c]` extra crops of cluster c are exact copies of its last original crop (near-duplicates
    for the dedup check); `blurred[c]` of c's crops are heavily blurred (low sharpness).
    path_style: 'segmentation' — clusters.jsonl `file` relative to the segmentation dir (what the
    clustering stage writes) with copies in the cluster folders; 'relative' — relative to the
    clustering dir; 'absolute' — absolute paths.
    Returns paths and the ground truth of what was written."""
    root = Path(root)
    seg, clu = root / "seg", root / "clu"
    (seg / "characters").mkdir(parents=True, exist_ok=True)
    clu.mkdir(parents=True, exist_ok=True)
    duplicates, blurred = duplicates or {}, blurred or {}
    records, instances = [], []
    frame = 0
    plan = [(c, n) for c, n in sorted(sizes.items())] + ([(-1, noise)] if noise else [])
    blurred_files: set[str] = set()
    duplicate_files: set[str] = set()
    for cluster, n in plan:
        first = None
        for i in range(n + duplicates.get(cluster, 0)):
            name = f"f{frame:05d}_c{cluster + 1}_{i:02d}.png"
            if i >= n:                                   # an exact copy of an earlier crop
                img = first
                duplicate_files.add(name)
            else:
                blur = 4.0 if i < blurred.get(cluster, 0) else 0.0
                img = crop_image(cluster, i, blur=blur, seed=seed)
                if blur:
                    blurred_files.add(name)
            if i < n and i == n - 1:
                first = img                              # copies are of the last original crop
            folder = "noise" if cluster == -1 else f"cluster_{cluster:03d}"
            if path_style == "segmentation":
                img.save(seg / "characters" / name)
                (clu / folder).mkdir(exist_ok=True)
                img.save(clu / folder / name)
                file = f"characters/{name}"
            elif path_style == "relative":
                (clu / "crops").mkdir(exist_ok=True)
                img.save(clu / "crops" / name)
                file = f"crops/{name}"
            elif path_style == "absolute":
                img.save(seg / "characters" / name)
                file = str((seg / "characters" / name).resolve())
            else:
                raise ValueError(path_style)
            records.append({"file": file, "cluster": cluster, "probability": 0.9 if cluster >= 0 else 0.0})
            instances.append({"file": f"characters/{name}", "mask": f"masks/{name}",
                              "source_frame": f"frame_{frame:07d}.png", "bbox": [10, 20, img.width, img.height],
                              "crop_box": [10, 20, img.width, img.height],
                              "area": int((np.asarray(img)[..., 3] > 0).sum()),
                              "score": 0.9, "frame_index": frame, "scene_index": frame // 4})
            frame += 1
    (clu / "clusters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (seg / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instances))
    sheets = clu / "contact_sheets"
    sheets.mkdir(exist_ok=True)
    for cluster in sorted(sizes):
        tiles = [Image.open(seg / "characters" / Path(r["file"]).name) if path_style == "segmentation" else None
                 for r in records if r["cluster"] == cluster][:8]
        sheet = Image.new("RGB", (64 * max(1, len(tiles)), 64), (255, 255, 255))
        for k, t in enumerate(tiles):
            if t is not None:
                sheet.paste(t.resize((64, 64)), (64 * k, 0), t.resize((64, 64)))
        sheet.save(sheets / f"cluster_{cluster:03d}.png")
    return {"clusters_dir": clu, "seg_dir": seg, "instances_jsonl": seg / "instances.jsonl", "records": records,
            "instances": instances, "blurred": blurred_files, "duplicates": duplicate_files}


def crops_stage(output_dir, args):
    """`type: custom` callable for pipeline tests: writes a clustering-style output (see
    make_clustered_crops) under `output_dir`, after sleeping `args['sleep']` seconds (so it overlaps
    a parallel stage on the timeline), and publishes the clustering stage's outputs."""
    import time
    time.sleep(float(args.get("sleep", 0)))
    sizes = {int(k): int(v) for k, v in (args.get("sizes") or {0: 6, 1: 5}).items()}
    fx = make_clustered_crops(Path(output_dir), sizes, noise=int(args.get("noise", 2)))
    counts: dict[str, int] = {}
    for r in fx["records"]:
        name = "noise" if r["cluster"] == -1 else f"cluster_{r['cluster']:03d}"
        counts[name] = counts.get(name, 0) + 1
    return {"clusters_dir": str(fx["clusters_dir"]), "clusters_jsonl": str(fx["clusters_dir"] / "clusters.jsonl"),
            "contact_sheets_dir": str(fx["clusters_dir"] / "contact_sheets"), "cluster_sizes": counts,
            "cluster_count": len(sizes)}
