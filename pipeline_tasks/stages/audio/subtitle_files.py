"""Subtitle files: cues → `.srt` / `.vtt` through pysubs2, and `cues.jsonl` for later stages."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ...atomic import atomic_path, write_text
from ...errors import StageInputError
from ...jsonl import read_records
from .cues import Cue

FORMATS = ("srt", "vtt")


def to_ssafile(cues: list[Cue]):
    import pysubs2

    subs = pysubs2.SSAFile()
    for cue in cues:
        subs.append(pysubs2.SSAEvent(start=int(round(cue.start * 1000)), end=int(round(cue.end * 1000)),
                                     text=r"\N".join(line.replace("\n", " ") for line in cue.lines)))
    return subs


def write_subtitles(dest: str | os.PathLike, cues: list[Cue], fmt: str) -> None:
    """Write one subtitle file atomically (UTF-8, no BOM)."""
    subs = to_ssafile(cues)
    with atomic_path(dest) as tmp:
        subs.save(str(tmp), encoding="utf-8", format_=fmt)


def write_cues(dest: str | os.PathLike, cues: list[Cue]) -> None:
    write_text(dest, "".join(json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for c in cues))


def read_cues(path: str | os.PathLike, *, stage: str | None = None) -> list[Cue]:
    path = Path(path)
    if not path.is_file():
        raise StageInputError(f"cue file not found: {path}", path=path, stage=stage,
                              hint="point input_dir at a subtitle_generation stage's output_dir")
    return read_records(path, lambda d: Cue(float(d["start"]), float(d["end"]), [str(x) for x in d["lines"]]),
                        lambda n, exc: StageInputError(f"line {n} of {path} is not a cue record ({exc})", path=path,
                                                       line=n, stage=stage))
