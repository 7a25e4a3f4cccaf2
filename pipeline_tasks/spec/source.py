"""YAML text → Python data, with a lazily built map from document paths to (line, column).

The meaning of a pipeline file is PyYAML's (YAML 1.1, safe loader). A document is first offered
to `yaml_fast.fast_load` (yaml-rs, 30x faster, kept only when PyYAML is certain to read the same);
anything else is loaded by PyYAML itself, which also reports syntax errors with line and column.
The location map is composed only when an error needs a line number.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .yaml_fast import UNSURE, fast_load


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
    def from_file(cls, path: str | Path) -> YamlSource:
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
        data = fast_load(self.text)
        if data is not UNSURE:
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
