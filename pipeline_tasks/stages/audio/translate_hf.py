"""Hugging Face seq2seq backend: a MarianMT or NLLB model saved in a local directory
(`save_pretrained` layout), run with transformers + torch on the CPU. Never downloads.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import MissingPackageError, ModelWeightsError, StageConfigError, StageExecutionError
from ...weights.packages import require
from .translate_base import Translator

# ISO 639-1 → NLLB/FLORES-200 codes for common languages; a full FLORES code may be given as well.
NLLB_CODES = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "nl": "nld_Latn", "pl": "pol_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "zh": "zho_Hans", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "ar": "arb_Arab", "tr": "tur_Latn", "sv": "swe_Latn", "cs": "ces_Latn", "hi": "hin_Deva",
}
HOW_TO_GET = ("a MarianMT model such as Helsinki-NLP/opus-mt-{src}-{tgt} or an NLLB model such as "
              "facebook/nllb-200-distilled-600M, saved with save_pretrained() (config.json, weights, tokenizer "
              "files) and copied onto this machine; it needs pip install 'pipeline-tasks[ml]'")

_MODELS: dict[str, tuple] = {}


class HFSeq2SeqTranslator(Translator):
    name = "transformers"
    packages = ("torch", "transformers")

    def model_dir(self) -> Path:
        models = self.settings.models or {}
        value = models.get(self.target) or self.settings.model_dir
        if not value:
            raise ModelWeightsError(f"backend transformers needs a model directory for target language "
                                    f"'{self.target}': set models: {{{self.target}: DIR}} (or model_dir)",
                                    stage=self.stage, key="models",
                                    hint="use " + HOW_TO_GET.format(src=self.source, tgt=self.target))
        return Path(value)

    def check(self) -> None:
        require({name: name for name in self.packages}, "backend 'transformers'", "ml",
                stage=self.stage, key="backend")
        path = self.model_dir()
        if not path.is_dir() or not (path / "config.json").is_file():
            what = "not found" if not path.is_dir() else "has no config.json"
            raise ModelWeightsError(f"translation model directory {what}: {path}", path=path, stage=self.stage,
                                    key="models", hint="put " + HOW_TO_GET.format(src=self.source, tgt=self.target)
                                    + " there")

    def load(self) -> None:
        try:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        except ImportError as exc:
            raise MissingPackageError("backend transformers needs torch, transformers and sentencepiece: "
                                   "pip install 'pipeline-tasks[ml]'", stage=self.stage, key="backend") from exc
        path = self.model_dir()
        key = str(path.resolve())
        if key not in _MODELS:
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                model = AutoModelForSeq2SeqLM.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError, KeyError) as exc:
                raise ModelWeightsError(f"could not load the translation model in {path}: {exc}", path=path,
                                        stage=self.stage, key="models",
                                        hint="it must hold " + HOW_TO_GET.format(src=self.source, tgt=self.target)
                                        ) from exc
            model.eval()
            _MODELS[key] = (tokenizer, model)
        torch.set_num_threads(self.settings.cpu_threads)
        torch.manual_seed(0)
        self._tokenizer, self._model = _MODELS[key]
        # never ask for more positions than the model has (its position table would overflow)
        positions = int(getattr(self._model.config, "max_position_embeddings", 0) or 1024)
        self._max_input = min(512, positions)
        self._generate_kwargs = {"num_beams": self.settings.beam_size,
                                 "max_new_tokens": min(self.settings.max_new_tokens, positions - 2),
                                 "do_sample": False}
        if getattr(self._model.config, "model_type", "") == "m2m_100":   # NLLB
            src = NLLB_CODES.get(self.source, self.source)
            tgt = NLLB_CODES.get(self.target, self.target)
            vocab = self._tokenizer.get_vocab()
            if src not in vocab or tgt not in vocab:
                raise StageConfigError(f"the NLLB model in {path} has no language code "
                                       f"{src if src not in vocab else tgt}", stage=self.stage, key="target_languages")
            self._tokenizer.src_lang = src
            self._generate_kwargs["forced_bos_token_id"] = self._tokenizer.convert_tokens_to_ids(tgt)

    def translate_batch(self, texts: list[str]) -> list[str]:
        import torch

        try:
            with torch.inference_mode():
                enc = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                      max_length=self._max_input)
                generated = self._model.generate(**enc, **self._generate_kwargs)
        except (RuntimeError, IndexError, ValueError) as exc:
            raise StageExecutionError(f"the translation model in {self.model_dir()} failed on a batch of "
                                      f"{len(texts)} texts: {exc.__class__.__name__}: {exc}", stage=self.stage,
                                      path=self.model_dir()) from exc
        return [t.strip() for t in self._tokenizer.batch_decode(generated, skip_special_tokens=True)]
