"""faster-whisper backend: a Whisper model in CTranslate2 format from a local directory.

No download ever happens: the directory must already hold `model.bin`, `config.json` and
`tokenizer.json` (and usually `preprocessor_config.json`, `vocabulary.*`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import MissingPackageError, ModelWeightsError, StageConfigError
from ...weights.packages import require
from .asr_base import ASRBackend
from .transcript import Segment, Word

HOW_TO_GET = ("a CTranslate2 Whisper model, e.g. the 'Systran/faster-whisper-small' repository from the Hugging "
              "Face hub copied onto this machine, or one converted with "
              "`ct2-transformers-converter --model openai/whisper-small --output_dir DIR "
              "--copy_files tokenizer.json preprocessor_config.json`")
REQUIRED = ("model.bin", "config.json", "tokenizer.json")

_MODELS: dict[tuple, object] = {}   # loaded once per process


class FasterWhisperBackend(ASRBackend):
    name = "faster_whisper"

    def _model_dir(self) -> Path:
        model_dir = self.settings.model_dir
        if not model_dir:
            raise ModelWeightsError("backend faster_whisper needs model_dir: a local CTranslate2 Whisper model "
                                    "directory", stage=self.stage, key="model_dir", hint="use " + HOW_TO_GET)
        return Path(model_dir)

    def check(self) -> None:
        require({"faster_whisper": "faster-whisper"}, "backend 'faster_whisper'", "audio", stage=self.stage,
                key="backend")
        path = self._model_dir()
        if not path.is_dir():
            raise ModelWeightsError(f"Whisper model directory not found: {path}", path=path, stage=self.stage,
                                    key="model_dir", hint="put " + HOW_TO_GET + " there")
        missing = [name for name in REQUIRED if not (path / name).is_file()]
        if missing:
            raise ModelWeightsError(f"Whisper model directory {path} lacks {', '.join(missing)}", path=path,
                                    stage=self.stage, key="model_dir", hint="it must hold " + HOW_TO_GET)

    def load(self) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingPackageError("backend faster_whisper needs the faster-whisper package: "
                                   "pip install 'pipeline-tasks[audio]'", stage=self.stage, key="backend") from exc
        path = self._model_dir()
        key = (str(path.resolve()), self.settings.compute_type, self.settings.cpu_threads)
        if key not in _MODELS:
            try:
                _MODELS[key] = WhisperModel(str(path), device="cpu", compute_type=key[1], cpu_threads=key[2],
                                            local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelWeightsError(f"could not load the Whisper model in {path}: {exc}", path=path,
                                        stage=self.stage, key="model_dir", hint="it must hold " + HOW_TO_GET) from exc
        self._model = _MODELS[key]
        language = self.settings.language
        if language and language != "auto" and self._model.hf_tokenizer is not None:
            if not self._model.model.is_multilingual and language != "en":
                raise StageConfigError(f"the Whisper model in {path} is English-only; language '{language}' "
                                       "needs a multilingual model", stage=self.stage, key="language")
            if language not in self._model.supported_languages:
                raise StageConfigError(f"Whisper does not know language '{language}'; use 'auto' or one of "
                                       f"{', '.join(self._model.supported_languages[:12])}, ...",
                                       stage=self.stage, key="language")

    def fingerprint(self) -> str:
        path = self._model_dir()
        stat = (path / "model.bin").stat()
        return (f"faster_whisper-{path.resolve()}-{stat.st_size}-{stat.st_mtime_ns}-"
                f"{self.settings.compute_type}-{self.settings.beam_size}-"
                f"{self.settings.language}-{self.settings.word_timestamps}")

    def transcribe(self, samples: np.ndarray, language: str | None) -> tuple[list[Segment], str | None]:
        lang = None if language in (None, "auto") else language
        segments_iter, info = self._model.transcribe(
            samples.astype(np.float32), language=lang, beam_size=self.settings.beam_size,
            word_timestamps=self.settings.word_timestamps, condition_on_previous_text=False,
            temperature=0.0, vad_filter=False)
        # Whisper may put timestamps past the end of the audio (it always sees a 30 s window):
        # clamp every time to the chunk, and drop what starts after it.
        duration = round(len(samples) / self.sample_rate, 3)
        clamp = lambda t: round(min(max(float(t), 0.0), duration), 3)  # noqa: E731
        segments = []
        for s in segments_iter:
            text = s.text.strip()
            if not text or s.start >= duration:
                continue
            words = [Word(clamp(w.start), clamp(w.end), w.word.strip(), round(float(w.probability), 4))
                     for w in (s.words or []) if w.word.strip() and w.start < duration]
            segments.append(Segment(clamp(s.start), clamp(s.end), text, words))
        return segments, info.language
