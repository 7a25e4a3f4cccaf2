"""The text-translation backend interface and the name → backend factory.

A backend translates from one source language into one target language; the translation stage
makes one backend per target language, loads it once and sends it texts in batches.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

from ...errors import StageConfigError

BACKENDS = {
    "argos": "pipeline_tasks.stages.audio.translate_argos:ArgosTranslator",
    "transformers": "pipeline_tasks.stages.audio.translate_hf:HFSeq2SeqTranslator",
}


class Translator(ABC):
    name: str = ""
    packages: tuple[str, ...] = ()     # the Python packages (pip names) it translates with

    def __init__(self, source: str, target: str, settings: Any, stage: str | None = None):
        self.source = source
        self.target = target
        self.settings = settings       # the translation stage's settings
        self.stage = stage
        self.batches = 0

    def check(self) -> None:
        """Cheap checks (package or model directory present) before any work."""

    def load(self) -> None:
        """Load the model once."""

    @abstractmethod
    def translate_batch(self, texts: list[str]) -> list[str]:
        """Translations of `texts`, same order and length."""

    def translate(self, texts: list[str], batch_size: int) -> list[str]:
        out: list[str] = []
        for i in range(0, len(texts), batch_size):
            batch = texts[i:i + batch_size]
            result = self.translate_batch(batch)
            if len(result) != len(batch):
                raise RuntimeError(f"{self.name} returned {len(result)} translations for {len(batch)} texts")
            out.extend(result)
            self.batches += 1
        return out


def get_translator(name: str, source: str, target: str, settings: Any, stage: str | None = None) -> Translator:
    if name not in BACKENDS:
        raise StageConfigError(f"unknown translation backend '{name}'; use one of {', '.join(BACKENDS)}",
                               stage=stage, key="backend")
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(source, target, settings, stage)
