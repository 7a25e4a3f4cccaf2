"""The small interface every segmentation backend implements.

A backend turns a batch of RGB frames (all from one scene, in time order) into one `Prediction`
per frame: either a soft foreground map of all characters (`foreground`, HxW float32 in [0, 1]),
which the stage thresholds and splits into connected components, or ready-made instance masks
(`instances`, as SAM produces them). The background model with context frames also says which
pixels of its foreground lie in regions that stay put on the background (`static`: background
carried along), which the stage measures per instance (`static_share`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prediction:
    foreground: np.ndarray | None = None                     # HxW float32 in [0, 1]
    instances: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (HxW float32, score)
    static: np.ndarray | None = None                         # HxW bool: foreground fixed on the background


class SegmentationBackend(ABC):
    name: str = ""

    @abstractmethod
    def predict_scene(self, images: list[np.ndarray]) -> list[Prediction]:
        """One prediction per RGB uint8 image; the images share a scene (same background)."""
