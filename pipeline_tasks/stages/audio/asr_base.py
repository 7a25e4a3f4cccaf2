"""The speech-recognition backend interface and the name → backend factory.

A backend loads its model once (`load`) and then transcribes chunks of mono float32 audio;
the transcription stage knows only this interface.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ...errors import StageConfigError
from .transcript import Segment

BACKENDS = {
    "pocketsphinx": "pipeline_tasks.stages.audio.asr_pocketsphinx:PocketsphinxBackend",
    "faster_whisper": "pipeline_tasks.stages.audio.asr_whisper:FasterWhisperBackend",
}


class ASRBackend(ABC):
    name: str = ""
    sample_rate: int = 16000

    def __init__(self, settings: Any, stage: str | None = None):
        self.settings = settings       # the transcription stage's settings
        self.stage = stage

    def check(self) -> None:
        """Cheap checks before any audio is touched (model directory exists, language supported)."""

    def load(self) -> None:
        """Load the model (once per process)."""

    @abstractmethod
    def transcribe(self, samples: np.ndarray, language: str | None) -> tuple[list[Segment], str | None]:
        """Segments (times relative to the chunk) and the language used or detected."""

    def fingerprint(self) -> str:
        """Everything about the backend that changes its output (part of each chunk's cache key)."""
        return self.name


def get_backend(name: str, settings: Any, stage: str | None = None) -> ASRBackend:
    if name not in BACKENDS:
        raise StageConfigError(f"unknown transcription backend '{name}'; use one of {', '.join(BACKENDS)}",
                               stage=stage, key="backend")
    module, _, attr = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(settings, stage)
