"""Session-cached inputs for the segmentation and clustering tests.

One short synthetic cartoon (the video tests' `cut_clip`: 320x180, 12 s, 6 scenes, 4 characters),
its frames (frame_extraction in hybrid mode, a frame every 0.25 s, so each scene has several frames
for the background model), the default segmentation of those frames, and the default clustering.
Registered for every test module by `pytest_plugins` in conftest.py: ask for them by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from video_fixtures import CUT_CLIP, render_clip

from pipeline_tasks.stages.clustering import ClusteringExecutor
from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
from pipeline_tasks.stages.segmentation import SegmentationExecutor

FRAMES_CONFIG = {"mode": "hybrid", "interval": 0.25, "dedup_threshold": -1}
_CACHE: dict[str, Any] = {}


def run_segmentation(input_dir, output_dir, **config):
    stage = SegmentationExecutor("seg", {"input_dir": str(input_dir), "output_dir": str(output_dir), **config})
    stage.validate_config()
    return stage.execute({})


def run_clustering(input_dir, output_dir, **config):
    stage = ClusteringExecutor("clu", {"input_dir": str(input_dir), "output_dir": str(output_dir), **config})
    stage.validate_config()
    return stage.execute({})


@pytest.fixture(scope="session")
def char_clip(tmp_path_factory) -> dict[str, Any]:
    return render_clip(tmp_path_factory, "cut", CUT_CLIP)


@pytest.fixture(scope="session")
def char_frames(tmp_path_factory, char_clip) -> Path:
    if "frames" not in _CACHE:
        out = tmp_path_factory.mktemp("char_frames")
        stage = FrameExtractionExecutor("frames", {"input_video": char_clip["outputs"]["video"], "output_dir": str(out),
                                                **FRAMES_CONFIG})
        stage.execute({})
        _CACHE["frames"] = out
    return _CACHE["frames"]


@pytest.fixture(scope="session")
def seg_run(tmp_path_factory, char_frames) -> dict[str, Any]:
    if "seg" not in _CACHE:
        out = tmp_path_factory.mktemp("seg")
        result = run_segmentation(char_frames, out)
        _CACHE["seg"] = {"dir": out, "result": result}
    return _CACHE["seg"]


@pytest.fixture(scope="session")
def clu_run(tmp_path_factory, seg_run) -> dict[str, Any]:
    if "clu" not in _CACHE:
        out = tmp_path_factory.mktemp("clu")
        result = run_clustering(seg_run["dir"], out)
        _CACHE["clu"] = {"dir": out, "result": result}
    return _CACHE["clu"]


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
