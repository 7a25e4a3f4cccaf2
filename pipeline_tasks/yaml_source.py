"""YAML text → Python data, with a lazily built map from document paths to (line, column).

The meaning of a pipeline file is PyYAML's (YAML 1.1, safe loader: `yes` is true, `2024-01-15` a
date, `<<` merges). PyYAML builds every node in Python, 1 s for a 10,000-stage file, so a document
is first read with yaml-rs (Rust, 30x faster) and that result is kept only when PyYAML is certain
to agree (`_fast_load`); anything else (tags, merge keys, several documents, a scalar the two
dialects read differently, a syntax error) is loaded by PyYAML itself. The location map is composed
only when an error needs a line number.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import SpecError


def _yaml():
    """PyYAML and its fastest safe loader, imported on first parse: a run whose spec comes from the
    spec cache never needs them (8 ms of every command's start-up)."""
    import yaml
    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlSource:
    def __init__(self, text: str, path: str | Path | None = None):
        self.text = text
        self.path = str(path) if path is not None else "<dict>"
        self._locations: dict[tuple, tuple[int, int]] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> "YamlSource":
        path = Path(path)
        if not path.exists():
            raise SpecError("pipeline file not found", path=path)
        if path.is_dir():
            raise SpecError("is a directory, expected a pipeline YAML file", path=path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path=path) from None
        except OSError as exc:
            raise SpecError(f"cannot read pipeline file: {exc.strerror}", path=path) from None
        return cls(text, path)

    def load(self) -> Any:
        data = _fast_load(self.text)
        if data is not _UNSURE:
            return data
        yaml, loader = _yaml()
        try:
            return yaml.load(self.text, Loader=loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or str(exc)
            if exc.context:
                problem = f"{exc.context}: {problem}" if exc.problem else exc.context
            raise SpecError(f"invalid YAML: {problem}", path=self.path,
                            line=mark.line + 1 if mark else None,
                            column=mark.column + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"invalid YAML: {exc}", path=self.path) from None

    # -- locations -------------------------------------------------------------------------------
    def _build_locations(self) -> dict[tuple, tuple[int, int]]:
        locations: dict[tuple, tuple[int, int]] = {}
        yaml, loader = _yaml()
        try:
            root = yaml.compose(self.text, Loader=loader)
        except yaml.YAMLError:
            return locations

        def walk(node, path: tuple) -> None:
            locations[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    key = key_node.value
                    # the key's own position is where a user looks for "unknown key" errors
                    locations[path + (key, "<key>")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    walk(value_node, path + (key,))
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, path + (index,))

        if root is not None:
            walk(root, ())
        return locations

    def locate(self, path: tuple, *, key: bool = False) -> tuple[int | None, int | None]:
        """(line, column) of the value at `path` (or of its key), falling back to the parent."""
        if self._locations is None:
            self._locations = self._build_locations()
        path = tuple(path)
        if key and path:
            found = self._locations.get(path + ("<key>",))
            if found:
                return found
        while True:
            if path in self._locations:
                return self._locations[path]
            if not path:
                return (None, None)
            path = path[:-1]

    def error(self, message: str, path: tuple = (), *, key: bool = False, stage: str | None = None,
              config_key: str | None = None, hint: str | None = None, cls=SpecError) -> SpecError:
        line, column = self.locate(path, key=key)
        return cls(message, path=self.path, line=line, column=column, stage=stage, key=config_key, hint=hint)


_UNSURE = object()
# Text yaml-rs may read differently from PyYAML (found by comparing both on generated documents):
# a tag, a merge key, a directive, a document marker after the first line, a `?` key indicator, an
# indicator starting a token (block scalar `|` `>`, anchor, alias, reserved `@` and backquote), an
# empty key, the
# 1.2-only escape `\/`, a tab, a control character, and any plain token that
# starts like a number but is not one of the forms both read alike (`-.5`, `007`, `1e3`, `0x1F`,
# `1_000` ...). Separate searches that each start from a rare character: one alternation costs
# 10x more.
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


def _fast_load(text: str) -> Any:
    """The document as yaml-rs reads it, or `_UNSURE` when PyYAML might read it differently."""
    if _dialect_risk(text):
        return _UNSURE
    import yaml_rs
    try:
        data = yaml_rs.loads(text, parse_datetime=False)
    except (yaml_rs.YAMLDecodeError, ValueError, TypeError):
        return _UNSURE              # PyYAML reports it, with its line and column (or accepts it)
    typed: set[str] = set()         # strings PyYAML would type (a number, a date ...) had they no quotes
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, _SIMPLE_KEY):
                    return _UNSURE
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
        return _UNSURE
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


_STAGE_LINE = re.compile(r"^\s*(?:-\s+)?id:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


def stage_lines(text: str) -> dict[str, int]:
    """Cheap map stage id -> line of its `id:` key (for runtime messages), without composing."""
    lines: dict[str, int] = {}
    line, pos = 1, 0
    for match in _STAGE_LINE.finditer(text):
        line += text.count("\n", pos, match.start())
        pos = match.start()
        lines.setdefault(match.group(1), line)
    return lines
