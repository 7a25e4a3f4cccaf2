"""translation: subtitle cues into one or more target languages, timing kept.

Backends: `argos` (argos-translate with installed language packages) and `transformers` (a local
MarianMT / NLLB model directory per target language). Sentences that run over several cues are
translated whole and shared back over their cues (`pipeline_tasks.stages.audio.reassembly`). Outputs in
`output_dir`, per language: `<basename>.<lang>.srt`, `<basename>.<lang>.vtt`, `cues.<lang>.jsonl`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StageConfigError
from ..executor import StageExecutor
from .subtitle_generation import FILES_SCHEMA, RULES_SCHEMA

LANG = {"type": "string", "regex": r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$"}


class TranslationExecutor(StageExecutor):
    type_name = "translation"
    version = "1"
    description = "Translate subtitle cues (argos-translate or a local MarianMT/NLLB model), one file per language"
    config_schema = {
        "input_dir": {"type": "string", "empty": False, "excludes": "input"},
        "input": {"type": "string", "empty": False, "excludes": "input_dir"},
        "output_dir": {"type": "string", "required": True, "empty": False},
        "backend": {"type": "string", "allowed": ["argos", "transformers"], "default": "argos"},
        "source_language": {**LANG, "default": "en"},
        "target_languages": {"type": "list", "required": True, "minlength": 1, "schema": LANG},
        "model_dir": {"type": "string", "empty": False},
        "models": {"type": "dict", "keysrules": LANG, "valuesrules": {"type": "string", "empty": False}},
        "batch_size": {"type": "integer", "min": 1, "max": 256, "default": 16},
        "beam_size": {"type": "integer", "min": 1, "max": 8, "default": 2},
        "max_new_tokens": {"type": "integer", "min": 8, "max": 1024, "default": 256},
        "cpu_threads": {"type": "integer", "min": 1, "max": 64, "default": 2},
        "merge_sentences": {"type": "boolean", "default": True},
        "max_chars_per_line": RULES_SCHEMA["max_chars_per_line"],
        "max_lines": RULES_SCHEMA["max_lines"],
        **FILES_SCHEMA,
    }

    def _translators(self):
        from .audio.translate_base import get_translator

        s = self.settings
        return {t: get_translator(s.backend, s.source_language, t, s, self.stage_id)
                for t in s.target_languages}

    def packages(self) -> list[str]:
        return sorted({name for translator in self._translators().values() for name in translator.packages})

    def validate_config(self) -> None:
        s = self.settings
        if not s.input and not s.input_dir:
            raise StageConfigError("give 'input_dir' (a subtitle_generation output_dir) or 'input' (a cues.jsonl)",
                                   stage=self.stage_id, key="input_dir")
        targets = list(s.target_languages)
        if len(set(targets)) != len(targets):
            raise StageConfigError(f"target_languages lists a language twice: {targets}", stage=self.stage_id,
                                   key="target_languages")
        if s.source_language in targets:
            raise StageConfigError(f"target language '{s.source_language}' is the source language",
                                   stage=self.stage_id, key="target_languages")
        models = s.models or {}
        if s.backend == "transformers" and s.model_dir and len(targets) > 1:
            missing = [t for t in targets if t not in models]
            if missing:
                raise StageConfigError("one model_dir cannot serve several target languages; give models: "
                                       "{lang: DIR} for " + ", ".join(missing), stage=self.stage_id, key="models")
        for translator in self._translators().values():
            translator.check()

    def input_files(self) -> list[str]:
        s = self.settings
        files = [s.input] if s.input else []
        dirs = list((s.models or {}).values())
        if s.model_dir:
            dirs.append(s.model_dir)
        for d in dirs:
            cfg = Path(d) / "config.json"
            if cfg.is_file():
                files.append(str(cfg))
        return files

    def execute(self, inputs: dict[str, dict[str, Any]]):
        from .audio.reassembly import reassemble, sentence_groups
        from .audio.subtitle_files import read_cues, write_cues, write_subtitles

        s = self.settings
        src = Path(s.input) if s.input else Path(s.input_dir) / "cues.jsonl"
        cues = read_cues(src, stage=self.stage_id)
        if s.merge_sentences:
            groups = sentence_groups(cues)
        else:
            groups = [[i] for i in range(len(cues))]
        texts = [" ".join(cues[i].text for i in group) for group in groups]
        folder = self.output_folder()
        out = folder.path
        files: dict[str, dict[str, str]] = {}
        batches: dict[str, int] = {}
        translators = self._translators()
        for n, (lang, translator) in enumerate(sorted(translators.items())):
            translator.load()
            translated = translator.translate(texts, s.batch_size) if texts else []
            batches[lang] = translator.batches
            new_cues = reassemble(cues, translated, groups, s.max_chars_per_line, s.max_lines)
            files[lang] = {}
            for fmt in s.formats:
                path = folder.claim(f"{s.basename}.{lang}.{fmt}")
                write_subtitles(path, new_cues, fmt)
                files[lang][fmt] = str(path)
            folder.claim(f"cues.{lang}.jsonl")
            write_cues(out / f"cues.{lang}.jsonl", new_cues)
            files[lang]["cues"] = str(out / f"cues.{lang}.jsonl")
            self.progress(n + 1, len(translators), unit="languages")
        return self.result(outputs={"files": files, "languages": sorted(files), "cues": len(cues),
                                    "backend": s.backend},
                           metrics={"sentences": len(groups), "batches": batches})
