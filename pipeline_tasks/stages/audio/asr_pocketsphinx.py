"""CMU PocketSphinx backend: the US-English model shipped in the pocketsphinx wheel (offline).

Each chunk is decoded as one utterance; segments are the runs of words between pauses of at least
`pause_split` seconds (PocketSphinx has no sentence segmentation of its own).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import ModelWeightsError, StageConfigError
from .asr_base import ASRBackend
from .transcript import Segment, Word

FRAME_RATE = 100  # pocketsphinx's default frames per second
_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+|<.*>)$")


class PocketsphinxBackend(ASRBackend):
    name = "pocketsphinx"

    def check(self) -> None:
        language = self.settings.language or "en"
        model_dir = self.settings.model_dir
        if model_dir is None and language not in ("en", "en-us"):
            raise StageConfigError(
                f"pocketsphinx ships only a US-English model; language '{language}' is not supported",
                stage=self.stage, key="language",
                hint="use language: en, or backend: faster_whisper with a multilingual model, or give "
                     "model_dir with a PocketSphinx acoustic model (hmm/), dictionary (*.dict) and "
                     "language model (*.lm.bin) for that language")
        if model_dir is not None:
            path = Path(model_dir)
            if not path.is_dir():
                raise ModelWeightsError(
                    f"PocketSphinx model directory not found: {path}", path=path, stage=self.stage,
                    key="model_dir",
                    hint="it must hold an acoustic model folder and *.dict / *.lm.bin files "
                         "(CMU Sphinx models from the cmusphinx project); omit model_dir for the shipped en-us model")

    def _decoder_kwargs(self) -> dict:
        model_dir = self.settings.model_dir
        if not model_dir:
            return {}
        path = Path(model_dir)
        hmm = next((p for p in sorted(path.iterdir()) if p.is_dir()), None)
        dic = next(iter(sorted(path.glob("*.dict"))), None)
        lm = next(iter(sorted(path.glob("*.lm.bin"))), None)
        missing = [n for n, v in (("acoustic model folder", hmm), ("*.dict", dic), ("*.lm.bin", lm)) if v is None]
        if missing:
            raise ModelWeightsError(f"PocketSphinx model directory {path} lacks: {', '.join(missing)}",
                                    path=path, stage=self.stage, key="model_dir")
        return {"hmm": str(hmm), "dict": str(dic), "lm": str(lm)}

    def load(self) -> None:
        self._kwargs = self._decoder_kwargs()
        self._new_decoder()

    def _new_decoder(self):
        from pocketsphinx import Decoder

        try:
            return Decoder(samprate=self.sample_rate, loglevel="FATAL", **self._kwargs)
        except (RuntimeError, ValueError) as exc:
            raise ModelWeightsError(f"PocketSphinx could not load its model: {exc}",
                                    path=self.settings.model_dir, stage=self.stage, key="model_dir") from exc

    def fingerprint(self) -> str:
        import pocketsphinx

        return f"pocketsphinx-{getattr(pocketsphinx, '__version__', '5')}-{self.settings.model_dir}-" \
               f"{self.settings.pause_split}"

    def transcribe(self, samples: np.ndarray, language: str | None) -> tuple[list[Segment], str | None]:
        pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes()
        # A fresh decoder per chunk: PocketSphinx adapts its cepstral mean across utterances, which
        # would make a chunk's text depend on which chunks ran before it in this process (resume).
        d = self._new_decoder()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        words: list[Word] = []
        pauses: list[float] = []   # silence before each word
        gap = 0.0
        for seg in d.seg():
            start, end = seg.start_frame / FRAME_RATE, (seg.end_frame + 1) / FRAME_RATE
            if _FILLER.match(seg.word):
                gap += end - start
                continue
            word = re.sub(r"\(\d+\)$", "", seg.word)
            words.append(Word(round(start, 3), round(end, 3), word, round(float(seg.prob), 4)))
            pauses.append(gap)
            gap = 0.0
        pause_split = self.settings.pause_split
        segments: list[Segment] = []
        current: list[Word] = []
        for word, pause in zip(words, pauses):
            if current and pause >= pause_split:
                segments.append(_segment(current))
                current = []
            current.append(word)
        if current:
            segments.append(_segment(current))
        return segments, "en" if not self.settings.model_dir else (language or None)


def _segment(words: list[Word]) -> Segment:
    return Segment(words[0].start, words[-1].end, " ".join(w.word for w in words), list(words))
