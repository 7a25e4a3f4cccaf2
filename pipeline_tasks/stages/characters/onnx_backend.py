"""`isnet` / `u2net`: rembg-compatible salient-object ONNX models run with onnxruntime.

The model takes float32 [N, 3, H, W] RGB (N may be fixed at 1 or dynamic; H, W fixed, e.g. 320 for
u2net, 1024 for isnet); its first output's channel 0 is the saliency map. Pre/post-processing as
rembg does it: resize to the model's size, scale by the image maximum, normalise with the model's
mean/std (u2net: ImageNet mean/std; isnet: mean 0.5, std 1), min-max normalise the prediction,
resize back. Sessions are cached per process (one load per weights file).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import ModelWeightsError, StageInputError
from .backend_base import Prediction, SegmentationBackend

NORMALISATION = {
    "u2net": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "isnet": ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
}
_SESSIONS: dict[tuple[str, int], object] = {}


def load_session(path: str, stage: str | None = None):
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _SESSIONS:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
        available = ort.get_available_providers()
        providers = [pr for pr in ("CUDAExecutionProvider", "CPUExecutionProvider") if pr in available]
        try:
            _SESSIONS[key] = ort.InferenceSession(str(p), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelWeightsError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:300]}; "
                                    "is it a complete rembg .onnx file?", path=path, stage=stage,
                                    key="weights") from exc
    return _SESSIONS[key]


class OnnxBackend(SegmentationBackend):
    def __init__(self, path: str, kind: str = "u2net", batch_size: int = 8, stage: str | None = None):
        self.name = kind
        self.path = path
        self.session = load_session(path, stage)
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        ok = (len(shape) == 4 and shape[1] == 3 and isinstance(shape[2], int) and isinstance(shape[3], int))
        if not ok:
            raise StageInputError(f"ONNX model input '{inp.name}' has shape {shape}; a rembg-style model takes "
                                  "[N, 3, H, W] RGB with a fixed H and W (e.g. [1, 3, 320, 320])",
                                  path=path, stage=stage)
        self.input_name = inp.name
        self.size = (int(shape[3]), int(shape[2]))          # (W, H)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.batch_size = self.fixed_batch or batch_size
        mean, std = NORMALISATION[kind]
        self.mean = np.array(mean, np.float32)
        self.std = np.array(std, np.float32)

    def preprocess(self, img: np.ndarray) -> np.ndarray:
        import cv2
        x = cv2.resize(img, self.size, interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
        x = x / max(float(x.max()), 1e-6)
        x = (x - self.mean) / self.std
        return x.transpose(2, 0, 1)

    def predict_scene(self, images: list[np.ndarray]) -> list[Prediction]:
        import cv2
        preds: list[Prediction] = []
        for k in range(0, len(images), self.batch_size):
            chunk = images[k:k + self.batch_size]
            batch = np.stack([self.preprocess(im) for im in chunk]).astype(np.float32)
            out = self.session.run(None, {self.input_name: batch})[0]
            for im, p in zip(chunk, out):
                m = p[0] if p.ndim == 3 else p
                lo, hi = float(m.min()), float(m.max())
                m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
                full = cv2.resize(m.astype(np.float32), (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
                preds.append(Prediction(foreground=np.clip(full, 0, 1)))
        return preds
