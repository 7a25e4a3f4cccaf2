"""The fast way to read a pipeline file: yaml-rs, kept only when PyYAML would read the same.

PyYAML builds every node in Python: 1 s for a 10,000-stage file. yaml-rs (Rust) reads it in 0.05 s,
but it speaks YAML 1.2 (`yes` is a string, `010` is ten, no `<<` merges) and accepts some text
PyYAML rejects. `fast_load` returns yaml-rs's result only when the text has none of the constructs
where the two differ and every string in the result is one PyYAML would leave a string; otherwise
`UNSURE`, and the caller asks PyYAML. `tests/test_yaml_source.py` compares both readers on the
known traps, the repository's YAML files and generated documents.
"""
from __future__ import annotations

import re
from typing import Any

UNSURE = object()
# Text yaml-rs may read differently from PyYAML (found by comparing both on generated documents):
# a tag, a merge key, a directive, a document marker after the first line, a `?` key indicator, an
# indicator starting a token (block scalar `|` `>`, anchor, alias, reserved `@` and backquote), an
# empty key, the 1.2-only escape `\/`, a tab, a control character, and any plain token that starts
# like a number but is not one of the forms both read alike (`-.5`, `007`, `1e3`, `0x1F`, `1_000`).
# Separate searches that each start from a rare character: one alternation costs 10x more.
_DIALECT_RISKS = tuple(re.compile(p, re.MULTILINE) for p in (
    r"<<", r"^%", r"\n(?:---|\.\.\.)(?:\s|$)", r"!(?<=[\s\[{,]!)\S|\A!", r"\?(?<![^\s\[{,]\?)(?=[\s,\]}]|$)",
    r"[|>&*@`%](?<![^\s\[{,:-][|>&*@`%])", r"\\/", r"[\n\[{,][ \t]*:(?=\s|$)|\A[ \t]*:",
    r"[\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]"))
# a plain token that starts like a number (yaml-rs reads `_1` as 1): after a space, `[`, `{`, `,` or `:`
_NUMBER_TOKEN = re.compile(r"(?:[-+](?=[._0-9])|[._0-9])(?<![^\s\[{,:][-+._0-9])[^\s,\[\]{}#:]*")
_SAME_NUMBER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|\.[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")


def _dialect_risk(text: str) -> bool:
    if text.startswith("...") or any(rx.search(text) for rx in _DIALECT_RISKS):
        return True
    return any(not _SAME_NUMBER.fullmatch(token) for token in _NUMBER_TOKEN.findall(text))


_SIMPLE_KEY = (str, int, float, bool, type(None))


def fast_load(text: str) -> Any:
    """The document as yaml-rs reads it, or `UNSURE` when PyYAML might read it differently."""
    if _dialect_risk(text):
        return UNSURE
    import yaml_rs
    try:
        data = yaml_rs.loads(text, parse_datetime=False)
    except (yaml_rs.YAMLDecodeError, ValueError, TypeError):
        return UNSURE              # PyYAML reports it, with its line and column (or accepts it)
    typed: set[str] = set()         # strings PyYAML would type (a number, a date ...) had they no quotes
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, _SIMPLE_KEY):
                    return UNSURE
                stack.append(key)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node and node[0] in _TYPED_FIRST and _YAML11_TYPED.match(node):
            typed.add(node)
    # such a string came from a quoted scalar (`version: '1'`) when, unquoted, both libraries would
    # have typed it alike; otherwise it must appear nowhere in the text without quotes
    if len(typed) > 32 or not all(_BOTH_TYPE_ALIKE.fullmatch(value) or _quoted_everywhere(text, value)
                                  for value in typed):
        return UNSURE
    return data


# PyYAML's implicit resolvers (yaml/resolver.py: bool, float, int, merge, null, timestamp, value,
# yaml), copied so the fast path needs no PyYAML (its import costs 10 ms); a test checks they match
_YAML11_RESOLVERS = {
    "bool": r"""^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$""",
    "float": r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
    "int": r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""",
    "merge": r"^(?:<<)$",
    "null": r"""^(?: ~
                    |null|Null|NULL
                    | )$""",
    "timestamp": r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
    "value": r"^(?:=)$",
    "yaml": r"^(?:!|&|\*)$",
}
_YAML11_TYPED = re.compile("|".join(f"(?:{p})" for p in _YAML11_RESOLVERS.values()), re.X)
_TYPED_FIRST = frozenset("yYnNtTfFoO-+0123456789.<~=!&*")
# plain scalars YAML 1.1 (PyYAML) and 1.2 (yaml-rs) read as the same int, float, bool or null
_BOTH_TYPE_ALIKE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|true|True|TRUE|false|False|FALSE|null|Null|NULL|~")


def _quoted_everywhere(text: str, value: str) -> bool:
    if any(c.isspace() for c in value):     # could be a plain scalar folded over lines
        return False
    bare = re.compile(rf"(?:^|[\s\[{{,:]){re.escape(value)}[ \t]*(?:$|[,\]}}#:])", re.MULTILINE)
    return bare.search(text) is None
