"""The JSON-lines listings stages hand each other (frames.jsonl, instances.jsonl, clusters.jsonl,
metadata.jsonl, segments.jsonl, cues.jsonl): one record a line, blank lines skipped, a bad line
reported by its number instead of a traceback from deep inside the reader.

`read_records` is the low-level reader; the typed readers of each family (`stages/*/formats.py`)
build their records with the field checks below and report a bad line with `bad_record`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from .atomic import write_text
from .errors import StageInputError

T = TypeVar("T")
REQUIRED: Any = object()


class RecordError(ValueError):
    """A line that is JSON but not the record the listing holds (missing or mistyped field)."""


def read_records(path: str | os.PathLike, parse: Callable[[Any], T],
                 bad_line: Callable[[int, Exception], Exception]) -> list[T]:
    """`parse(json.loads(line))` for every non-blank line of `path`. A line that is not UTF-8 JSON,
    or that `parse` rejects (ValueError, KeyError, TypeError), raises `bad_line(line_number, error)`.
    Lines end at `\\n` only, so a caption holding U+2028 stays one record."""
    records = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(parse(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:    # UnicodeDecodeError is a ValueError
                raise bad_line(n, exc) from exc
    return records


def read_listing(path: str | os.PathLike, parse: Callable[[Any], T], *, what: str, hint: str,
                 stage: str | None = None) -> list[T]:
    """`read_records` with the errors a user can act on: a listing that cannot be read, or a line
    that is not a `what` record, is a `StageInputError` naming the file (and the line) plus `hint`
    (what to rerun)."""
    path = Path(path)

    def bad_line(n: int, exc: Exception) -> StageInputError:
        if isinstance(exc, UnicodeDecodeError):
            reason = "not UTF-8 text"
        elif isinstance(exc, RecordError):
            reason = str(exc)
        elif isinstance(exc, ValueError):
            reason = f"not JSON ({exc})"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return StageInputError(f"not a {what} record: {reason}", path=path, line=n, stage=stage, hint=hint)

    try:
        return read_records(path, parse, bad_line)
    except FileNotFoundError as exc:
        raise StageInputError(f"{path.name} not found", path=path, stage=stage, hint=hint) from exc
    except OSError as exc:
        raise StageInputError(f"cannot read {path.name}: {exc.strerror or exc}", path=path, stage=stage,
                              hint=hint) from exc


def write_records(path: str | os.PathLike, records: Iterable[dict[str, Any]], *, ensure_ascii: bool = True) -> str:
    """Write one JSON object a line (keys sorted) atomically; returns the text written."""
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=ensure_ascii) + "\n" for r in records)
    write_text(path, text)
    return text


# -- field checks for typed records --------------------------------------------------------------
def fields(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordError(f"a JSON object was expected, not {_shown(record)}")
    return record


def _get(record: dict[str, Any], name: str, default: Any) -> Any:
    if name in record:
        return record[name]
    if default is REQUIRED:
        raise RecordError(f"missing field '{name}'")
    return default


def text(record: dict[str, Any], name: str, default: Any = REQUIRED) -> str:
    value = _get(record, name, default)
    if value is default and default is not REQUIRED:
        return value
    if not isinstance(value, str):
        raise RecordError(f"field '{name}' must be a string, not {_shown(value)}")
    return value


def integer(record: dict[str, Any], name: str, default: Any = REQUIRED) -> int:
    value = _get(record, name, default)
    if value is default and default is not REQUIRED:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field '{name}' must be an integer, not {_shown(value)}")
    return value


def number(record: dict[str, Any], name: str, default: Any = REQUIRED) -> float:
    value = _get(record, name, default)
    if value is default and default is not REQUIRED:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"field '{name}' must be a number, not {_shown(value)}")
    return float(value)


def flag(record: dict[str, Any], name: str, default: Any = REQUIRED) -> bool:
    value = _get(record, name, default)
    if not isinstance(value, bool):
        raise RecordError(f"field '{name}' must be true or false, not {_shown(value)}")
    return value


def integers(record: dict[str, Any], name: str, length: int, default: Any = REQUIRED) -> tuple[int, ...]:
    value = _get(record, name, default)
    if value is default and default is not REQUIRED:
        return value
    if (not isinstance(value, list) or len(value) != length
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise RecordError(f"field '{name}' must be a list of {length} integers, not {_shown(value)}")
    return tuple(value)


def _shown(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 40 else shown[:37] + "..."
