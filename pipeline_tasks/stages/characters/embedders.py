"""Embedders: one fixed-length vector per RGBA character crop.

- `ColourEmbedder` (default, weight-free): a joint CIELAB histogram (L 4 x a 8 x b 8 bins) of the
  alpha-masked pixels, square-rooted (Hellinger: Euclidean distance between embeddings is the
  Hellinger distance between colour distributions), plus a small layout part: the a/b histograms of
  the crop's top third and the rest (heads and bodies have their own colours), weighted by
  `layout_weight`. Invariant to position, scale and mirroring; robust to pose.
- `TorchFaceEmbedder`: facenet-pytorch's InceptionResnetV1 on a weights file the user supplies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ModelWeightsError, StageInputError


def _lab_hist(lab: np.ndarray, bins=(4, 8, 8)) -> np.ndarray:
    if lab.shape[0] == 0:
        return np.zeros(int(np.prod(bins)), np.float32)
    idx = [np.minimum((lab[:, c].astype(np.int32) * b) // 256, b - 1) for c, b in enumerate(bins)]
    flat = (idx[0] * bins[1] + idx[1]) * bins[2] + idx[2]
    h = np.bincount(flat, minlength=int(np.prod(bins))).astype(np.float32)
    return h / h.sum()


class ColourEmbedder:
    name = "colour"

    def __init__(self, layout_weight: float = 0.5, alpha_threshold: int = 128):
        self.layout_weight = layout_weight
        self.alpha_threshold = alpha_threshold

    def embed(self, rgba: np.ndarray) -> np.ndarray:
        import cv2
        rgb = np.ascontiguousarray(rgba[..., :3])
        m = rgba[..., 3] >= self.alpha_threshold
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        whole = np.sqrt(_lab_hist(lab[m]))
        rows = np.flatnonzero(m.any(axis=1))
        parts = []
        if rows.size:
            cut = rows[0] + (rows[-1] - rows[0] + 1) // 3
            top = m.copy()
            top[cut:] = False
            rest = m & ~top
            for part in (top, rest):
                parts.append(np.sqrt(_lab_hist(lab[part], bins=(1, 8, 8))))
        else:
            parts = [np.zeros(64, np.float32)] * 2
        layout = np.concatenate(parts) * self.layout_weight / np.sqrt(2)
        return np.concatenate([whole, layout]).astype(np.float32)

    def embed_batch(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.embed(c) for c in crops])


_FACENET_CACHE: dict[tuple[str, str], object] = {}


class TorchFaceEmbedder:
    """InceptionResnetV1 (facenet-pytorch) loaded from a user-supplied state_dict file."""
    name = "facenet"

    def __init__(self, weights: str, device: str = "cpu", stage: str | None = None):
        if not Path(weights).is_file():
            raise ModelWeightsError(f"embedder weights not found: {weights}; facenet-pytorch's InceptionResnetV1 "
                                    "state_dicts (vggface2 / casia-webface) come from the facenet-pytorch project "
                                    "releases", path=weights, stage=stage, key="embedder_weights")
        key = (str(Path(weights).resolve()), device)
        if key not in _FACENET_CACHE:
            import torch
            from facenet_pytorch import InceptionResnetV1
            model = InceptionResnetV1(pretrained=None, classify=False)
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                model.load_state_dict(state, strict=False)
            except Exception as exc:
                raise ModelWeightsError(f"cannot load InceptionResnetV1 weights from {weights}: {exc}",
                                        path=weights, stage=stage, key="embedder_weights") from exc
            _FACENET_CACHE[key] = model.eval().to(device)
        self.model = _FACENET_CACHE[key]
        self.device = device

    def embed_batch(self, crops: list[np.ndarray]) -> np.ndarray:
        import cv2
        import torch
        batch = []
        for c in crops:
            rgb = c[..., :3].astype(np.float32)
            rgb = rgb * (c[..., 3:4] >= 128)          # background to black
            rgb = cv2.resize(rgb, (160, 160), interpolation=cv2.INTER_AREA)
            batch.append((rgb - 127.5) / 128.0)
        x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2)).to(self.device)
        with torch.inference_mode():
            return self.model(x).cpu().numpy().astype(np.float32)


def check_rgba(img, path, stage=None) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise StageInputError(f"image has no alpha channel (mode {getattr(img, 'mode', '?')}); clustering needs RGBA "
                              "cut-outs such as the segmentation stage writes", path=path, stage=stage)
    return arr
