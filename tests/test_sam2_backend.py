"""`segmentation` with `model: sam2`: the SAM 2 package's model built from a checkpoint file, with
a tiny SAM 2.1 model built here (Hiera-Tiny's depths at width 8, one memory-attention layer), so
the loading code that reads an official checkpoint's architecture runs for real."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from character_fixtures import run_segmentation
from PIL import Image
from test_segmentation import read_instances, square_frames

from pipeline_tasks.errors import ModelWeightsError

pytest.importorskip("sam2")
TINY = ["++model.image_encoder.trunk.embed_dim=8", "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
        "++model.memory_attention.num_layers=1", "++model.memory_attention.layer.dim_feedforward=32",
        "++model.memory_encoder.fuser.num_layers=1"]


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory) -> Path:
    import torch
    from sam2.build_sam import build_sam2
    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", hydra_overrides_extra=TINY)
    path = tmp_path_factory.mktemp("sam2") / "tiny_sam2.1.pt"
    torch.save({"model": model.state_dict()}, path)          # the layout of the published checkpoints
    return path


def test_architecture_is_read_from_the_checkpoint(tiny_sam2):
    import torch

    from pipeline_tasks.stages.characters.sam2_backend import architecture
    config, overrides = architecture(torch.load(tiny_sam2, weights_only=True)["model"])
    assert config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert "++model.image_encoder.trunk.embed_dim=8" in overrides
    assert "++model.image_encoder.trunk.stages=[1,2,7,2]" in overrides
    assert "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]" in overrides
    assert "++model.memory_attention.num_layers=1" in overrides
    assert "++model.memory_attention.layer.dim_feedforward=32" in overrides


@pytest.mark.slow
def test_sam2_backend_loads_and_segments(tmp_path, tiny_sam2):
    from sam2.modeling.sam2_base import SAM2Base

    from pipeline_tasks.stages.characters.sam2_backend import load_sam2
    assert isinstance(load_sam2(str(tiny_sam2), "cpu"), SAM2Base)
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    result = run_segmentation(frames, tmp_path / "auto", model="sam2", weights=str(tiny_sam2), sam_points_per_side=1,
                              sam_pred_iou_thresh=0.0, sam_stability_thresh=0.0, min_area=1, device="cpu")
    recs = read_instances(tmp_path / "auto")
    assert result.outputs["character_count"] == len(recs) >= 1
    for r in recs:
        mask = np.asarray(Image.open(tmp_path / "auto" / r["mask"]))
        assert int((mask > 0).sum()) == r["area"] >= 1


def test_sam_checkpoint_is_no_sam2_checkpoint(tmp_path):
    import torch
    from segment_anything.build_sam import _build_sam
    sam = _build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])
    path = tmp_path / "sam1.pth"
    torch.save(sam.state_dict(), path)
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    with pytest.raises(ModelWeightsError) as err:
        run_segmentation(frames, tmp_path / "out", model="sam2", weights=str(path), device="cpu")
    assert "cannot load a SAM 2 checkpoint" in str(err.value) and "models fetch sam2.1-hiera-tiny" in str(err.value)
