"""Contact sheets: a grid of a cluster's crops (on a checkerboard, so alpha shows) in one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...atomic import atomic_path


def contact_sheet(crops: list[np.ndarray], dest: Path, *, thumb: int = 96, columns: int = 8,
                  max_items: int = 64) -> Path:
    from PIL import Image
    crops = crops[:max_items]
    n = max(1, len(crops))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    yy, xx = np.mgrid[0:thumb, 0:thumb]
    board = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 200, 235).astype(np.uint8).repeat(3, axis=2)
    sheet = Image.new("RGB", (cols * thumb, rows * thumb), (255, 255, 255))
    for i, c in enumerate(crops):
        im = Image.fromarray(c, "RGBA")
        im.thumbnail((thumb, thumb), Image.Resampling.BILINEAR)
        tile = Image.fromarray(board.copy(), "RGB")
        tile.paste(im, ((thumb - im.width) // 2, (thumb - im.height) // 2), im)
        sheet.paste(tile, ((i % cols) * thumb, (i // cols) * thumb))
    with atomic_path(dest) as tmp:
        sheet.save(tmp)
    return dest
