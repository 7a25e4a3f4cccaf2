"""Ranking signals of one RGBA crop: sharpness inside the character, visible area, face presence."""
from __future__ import annotations

import numpy as np


def load_rgba(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def visible_area(rgba: np.ndarray, alpha_min: int = 128) -> int:
    return int((rgba[..., 3] >= alpha_min).sum())


def sharpness(rgba: np.ndarray, alpha_min: int = 128) -> float:
    """Variance of the Laplacian of the luma, over the character's interior (the mask eroded by 2 px,
    so the cut-out silhouette against transparency does not count as detail)."""
    import cv2
    rgb = rgba[..., :3].astype(np.float32)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    lap = cv2.Laplacian(luma, cv2.CV_32F, ksize=3)
    mask = (rgba[..., 3] >= alpha_min).astype(np.uint8)
    inner = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
    values = lap[inner] if inner.sum() >= 16 else lap[mask.astype(bool)]
    return float(values.var()) if values.size else 0.0


class FacePresence:
    """1.0 when a face detector (pipeline_tasks.stages.characters.faces) finds a face in the crop, else 0.0.
    Loaded only when face ranking is asked for."""

    def __init__(self, detector: str = "animeface", stage: str | None = None):
        from ...errors import StageConfigError
        try:
            from ..characters.faces import FaceFeatures
        except ImportError as exc:
            raise StageConfigError(f"face ranking (face_detector: {detector}) needs "
                                   f"pipeline_tasks.stages.characters.faces, which cannot be imported ({exc}); "
                                   "set face_detector: null",
                                   stage=stage, key="face_detector") from exc
        self._faces = FaceFeatures(detector=detector, stage=stage)

    def __call__(self, rgba: np.ndarray) -> float:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        return 1.0 if self._faces.detect(rgb) is not None else 0.0
