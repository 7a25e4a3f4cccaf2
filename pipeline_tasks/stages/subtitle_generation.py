"""subtitle_generation: readable `.srt` / `.vtt` subtitles from a transcription's segments.

Layout rules (see `pipeline_tasks.stages.audio.cues`): characters per line, lines per cue, characters per
second, minimum/maximum cue duration, splits at pauses and punctuation, no overlaps. Outputs in
`output_dir`: `<basename>.srt`, `<basename>.vtt`, `cues.jsonl` (start, end, lines, word span) for the
translation stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StageConfigError
from ..executor import StageExecutor

RULES_SCHEMA = {
    "max_chars_per_line": {"type": "integer", "min": 10, "max": 100, "default": 42},
    "max_lines": {"type": "integer", "min": 1, "max": 3, "default": 2},
    "max_cps": {"type": "number", "min": 5, "max": 40, "default": 17},
    "min_duration": {"type": "number", "min": 0.2, "max": 5, "default": 1.0},
    "max_duration": {"type": "number", "min": 1, "max": 20, "default": 7.0},
    "pause_split": {"type": "number", "min": 0.1, "max": 5, "default": 0.6},
    "min_gap": {"type": "number", "min": 0, "max": 1, "default": 0.04},
}


# the subtitle files a stage writes (here and in translation)
FILES_SCHEMA = {
    "formats": {"type": "list", "minlength": 1, "schema": {"type": "string", "allowed": ["srt", "vtt"]},
                "default": ["srt", "vtt"]},
    "basename": {"type": "string", "regex": r"^[A-Za-z0-9_.-]+$", "default": "subtitles"},
}


class SubtitleGenerationExecutor(StageExecutor):
    type_name = "subtitle_generation"
    version = "1"
    description = "Readable SRT/VTT subtitles (pysubs2) from transcription segments"
    config_schema = {
        "input_dir": {"type": "string", "empty": False, "excludes": "input"},
        "input": {"type": "string", "empty": False, "excludes": "input_dir"},
        "output_dir": {"type": "string", "required": True, "empty": False},
        **FILES_SCHEMA,
        **RULES_SCHEMA,
    }

    def rules(self):
        from .audio.cues import CueRules

        s = self.settings
        return CueRules(max_chars=s.max_chars_per_line, max_lines=s.max_lines, max_cps=s.max_cps,
                        min_duration=s.min_duration, max_duration=s.max_duration, pause_split=s.pause_split,
                        min_gap=s.min_gap)

    def validate_config(self) -> None:
        if not self.settings.input and not self.settings.input_dir:
            raise StageConfigError("give 'input_dir' (a transcription output_dir) or 'input' (a segments.jsonl)",
                                   stage=self.stage_id, key="input_dir")
        rules = self.rules()
        if rules.min_duration >= rules.max_duration:
            raise StageConfigError(f"min_duration ({rules.min_duration}) must be below max_duration "
                                   f"({rules.max_duration})", stage=self.stage_id, key="min_duration")
        formats = self.settings.formats
        if len(set(formats)) != len(formats):
            raise StageConfigError(f"formats lists a format twice: {list(formats)}", stage=self.stage_id,
                                   key="formats")

    def input_files(self) -> list[str]:
        return [self.settings.input] if self.settings.input else []

    def execute(self, inputs: dict[str, dict[str, Any]]):
        from .audio.cues import build_cues, quality
        from .audio.subtitle_files import write_cues, write_subtitles
        from .audio.transcript import read_segments

        s = self.settings
        src = Path(s.input) if s.input else Path(s.input_dir) / "segments.jsonl"
        segments = read_segments(src, stage=self.stage_id)
        rules = self.rules()
        cues = build_cues(segments, rules)
        folder = self.output_folder()
        out = folder.path
        outputs: dict[str, Any] = {}
        for fmt in s.formats:
            path = folder.claim(f"{s.basename}.{fmt}")
            write_subtitles(path, cues, fmt)
            outputs[f"{fmt}_file"] = str(path)
        folder.claim("cues.jsonl")
        write_cues(out / "cues.jsonl", cues)
        outputs["cues_file"] = str(out / "cues.jsonl")
        outputs["cues"] = len(cues)
        self.progress(1, 1)
        return self.result(outputs=outputs, metrics=quality(cues, rules))
