"""Target sizes: a square of `resolution`, or kohya-style aspect-ratio buckets (sides multiples of
`step`, area at most resolution², sides between `min_side` and `max_side`)."""
from __future__ import annotations


def make_buckets(resolution: int, step: int = 64, min_side: int | None = None,
                 max_side: int | None = None) -> list[tuple[int, int]]:
    max_area = resolution * resolution
    min_side = min_side or max(step, (resolution // 2) // step * step)
    max_side = max_side or resolution * 2
    out = set()
    w = min_side
    while w <= max_side:
        h = min(max_side, (max_area // w) // step * step)
        if h >= min_side:
            out.add((w, h))
            out.add((h, w))
        w += step
    return sorted(out)


def pick_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space) to the image's."""
    import math
    ar = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ar), -b[0] * b[1], b))


def target_size(width: int, height: int, resolution: int, mode: str, step: int = 64) -> tuple[int, int]:
    if mode == "square_pad":
        return resolution, resolution
    if mode == "aspect_buckets":
        return pick_bucket(width, height, make_buckets(resolution, step))
    raise ValueError(f"unknown bucket mode {mode!r}")
