"""`sam2`: SAM 2 / SAM 2.1 (the `sam2` package) from a checkpoint file.

A checkpoint is `{"model": state_dict}` as the SAM 2 project publishes it (a bare state_dict is
read too). The model is built from the `sam2` package's own configuration of the same family
(`configs/sam2.1/...` when the checkpoint has SAM 2.1's `no_obj_embed_spatial`, else
`configs/sam2/...`), with every size the tensors show read from the checkpoint: the Hiera trunk's
width, its stage depths and window position embedding, the memory attention's layers and
feed-forward width, the memory fuser's layers. Attention heads, global-attention blocks and window
sizes leave no trace in the tensors; they come from the configuration whose stage depths match
(tiny 1-2-7-2, small 1-2-11-2, base+ 2-3-16-3, large 2-6-36-4), so those four and any narrower
model of the same depths load. Modes as for `sam`: `auto` (SAM2AutomaticMaskGenerator) and
`boxes` (SAM2ImagePredictor prompted with the weight-free background model's boxes). The model
loads once per process.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import ModelWeightsError
from .sam_backend import SamBackend

_MODELS: dict[tuple[str, int, str], object] = {}
SAM2_HELP = ("SAM 2 checkpoints (sam2.1_hiera_tiny.pt ...) are published by the SAM 2 project; "
             "`pipeline-tasks models fetch sam2.1-hiera-tiny` puts one in the model cache")
TRUNK = "image_encoder.trunk."
# stage depths -> (config file suffix, num_heads, global_att_blocks, window_spec)
FAMILIES = {
    (1, 2, 7, 2): ("t", 1, [5, 7, 9], [8, 4, 14, 7]),
    (1, 2, 11, 2): ("s", 1, [7, 10, 13], [8, 4, 14, 7]),
    (2, 3, 16, 3): ("b+", 2, [12, 16, 20], [8, 4, 14, 7]),
    (2, 6, 36, 4): ("l", 2, [23, 33, 43], [8, 4, 16, 8]),
}


def _indices(state: dict, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state for m in [pattern.match(k)] if m})


def architecture(state: dict) -> tuple[str, list[str]]:
    """The `sam2` package's config name and the hydra overrides that give a model of the
    checkpoint's shape. Raises KeyError/ValueError for a state_dict that is no SAM 2 model."""
    embed = int(state[TRUNK + "patch_embed.proj.weight"].shape[0])
    blocks = _indices(state, TRUNK + "blocks.")
    if not blocks:
        raise KeyError(TRUNK + "blocks")
    # the first block of every stage after the first widens the features: it has a `proj`
    starts = [0] + [i for i in blocks if f"{TRUNK}blocks.{i}.proj.weight" in state]
    stages = tuple(b - a for a, b in zip(starts, starts[1:] + [len(blocks)]))
    if stages not in FAMILIES:
        raise ValueError(f"Hiera stage depths {list(stages)} match no SAM 2 configuration "
                         f"({', '.join('-'.join(map(str, s)) for s in FAMILIES)})")
    suffix, heads, global_blocks, windows = FAMILIES[stages]
    bkg = list(state[TRUNK + "pos_embed"].shape[2:])
    version = "sam2.1" if "no_obj_embed_spatial" in state else "sam2"
    layers = _indices(state, "memory_attention.layers.")
    feed_forward = int(state["memory_attention.layers.0.linear1.weight"].shape[0])
    fuser = _indices(state, "memory_encoder.fuser.layers.")
    overrides = [
        f"++model.image_encoder.trunk.embed_dim={embed}",
        f"++model.image_encoder.trunk.num_heads={heads}",
        f"++model.image_encoder.trunk.stages=[{','.join(map(str, stages))}]",
        f"++model.image_encoder.trunk.global_att_blocks=[{','.join(map(str, global_blocks))}]",
        f"++model.image_encoder.trunk.window_spec=[{','.join(map(str, windows))}]",
        f"++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[{','.join(map(str, bkg))}]",
        f"++model.image_encoder.neck.backbone_channel_list=[{embed * 8},{embed * 4},{embed * 2},{embed}]",
        f"++model.memory_attention.num_layers={len(layers)}",
        f"++model.memory_attention.layer.dim_feedforward={feed_forward}",
        f"++model.memory_encoder.fuser.num_layers={len(fuser)}",
    ]
    prefix = "sam2.1_" if version == "sam2.1" else "sam2_"
    return f"configs/{version}/{prefix}hiera_{suffix}.yaml", overrides


def load_sam2(path: str, device: str, stage: str | None = None):
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime_ns, device)
    if key not in _MODELS:
        import torch
        try:
            checkpoint = torch.load(str(p), map_location="cpu", weights_only=True)
            state = checkpoint["model"] if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"),
                                                                                      dict) else checkpoint
            config, overrides = architecture(state)
            from sam2.build_sam import build_sam2
            model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
            model.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, OSError, EOFError, AttributeError, TypeError,
                IndexError) as exc:
            raise ModelWeightsError(f"cannot load a SAM 2 checkpoint from {path}: "
                                    f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}; "
                                    f"{SAM2_HELP}", path=path, stage=stage, key="weights") from exc
        _MODELS[key] = model.to(device).eval()
    return _MODELS[key]


class Sam2Backend(SamBackend):
    name = "sam2"

    def load(self, path: str, device: str, stage: str | None):
        return load_sam2(path, device, stage)

    def mask_generator(self, **options):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        return SAM2AutomaticMaskGenerator(self.model, **options)

    def predictor(self):
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        return SAM2ImagePredictor(self.model)
