"""Images from stage outputs, downscaled and embedded as data URIs, found by the outputs a stage
publishes (any stage type that follows the contracts works):
- `frames_jsonl` (frame_extraction) -> sample frames with frame index / scene, and with
  `scenes_csv` a filmstrip: one frame per scene;
- `contact_sheets_dir` (clustering) -> one contact sheet per cluster, with `cluster_sizes`;
- `metadata_jsonl` (training_data_prep) -> dataset images with their captions."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..stages.dataset.formats import MetadataRow, read_metadata
from ..stages.video.formats import FrameRecord, SceneRow, read_frames, read_scenes


@dataclass
class Picture:
    uri: str
    caption: str
    width: int
    height: int
    source: str


def data_uri(path: str | Path, max_side: int) -> tuple[str, int, int] | None:
    """A downscaled copy as a data URI: PNG when the image has alpha (crops), else JPEG."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
            im = im.convert("RGBA" if has_alpha else "RGB")
    except (OSError, ValueError):
        return None
    im.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    if has_alpha:
        im.save(buf, "PNG", optimize=True)
        mime = "image/png"
    else:
        im.save(buf, "JPEG", quality=82)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.width, im.height


def _listing(read, path: Path) -> list:
    """The records of a listing; none when it is missing or damaged (the report shows what it can)."""
    try:
        return read(path)
    except PipelineError:
        return []


def spread(items: list, n: int) -> list:
    """Up to `n` items evenly spaced over the list (first and last included)."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def sample_frames(outputs: dict[str, Any], n: int, max_side: int = 320) -> list[Picture]:
    listing = Path(outputs["frames_jsonl"])
    base = Path(outputs.get("output_dir") or listing.parent)
    out = []
    frames: list[FrameRecord] = _listing(read_frames, listing)
    for rec in spread(frames, n):
        p = Path(rec.file)
        p = p if p.is_absolute() else base / p
        img = data_uri(p, max_side)
        if img:
            cap = f"frame {rec.frame_index} · scene {rec.scene_index}"
            out.append(Picture(img[0], cap, img[1], img[2], str(p)))
    return out


def scene_rows(outputs: dict[str, Any]) -> list[SceneRow]:
    return _listing(read_scenes, Path(outputs["scenes_csv"])) if outputs.get("scenes_csv") else []


def filmstrip(outputs: dict[str, Any], scenes: list[SceneRow], max_side: int = 200) -> list[Picture]:
    """One frame per scene: of the frames kept in it, the one nearest the scene's middle."""
    listing = Path(outputs["frames_jsonl"])
    base = Path(outputs.get("output_dir") or listing.parent)
    by_scene: dict[int, list[FrameRecord]] = {}
    for rec in _listing(read_frames, listing):
        by_scene.setdefault(rec.scene_index, []).append(rec)
    out = []
    for row in scenes:
        kept = by_scene.get(row.scene_index)
        if not kept:
            continue
        middle = (row.start_frame + row.end_frame) / 2
        rec = min(kept, key=lambda r: (abs(r.frame_index - middle), r.frame_index))
        p = Path(rec.file) if Path(rec.file).is_absolute() else base / rec.file
        img = data_uri(p, max_side)
        if img:
            cap = (f"scene {row.scene_index} · frames {row.start_frame}–{row.end_frame - 1} · "
                   f"{row.end_time - row.start_time:.1f} s")
            out.append(Picture(img[0], cap, img[1], img[2], str(p)))
    return out


def contact_sheets(outputs: dict[str, Any], max_side: int = 720) -> list[Picture]:
    d = Path(outputs["contact_sheets_dir"])
    sizes = outputs.get("cluster_sizes") or {}
    out = []
    for p in sorted(d.glob("*.png")) if d.is_dir() else []:
        img = data_uri(p, max_side)
        if img:
            n = sizes.get(p.stem)
            cap = p.stem + (f" · {n} crops" if n is not None else "")
            out.append(Picture(img[0], cap, img[1], img[2], str(p)))
    return out


def dataset_samples(outputs: dict[str, Any], n: int, max_side: int = 192) -> list[Picture]:
    listing = Path(outputs["metadata_jsonl"])
    base = listing.parent
    rows: list[MetadataRow] = _listing(read_metadata, listing)
    # balanced over concepts: round-robin through the folders
    by_folder: dict[str, list[MetadataRow]] = {}
    for r in rows:
        by_folder.setdefault(r.file_name.split("/")[0], []).append(r)
    picked: list[MetadataRow] = []
    queues = [list(v) for _, v in sorted(by_folder.items())]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    out = []
    for r in picked:
        p = base / r.file_name
        img = data_uri(p, max_side)
        if img:
            out.append(Picture(img[0], r.text, img[1], img[2], str(p)))
    return out
