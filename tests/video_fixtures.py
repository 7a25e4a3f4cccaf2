"""Shared, session-cached video fixtures for the video stage tests.

Registered for every test module by `pytest_plugins` in conftest.py: ask for them by name. Rendering
is cached per process in `_CACHE`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline_tasks.stages.synthetic_video import SyntheticVideoExecutor

_CACHE: dict[str, dict[str, Any]] = {}

# small and short, so the whole video test suite stays fast
CUT_CLIP = {"width": 320, "height": 180, "fps": 24, "duration": 12.0, "num_scenes": 6, "num_characters": 4,
            "seed": 7, "transition": "cut"}
# what real cartoons add: zooms, shots returning to a place, two-frame flashes, a shared body colour
CARTOON_CLIP = {"width": 320, "height": 180, "fps": 24, "duration": 16.0, "num_scenes": 8, "num_characters": 4,
                "seed": 0, "zoom": True, "revisit": 0.5, "flashes": 4, "shared_colour": True}
MIXED_CLIP = {"width": 256, "height": 144, "fps": 24, "duration": 8.0, "num_scenes": 5, "num_characters": 3,
              "seed": 3, "transition": "mixed", "transition_frames": 10}


def render_clip(tmp_path_factory: pytest.TempPathFactory, name: str, config: dict[str, Any]) -> dict[str, Any]:
    if name not in _CACHE:
        out = tmp_path_factory.mktemp(f"clip_{name}")
        stage = SyntheticVideoExecutor(f"make_{name}", {"output_dir": str(out), **config})
        stage.validate_config()
        result = stage.execute({})
        _CACHE[name] = {"outputs": result.outputs, "config": config, "dir": out}
    return _CACHE[name]


@pytest.fixture(scope="session")
def cut_clip(tmp_path_factory) -> dict[str, Any]:
    """320x180, 24 fps, 12 s, 6 scenes separated by hard cuts (rendered once per session)."""
    return render_clip(tmp_path_factory, "cut", CUT_CLIP)


@pytest.fixture(scope="session")
def cartoon_clip(tmp_path_factory) -> dict[str, Any]:
    """320x180, 16 s, 8 scenes: pans, zooms, shots of one place across cuts, 4 two-frame flashes."""
    return render_clip(tmp_path_factory, "cartoon", CARTOON_CLIP)


@pytest.fixture(scope="session")
def mixed_clip(tmp_path_factory) -> dict[str, Any]:
    """256x144, 8 s, 5 scenes with a random mix of cuts, fades and dissolves."""
    return render_clip(tmp_path_factory, "mixed", MIXED_CLIP)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8, *, gop: int = 8) -> Path:
    """Encode RGB frames to an H.264 MP4 (for hand-made inputs such as exact duplicates)."""
    from fractions import Fraction

    from pipeline_tasks.stages.video.encode import H264Writer
    h, w = frames[0].shape[:2]
    writer = H264Writer(path, w, h, Fraction(fps), keyframe_interval=gop)
    for f in frames:
        writer.write(f)
    writer.close()
    return path


def write_audio_only(path: Path) -> Path:
    """An AAC-in-MP4 file with one second of silence and no video stream."""
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("aac", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    frame.sample_rate = 16000
    for i in range(16):
        frame.pts = i * 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path
