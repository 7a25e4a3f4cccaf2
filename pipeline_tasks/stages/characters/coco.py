"""segmentation's masks for annotation tools: `annotations.coco.json`, COCO instance annotations
(the layout of `instances_*.json`) with each mask as a compressed RLE over its whole frame, encoded
by pycocotools. One image per input frame (`file_name` relative to the frames folder), one
category (`character`), one annotation per character instance, in `instances.jsonl` order."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...atomic import write_json
from .formats import InstanceRecord

COCO = "annotations.coco.json"
CATEGORY = {"id": 1, "name": "character", "supercategory": "character"}


def frame_rle(crop: np.ndarray, crop_box: tuple[int, int, int, int], frame_size: tuple[int, int]) -> dict:
    """The compressed RLE (pycocotools) of a crop-sized mask (true or non-zero inside) placed at its
    crop box in a frame of `frame_size` (width, height)."""
    from pycocotools import mask as mask_utils
    x, y, w, h = crop_box
    width, height = frame_size
    full = np.zeros((height, width), dtype=np.uint8, order="F")
    full[y:y + h, x:x + w] = crop[:h, :w] != 0
    return mask_utils.encode(full)


def mask_png_rle(mask_png: str | os.PathLike, crop_box: tuple[int, int, int, int],
                 frame_size: tuple[int, int]) -> dict:
    """`frame_rle` of an instance's mask PNG (crop-sized, 0 or 255)."""
    from PIL import Image

    with Image.open(mask_png) as im:
        crop = np.asarray(im.convert("L")) > 127
    return frame_rle(crop, crop_box, frame_size)


def write_coco(path: str | os.PathLike, frames: Iterable[tuple[str, int, tuple[int, int]]],
               instances: Iterable[InstanceRecord], masks_base: str | os.PathLike,
               rles: dict[str, dict] | None = None) -> dict:
    """Write the COCO file atomically. `frames`: (file name, frame index, (width, height)) of every
    input frame; `rles`: the instances' masks already encoded (`frame_rle`), by mask file; the others'
    mask PNGs are read from `masks_base`. Returns the document."""
    from pycocotools import mask as mask_utils

    images, image_ids = [], {}
    for file_name, frame_index, (width, height) in frames:
        image_ids[os.path.basename(file_name)] = len(images) + 1       # what instances name (`source_frame`)
        images.append({"id": len(images) + 1, "file_name": file_name, "width": width, "height": height,
                       "frame_index": frame_index})
    annotations = []
    for r in instances:
        image = images[image_ids[r.source_frame] - 1]
        rle = (rles or {}).get(r.mask) or mask_png_rle(Path(masks_base) / r.mask, r.crop_box,
                                                       (image["width"], image["height"]))
        annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": CATEGORY["id"],
                            "segmentation": {"size": [int(s) for s in rle["size"]],
                                             "counts": rle["counts"].decode("ascii")},
                            "area": int(mask_utils.area(rle)), "bbox": [int(v) for v in r.bbox], "iscrowd": 0,
                            "score": r.score, "crop": r.file})
    document = {"info": {"description": "character instances from segmentation"},
                "images": images, "annotations": annotations, "categories": [CATEGORY]}
    write_json(path, document, indent=None)
    return document
