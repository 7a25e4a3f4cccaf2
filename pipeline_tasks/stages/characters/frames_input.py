"""Reading a frame directory (frame_extraction output, or any folder of images) for segmentation.

With `frames.jsonl` the frames keep their frame_index and scene_index; without it every image is its
own scene and its frame index is the number in its name (or its position).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import is_partial
from ...errors import StageInputError
from ..video.formats import FRAMES, read_frames

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class FrameRef:
    path: Path
    frame_index: int
    scene_index: int
    video: str | None = None      # the source video, when frames.jsonl names it


def list_frames(input_dir: str | Path, stage: str | None = None) -> list[FrameRef]:
    d = Path(input_dir)
    if not d.exists():
        raise StageInputError("input directory does not exist; run the frame_extraction stage first or fix "
                              "input_dir", path=d, stage=stage)
    if not d.is_dir():
        raise StageInputError("input_dir is not a directory", path=d, stage=stage)
    listing = d / FRAMES
    refs: list[FrameRef] = []
    if listing.exists():
        refs = [FrameRef(d / r.file, r.frame_index, r.scene_index, r.video)
                for r in read_frames(listing, stage=stage)]
    else:
        files = sorted(p for p in d.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not is_partial(p))
        for i, p in enumerate(files):
            digits = re.findall(r"\d+", p.stem)
            refs.append(FrameRef(p, int(digits[-1]) if digits else i, i))
    if not refs:
        raise StageInputError("input directory contains no images (.png/.jpg/.webp); run frame_extraction first "
                              "or point input_dir at a folder of frames", path=d, stage=stage)
    return refs


def image_size(path: Path, stage: str | None = None) -> tuple[int, int]:
    """(width, height) of a frame image, from its header."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise StageInputError(f"cannot read image ({exc.__class__.__name__}: {exc}); the file is corrupt or not "
                              "an image: delete it or rerun frame_extraction", path=path, stage=stage) from exc


def read_rgb(path: Path, stage: str | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except FileNotFoundError as exc:
        raise StageInputError("frame listed in frames.jsonl is missing; rerun frame_extraction",
                              path=path, stage=stage) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise StageInputError(f"cannot read image ({exc.__class__.__name__}: {exc}); the file is corrupt or not "
                              "an image: delete it or rerun frame_extraction", path=path, stage=stage) from exc
