"""Secret values (`${secret:NAME}`) replaced by `***` wherever text or data is written.

A secret is masked in every form it takes on its way out: as it is; inside single quotes of a
shell command (each `'` written `'"'"'`); with its braces doubled (as a shell template holds it);
as Python's `repr` shows any of these; and each of those JSON-escaped (ASCII-only or not). A
secret of several lines is also masked line by line (each line of at least `MIN_LINE`
characters), since output is logged and cut line by line.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "***"
MIN_LINE = 4


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every form of the secrets that is masked, longest first."""
    return _forms(tuple(secrets))


@functools.lru_cache(maxsize=64)
def _forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms = {secret, secret.replace("'", "'\"'\"'")}
        if "\n" in secret:
            forms.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE)
        forms.update([form.replace("{", "{{").replace("}", "}}") for form in forms])
        forms.update([repr(form)[1:-1] for form in forms])
        forms.update([json.dumps(form)[1:-1] for form in forms] + [json.dumps(form, ensure_ascii=False)[1:-1]
                                                                  for form in forms])
        found |= forms
    found.discard("")
    return tuple(sorted(found, key=lambda form: (-len(form), form)))


@functools.lru_cache(maxsize=64)
def _pattern(forms: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, forms)))


def redact(text: str, secrets: Iterable[str]) -> str:
    forms = _forms(tuple(secrets))
    return _pattern(forms).sub(MASK, text) if forms else text


def redact_obj(value: Any, secrets: list[str]) -> Any:
    """`value` with every string inside it redacted (dicts and lists walked)."""
    if not secrets:
        return value
    if isinstance(value, dict):
        return {k: redact_obj(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


class RedactingWriter:
    """A text stream that writes to `target` with the secrets masked. The end of what was written
    that could be the start of a secret is held back until more text shows it is not (or until
    `finish`), so a secret written in pieces is masked too; `flush` never lets it out."""

    def __init__(self, target, secrets: Iterable[str]):
        self.target = target
        self.secrets = tuple(secrets)
        self._forms = secret_forms(self.secrets)
        self._held = ""

    def write(self, text: str) -> int:
        pending = redact(self._held + text, self.secrets)
        keep = self._partial(pending)
        self._held = pending[len(pending) - keep:] if keep else ""
        if len(pending) > keep:
            self.target.write(pending[:len(pending) - keep])
        return len(text)

    def _partial(self, text: str) -> int:
        """Length of the longest end of `text` that begins a form of a secret."""
        best = 0
        for form in self._forms:
            i = text.find(form[0], max(0, len(text) - len(form) + 1))
            while i != -1 and len(text) - i > best:
                if form.startswith(text[i:]):
                    best = len(text) - i
                    break
                i = text.find(form[0], i + 1)
        return best

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def finish(self) -> None:
        """Write what was held back and flush."""
        held, self._held = self._held, ""
        if held:
            self.target.write(held)
        self.target.flush()

    def __getattr__(self, name: str) -> Any:          # encoding, isatty, fileno … of the target
        return getattr(self.target, name)


@contextlib.contextmanager
def masked_std_streams(secrets: list[str]) -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` write with the secrets masked while the block runs."""
    if not secret_forms(secrets):
        yield
        return
    saved = sys.stdout, sys.stderr
    out, err = RedactingWriter(sys.stdout, secrets), RedactingWriter(sys.stderr, secrets)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        if sys.stdout is out:
            sys.stdout = saved[0]
        if sys.stderr is err:
            sys.stderr = saved[1]
        finish_masked_streams((out, err))


def finish_masked_streams(streams: Iterable[Any] | None = None) -> None:
    """Let out what masking streams (by default `sys.stdout` and `sys.stderr`) hold back: at the
    end of a stage, or of a process that inherited them."""
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        if isinstance(stream, RedactingWriter):
            with contextlib.suppress(OSError, ValueError):
                stream.finish()
