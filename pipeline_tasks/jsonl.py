"""Reading the JSON-lines listings stages hand each other (frames.jsonl, instances.jsonl,
segments.jsonl, cues.jsonl): one record a line, blank lines skipped, and a bad line reported by
its number instead of a traceback from deep inside the reader."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_records(path: str | os.PathLike, parse: Callable[[Any], T],
                 bad_line: Callable[[int, Exception], Exception]) -> list[T]:
    """`parse(json.loads(line))` for every non-blank line of `path`. A line that is not JSON, or
    that `parse` rejects (ValueError, KeyError, TypeError), raises `bad_line(line_number, error)`."""
    records = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_line(n, exc) from exc
    return records
