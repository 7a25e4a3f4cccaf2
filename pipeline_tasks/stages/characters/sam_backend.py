"""`sam`: segment-anything (ViT-B/L/H or any size) from a checkpoint file.

The architecture is read from the checkpoint itself (embedding width, depth, heads from the
relative-position tables, global-attention blocks from their table size), so the official vit_b /
vit_l / vit_h files and smaller self-built models load through the same code. Modes: `auto`
(SamAutomaticMaskGenerator on a point grid) and `boxes` (the weight-free background model proposes
one box per character; SAM refines each box into a mask). The model loads once per process.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import ModelWeightsError
from .backend_base import Prediction, SegmentationBackend

_MODELS: dict[tuple[str, int, str], object] = {}
SAM_HELP = ("SAM checkpoints (sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth) are published by "
            "the segment-anything project")


def pick_device(device: str) -> str:
    import torch
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def architecture(state: dict) -> dict:
    """encoder_embed_dim, encoder_depth, encoder_num_heads, encoder_global_attn_indexes of a SAM state_dict."""
    embed = int(state["image_encoder.patch_embed.proj.weight"].shape[0])
    blocks = sorted({int(m.group(1)) for k in state for m in [re.match(r"image_encoder\.blocks\.(\d+)\.", k)] if m})
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    window_table = 2 * 14 - 1
    glob = [i for i in blocks if int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) != window_table]
    return {"encoder_embed_dim": embed, "encoder_depth": len(blocks), "encoder_num_heads": embed // head_dim,
            "encoder_global_attn_indexes": glob}


def load_sam(path: str, device: str, stage: str | None = None):
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime_ns, device)
    if key not in _MODELS:
        import torch
        from segment_anything.build_sam import _build_sam
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
                state = state["model"]
            arch = architecture(state)
            sam = _build_sam(checkpoint=None, **arch)
            sam.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, OSError, EOFError, AttributeError, TypeError) as exc:
            raise ModelWeightsError(f"cannot load a segment-anything checkpoint from {path}: "
                                    f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}; {SAM_HELP}",
                                    path=path, stage=stage, key="weights") from exc
        _MODELS[key] = sam.to(device).eval()
    return _MODELS[key]


class SamBackend(SegmentationBackend):
    name = "sam"

    def __init__(self, path: str, device: str = "auto", mode: str = "auto", points_per_side: int = 16,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95, stage: str | None = None,
                 box_backend: SegmentationBackend | None = None, min_area: int = 200):
        self.device = pick_device(device)
        self.model = self.load(path, self.device, stage)
        self.mode = mode
        self.points_per_side = points_per_side
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.box_backend = box_backend
        self.min_area = min_area

    # what differs between segment-anything and SAM 2: loading, and the package's two front ends
    def load(self, path: str, device: str, stage: str | None):
        return load_sam(path, device, stage)

    def mask_generator(self, **options):
        from segment_anything import SamAutomaticMaskGenerator
        return SamAutomaticMaskGenerator(self.model, **options)

    def predictor(self):
        from segment_anything import SamPredictor
        return SamPredictor(self.model)

    def predict_scene(self, images: list[np.ndarray]) -> list[Prediction]:
        import torch
        with torch.inference_mode():
            if self.mode == "boxes":
                return self._boxes(images)
            gen = self.mask_generator(points_per_side=self.points_per_side, pred_iou_thresh=self.pred_iou_thresh,
                                      stability_score_thresh=self.stability_score_thresh, min_mask_region_area=0)
            preds = []
            for img in images:
                masks = gen.generate(np.ascontiguousarray(img))
                masks.sort(key=lambda m: (-m["area"], m["bbox"]))
                preds.append(Prediction(instances=[(m["segmentation"].astype(np.float32), float(m["predicted_iou"]))
                                                   for m in masks]))
            return preds

    def _boxes(self, images):
        from .background_model import BackgroundModelBackend
        from .instances import split_instances
        proposer = self.box_backend or BackgroundModelBackend()
        predictor = self.predictor()
        preds = []
        for img, prop in zip(images, proposer.predict_scene(images)):
            boxes = [inst.bbox for inst in split_instances(prop, alpha_threshold=0.5, min_area=self.min_area)]
            out = []
            if boxes:
                predictor.set_image(np.ascontiguousarray(img))
                for x, y, w, h in boxes:
                    masks, scores, _ = predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=False)
                    out.append((masks[0].astype(np.float32), float(scores[0])))
            preds.append(Prediction(instances=out))
        return preds
