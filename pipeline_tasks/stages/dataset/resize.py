"""Fit an RGBA crop into a target size without cropping the character: scale to fit (Lanczos),
centre, and fill the rest with the background (transparent, white or a colour)."""
from __future__ import annotations

import re

import numpy as np

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def parse_background(value: str) -> tuple[int, int, int, int]:
    """'transparent' -> (0,0,0,0); 'white' -> opaque white; '#rrggbb' -> that colour, opaque."""
    v = value.strip().lower()
    if v == "transparent":
        return (0, 0, 0, 0)
    if v == "white":
        return (255, 255, 255, 255)
    if v == "black":
        return (0, 0, 0, 255)
    if _HEX.match(v):
        return (int(v[1:3], 16), int(v[3:5], 16), int(v[5:7], 16), 255)
    raise ValueError(f"background must be 'transparent', 'white', 'black' or '#rrggbb', not {value!r}")


def fit_on_background(rgba: np.ndarray, size: tuple[int, int], background: tuple[int, int, int, int],
                      margin: float = 0.0):
    """A PIL image of `size` (w, h): the crop scaled to fit inside (minus `margin`, a fraction of
    each side), centred, composited over `background`. RGBA when the background is transparent,
    RGB otherwise."""
    from PIL import Image
    tw, th = size
    src = Image.fromarray(rgba, "RGBA")
    avail_w, avail_h = max(1, int(tw * (1 - 2 * margin))), max(1, int(th * (1 - 2 * margin)))
    scale = min(avail_w / src.width, avail_h / src.height)
    nw, nh = max(1, round(src.width * scale)), max(1, round(src.height * scale))
    scaled = src.resize((nw, nh), Image.LANCZOS)
    canvas = Image.new("RGBA", (tw, th), background)
    canvas.alpha_composite(scaled, ((tw - nw) // 2, (th - nh) // 2))
    return canvas if background[3] == 0 else canvas.convert("RGB")
