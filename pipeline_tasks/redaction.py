"""Secret values (`${secret:NAME}`) replaced by `***` wherever text or data is written."""
from __future__ import annotations

from typing import Any

MASK = "***"


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


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
