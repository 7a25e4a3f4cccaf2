"""Face features for clustering (`use_face_detection: true`).

Detectors that ship their models, so nothing is downloaded: `animeface` (nvxs anime-face detector,
in its wheel) and `mtcnn` (facenet-pytorch's MTCNN; its P/R/O-net weights are package data). Per
crop the most confident face's box is taken, and its feature is the square-rooted a*b* histogram
(8 x 8, CIELAB) of the face region plus a found flag; a crop without a face gets zeros (so it is
clustered by the base embedding alone). Crops smaller than `min_size` are upscaled for detection.
"""
from __future__ import annotations

import numpy as np

from ...errors import MissingPackageError

FEATURE_SIZE = 65
_MTCNN: dict[str, object] = {}


def face_region_feature(rgb: np.ndarray, box) -> np.ndarray:
    import cv2
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros(FEATURE_SIZE, np.float32)
    lab = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    a = np.minimum(lab[:, 1].astype(int) * 8 // 256, 7)
    b = np.minimum(lab[:, 2].astype(int) * 8 // 256, 7)
    hist = np.bincount(a * 8 + b, minlength=64).astype(np.float32)
    return np.concatenate([np.sqrt(hist / hist.sum()), [1.0]]).astype(np.float32)


class FaceFeatures:
    def __init__(self, detector: str = "animeface", device: str = "cpu", min_size: int = 160,
                 stage: str | None = None):
        self.detector = detector
        self.min_size = min_size
        self.found = 0
        try:
            if detector == "animeface":
                import animeface  # noqa: F401
            else:
                from facenet_pytorch import MTCNN
                if device not in _MTCNN:
                    _MTCNN[device] = MTCNN(keep_all=True, device=device)
                self.mtcnn = _MTCNN[device]
        except ImportError as exc:
            pkg = "animeface" if detector == "animeface" else "facenet-pytorch (pip install --no-deps)"
            raise MissingPackageError(f"face_detector '{detector}' needs the {pkg} package: {exc}",
                                   stage=stage, key="face_detector") from exc

    def detect(self, rgb: np.ndarray) -> tuple[float, float, float, float] | None:
        """The most confident face box (x0, y0, x1, y1) in `rgb` coordinates, or None."""
        from PIL import Image
        h, w = rgb.shape[:2]
        scale = max(1.0, self.min_size / max(1, min(h, w)))
        im = Image.fromarray(np.ascontiguousarray(rgb))
        if scale > 1:
            im = im.resize((int(round(w * scale)), int(round(h * scale))), Image.Resampling.BICUBIC)
        if self.detector == "animeface":
            import warnings

            import animeface
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)     # its use of Image.getdata
                faces = animeface.detect(im)
            if not faces:
                return None
            f = max(faces, key=lambda f: f.likelihood)
            b = f.face.pos
            box = (b.x, b.y, b.x + b.width, b.y + b.height)
        else:
            boxes, probs = self.mtcnn.detect(im)
            if boxes is None or len(boxes) == 0:
                return None
            box = tuple(boxes[int(np.argmax(probs))])
        return tuple(v / scale for v in box)

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        out = []
        for c in crops:
            rgb = c[..., :3].copy()
            rgb[c[..., 3] < 128] = 255          # detect on a white background
            box = self.detect(rgb)
            if box is None:
                out.append(np.zeros(FEATURE_SIZE, np.float32))
            else:
                self.found += 1
                out.append(face_region_feature(c[..., :3], box))
        return np.stack(out) if out else np.zeros((0, FEATURE_SIZE), np.float32)
