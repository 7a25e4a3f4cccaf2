"""Camera motion from the encoder's motion vectors, read while the context frames are decoded.

An inter-coded frame carries, for each block, the vector to where the block comes from in a
reference frame; FFmpeg exports them on request (`flags2 +export_mvs`) as frame side data. The
background is most of the blocks, so a scale-and-shift fitted by RANSAC (`cv2.estimateAffinePartial2D`)
to the vectors pointing into the past gives the camera's pan and zoom to that reference almost for
free. The reference of a frame's past vectors is taken to be the latest earlier frame in display
order that is not a B-frame (an I- or P-frame): what H.264/H.265 encoders reference by default. A
vector field that contradicts it (another reference, flat blocks with vectors of no meaning) is
caught by the image check of registration.py, which uses these motions only as a candidate.

`MotionTrack` chains the motions of a scene's decoded frames into placements relative to a common
frame. The chain breaks at a frame without usable vectors (an intra frame, a frame whose reference
was not decoded, too few agreeing vectors); a new segment starts there, and placements are only
comparable within a segment.
"""
from __future__ import annotations

import numpy as np

MIN_VECTORS = 64          # vectors (and RANSAC inliers) a fit needs
MAX_VECTORS = 1000        # vectors a fit uses, about (evenly thinned: RANSAC's cost grows with them)
PICTURE_B = 3             # FFmpeg's AV_PICTURE_TYPE_B, as PyAV gives `VideoFrame.pict_type`
THRESHOLD = 1.0           # pixels: a vector farther from the fitted motion is an outlier (a character)


def past_motion(frame) -> np.ndarray | None:
    """The 2x3 scale-and-shift map from `frame`'s pixels to its past reference frame's (full-size
    pixels), fitted to the frame's motion vectors that point into the past; None when it has too
    few (an intra frame, vectors not exported) or they agree on no camera motion."""
    import cv2
    side = frame.side_data.get("MOTION_VECTORS")
    if side is None:
        return None
    mv = side.to_ndarray()
    if len(mv) > 2 * MAX_VECTORS:
        mv = mv[::len(mv) // MAX_VECTORS]          # evenly thinned (block order: raster)
    mv = mv[mv["source"] < 0]
    if len(mv) < MIN_VECTORS:
        return None
    dst = np.stack([mv["dst_x"], mv["dst_y"]], axis=1).astype(np.float32)
    src = dst + np.stack([mv["motion_x"], mv["motion_y"]], axis=1).astype(np.float32) \
        / np.maximum(mv["motion_scale"], 1)[:, None].astype(np.float32)
    m, inliers = cv2.estimateAffinePartial2D(dst, src, method=cv2.RANSAC, ransacReprojThreshold=THRESHOLD,
                                             maxIters=500, confidence=0.99, refineIters=10)
    if m is None or int(inliers.sum()) < MIN_VECTORS:
        return None
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if not 0.8 < scale < 1.25 or abs(m[1, 0]) > 0.02 * scale:     # a camera zooms and pans; it does not spin
        return None
    centre = np.array([frame.width / 2, frame.height / 2])
    moved = m[:, :2] @ centre + m[:, 2]
    return np.array([[scale, 0.0, moved[0] - scale * centre[0]], [0.0, scale, moved[1] - scale * centre[1]]])


class MotionTrack:
    """Placements of a scene's decoded frames, fed in display order: `add(frame)` returns
    ``(segment, m)``, m the 2x3 map from the frame's pixels to its segment's first frame's
    (full-size pixels), or None when the frame cannot be placed (a B-frame: nothing refers to it)."""

    def __init__(self):
        self.segment = -1
        self._reference: np.ndarray | None = None     # the latest I/P frame's placement in the segment

    def add(self, frame, wanted: bool = True) -> tuple[int, np.ndarray] | None:
        """The frame's placement; for a B-frame not `wanted` (a frame no caller keeps) nothing is
        computed (nothing refers to it) and None comes back."""
        from .registration import IDENTITY, compose
        is_b = frame.pict_type == PICTURE_B
        if is_b and not wanted:
            return None
        motion = past_motion(frame) if self._reference is not None else None
        if motion is None:
            if is_b:
                return None           # a B-frame: nothing of the chain refers to it
            self.segment += 1         # an I/P frame without usable vectors: a new segment starts
            self._reference = IDENTITY.copy()
            return self.segment, self._reference
        placed = compose(self._reference, motion)
        if not is_b:
            self._reference = placed
        return self.segment, placed


def to_work_size(m: np.ndarray, full: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A scale-and-shift map between full-size frames (w, h) `full` as the same map between the
    frames resized to `size`."""
    sx, sy = size[0] / full[0], size[1] / full[1]
    return np.array([[m[0, 0], 0.0, m[0, 2] * sx], [0.0, m[1, 1], m[1, 2] * sy]])


def fill_between(indices: list[int], placements: list[tuple[int, np.ndarray] | None]) -> list:
    """`placements` of frames `indices` (time order) with each missing one between two placed
    frames of one segment filled in as if the camera moved steadily between them (the shift and
    the scale interpolated by frame index): frames the decoder did not place (non-reference frames
    it skipped, read from elsewhere) get a candidate that registration.py checks against the image."""
    out = list(placements)
    for j, p in enumerate(placements):
        if p is not None:
            continue
        before = next((i for i in range(j - 1, -1, -1) if placements[i] is not None), None)
        after = next((i for i in range(j + 1, len(placements)) if placements[i] is not None), None)
        if before is None or after is None or placements[before][0] != placements[after][0]:
            continue
        r = (indices[j] - indices[before]) / max(1, indices[after] - indices[before])
        a, b = placements[before][1], placements[after][1]
        out[j] = (placements[before][0], (1 - r) * a + r * b)
    return out
