"""subtitle_index: one index over many recordings' subtitles (a gather over a batch of
subtitle_generation items).

`input_dir` is one subtitle_generation output folder or a list of them (in item order). Writes in
`output_dir`:
- `index.jsonl`: one line per recording, in input order: `item` (the label telling the folders
  apart, the item key in the usual layouts), `folder`, `subtitles` (format -> file, relative to
  the index), `cues`, `duration` (end of the last cue, seconds), `words`;
- `subtitles.txt`: every recording's cue text, one block per recording headed by its item.
Paths are relative to `output_dir`, so the index stays true when the project moves.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ..atomic import write_text
from ..errors import StageInputError
from ..executor import StageExecutor
from .gathered import PATHS_SCHEMA, labelled

CUES = "cues.jsonl"
SUBTITLE_SUFFIXES = (".srt", ".vtt")


class SubtitleIndexExecutor(StageExecutor):
    type_name = "subtitle_index"
    version = "1"
    description = "One index (and the text of every cue) over many recordings' subtitles"
    config_schema = {
        "input_dir": {**PATHS_SCHEMA, "required": True},     # a list: one subtitle_generation folder per item
        "output_dir": {"type": "string", "required": True, "empty": False},
    }

    def execute(self, inputs: dict[str, dict[str, Any]]):
        from .audio.subtitle_files import read_cues

        folder = self.output_folder()
        out = folder.path
        entries, blocks = [], []
        sources = labelled(self.settings.input_dir)
        for done, (label, src) in enumerate(sources, 1):
            if not (src / CUES).is_file():
                raise StageInputError(f"no {CUES} here; input_dir must list subtitle_generation output folders",
                                      path=src, stage=self.stage_id)
            cues = read_cues(src / CUES, stage=self.stage_id)
            item = label or src.name
            files = {p.suffix[1:]: os.path.relpath(p, out).replace(os.sep, "/")
                     for p in sorted(src.iterdir()) if p.suffix in SUBTITLE_SUFFIXES and p.is_file()}
            text = [" ".join(c.lines) for c in cues]
            entries.append({"item": item, "folder": os.path.relpath(src, out).replace(os.sep, "/"),
                            "subtitles": files, "cues": len(cues),
                            "duration": round(max((c.end for c in cues), default=0.0), 3),
                            "words": sum(len(t.split()) for t in text)})
            blocks.append(f"== {item}\n" + "".join(t + "\n" for t in text))
            self.progress(done, len(sources), unit="recordings")
        for name in ("index.jsonl", "subtitles.txt"):
            folder.claim(name)
        write_text(out / "index.jsonl", "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n"
                                                for e in entries))
        write_text(out / "subtitles.txt", "\n".join(blocks))
        return self.result(outputs={"output_dir": str(out), "index_file": str(out / "index.jsonl"),
                                    "text_file": str(out / "subtitles.txt"), "recordings": len(entries),
                                    "cues": sum(e["cues"] for e in entries)},
                           metrics={"words": sum(e["words"] for e in entries),
                                    "seconds": round(sum(e["duration"] for e in entries), 3)})
