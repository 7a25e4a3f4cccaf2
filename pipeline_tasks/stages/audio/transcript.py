"""Transcript records (segments with word timings) and the files that carry them.

`segments.jsonl`: one JSON object a line — ``{"start", "end", "text", "words": [{"start", "end",
"word", "probability"}]}`` with times in seconds from the start of the audio file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...atomic import write_text
from ...errors import StageInputError
from ...jsonl import read_records


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    def shifted(self, offset: float) -> Segment:
        return Segment(round(self.start + offset, 3), round(self.end + offset, 3), self.text,
                       [Word(round(w.start + offset, 3), round(w.end + offset, 3), w.word, w.probability)
                        for w in self.words])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Segment:
        return cls(float(data["start"]), float(data["end"]), str(data["text"]),
                   [Word(float(w["start"]), float(w["end"]), str(w["word"]), w.get("probability"))
                    for w in data.get("words") or []])


def dumps_segments(segments: Iterable[Segment]) -> str:
    return "".join(json.dumps(s.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for s in segments)


def write_segments(dest: str | os.PathLike, segments: Iterable[Segment]) -> None:
    write_text(dest, dumps_segments(segments))


def read_segments(path: str | os.PathLike, *, stage: str | None = None) -> list[Segment]:
    path = Path(path)
    if not path.is_file():
        raise StageInputError(f"transcript file not found: {path}", path=path, stage=stage,
                              hint="point input_dir at a transcription stage's output_dir")
    return read_records(path, Segment.from_dict, lambda n, exc: StageInputError(
        f"line {n} of {path} is not a segment record ({exc})", path=path, line=n, stage=stage))


def plain_text(segments: Iterable[Segment]) -> str:
    return "\n".join(s.text.strip() for s in segments if s.text.strip()) + "\n"
