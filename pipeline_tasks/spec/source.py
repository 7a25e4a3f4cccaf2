"""Pipeline file text → Python data, with a lazily built map from document paths to (line, column).

A `.json` file is read by the json module, anything else as YAML by PyYAML (YAML 1.1, safe loader,
libyaml's C parser where installed). Both readers refuse what no pipeline needs and a hostile file
uses: a key written twice in one mapping (both lines named), nesting deeper than `MAX_DEPTH`
levels, and (YAML) aliases that expand the document to more than `MAX_EXPANSION` times the nodes
it spells out. The location map is built only when an error needs a line number.
"""
from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..redaction import redact

MAX_DEPTH = 64                # collections inside collections; a pipeline uses about 8
MAX_EXPANSION = 10            # nodes with aliases expanded, per node written ...
MIN_EXPANSION_LIMIT = 100_000  # ... or this many, whichever is more
TOO_DEEP = f"collections nest more than {MAX_DEPTH} levels deep; a pipeline file needs far fewer"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class PipelineSource:
    """The text of a pipeline file, its data (`load`) and where each part of it was written."""

    def __init__(self, text: str, path: str | Path | None = None):
        self.text = text
        self.path = str(path) if path is not None else "<dict>"
        self._locations: dict[tuple, tuple[int, int]] | None = None
        # secret values resolved so far: error messages show *** in their place
        self.secrets: list[str] = []

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineSource:
        """A `JsonSource` for a `.json` file, a `YamlSource` for any other."""
        path = Path(path)
        if not path.exists():
            raise SpecError("pipeline file not found", path=path)
        if path.is_dir():
            raise SpecError("is a directory, expected a pipeline file (YAML or JSON)", path=path)
        if not path.is_file():
            raise SpecError("is not a regular file, expected a pipeline file (YAML or JSON)", path=path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path=path) from None
        except OSError as exc:
            raise SpecError(f"cannot read pipeline file: {exc.strerror}", path=path) from None
        source_cls = JsonSource if path.suffix.lower() == ".json" else YamlSource
        return source_cls(text, path)

    def load(self) -> Any:
        raise NotImplementedError

    def _build_locations(self) -> dict[tuple, tuple[int, int]]:
        raise NotImplementedError

    def stage_lines(self) -> dict[str, int]:
        """Cheap map stage id -> line of its `id` key (for runtime messages), without composing."""
        return _first_lines(self._STAGE_LINE, self.text)

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
        return cls(redact(message, self.secrets), path=self.path, line=line, column=column, stage=stage,
                   key=config_key, hint=redact(hint, self.secrets) if hint else hint)

    def _too_deep(self) -> SpecError:
        return SpecError(TOO_DEEP, path=self.path)


# -- YAML -------------------------------------------------------------------------------------------
def _yaml():
    """PyYAML and the pipeline loader, imported on first parse: a run whose spec comes from the
    spec cache never needs them (8 ms of every command's start-up)."""
    global _LOADER
    import yaml
    if _LOADER is None:
        _LOADER = _make_loader(yaml)
    return yaml, _LOADER


_LOADER = None


class _Refused(Exception):
    """A document the pipeline loader refuses: message and the node to point at."""

    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message = message
        self.mark = mark


def _make_loader(yaml):
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class PipelineLoader(base):
        """The safe loader (libyaml's parser where installed) that checks the composed node graph
        before building Python objects: duplicate keys, depth, alias expansion, alias loops."""

        def construct_document(self, node):
            _check_nodes(self, node, yaml)
            return super().construct_document(node)

    return PipelineLoader


def _check_nodes(loader, root, yaml) -> None:
    """One pass over the node graph, each collection once (an alias is a shared node): duplicate
    keys of every mapping, alias loops, and the height and expanded size of every collection."""
    mapping, sequence = yaml.MappingNode, yaml.SequenceNode
    done: dict[int, tuple[int, int]] = {}        # id(collection) -> (size with aliases expanded, height)
    visiting: set[int] = set()
    scalars_written = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        nid = id(node)
        cls = node.__class__
        if cls is not mapping and cls is not sequence:
            continue                                # a scalar document
        kids = [n for pair in node.value for n in pair] if cls is mapping else node.value
        if children_done:
            visiting.discard(nid)
            size, height = 1, 0
            for kid in kids:
                measured = done.get(id(kid))
                if measured is None:                # a scalar
                    size += 1
                    scalars_written += 1
                else:
                    size += measured[0]
                    if measured[1] > height:
                        height = measured[1]
            if height >= MAX_DEPTH:
                raise _Refused(TOO_DEEP, node.start_mark)
            done[nid] = (size, height + 1)
        elif nid not in done:
            if nid in visiting:
                raise _Refused("an alias refers to a collection that contains it (a loop)", node.start_mark)
            if cls is mapping:
                _check_keys(loader, node, yaml)
            visiting.add(nid)
            stack.append((node, True))
            for kid in kids:
                kid_cls = kid.__class__
                if (kid_cls is mapping or kid_cls is sequence) and id(kid) not in done:
                    stack.append((kid, False))
    if id(root) not in done:
        return
    written = len(done) + scalars_written
    expanded = done[id(root)][0]
    limit = max(MIN_EXPANSION_LIMIT, MAX_EXPANSION * written)
    if expanded > limit:
        raise _Refused(f"aliases expand this document to {expanded:,} nodes from {written:,} written "
                       f"(at most {limit:,} allowed); write repeated values out, or share them through "
                       f"'vars'", root.start_mark)


def _check_keys(loader, node, yaml) -> None:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue            # `<<` merges are meant to be overridden; a complex key fails later
        key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:
            continue
        if first is not key_node:
            raise _Refused(f"key '{key_node.value}' appears twice in one mapping: first on line "
                           f"{first.start_mark.line + 1}, again on line {key_node.start_mark.line + 1}",
                           key_node.start_mark)


class YamlSource(PipelineSource):
    _STAGE_LINE = re.compile(r"^\s*(?:-\s+)?id:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)

    def load(self) -> Any:
        yaml, loader = _yaml()
        try:
            return yaml.load(self.text, Loader=loader)
        except _Refused as exc:
            raise SpecError(exc.message, path=self.path, line=exc.mark.line + 1,
                            column=exc.mark.column + 1) from None
        except RecursionError:       # the pure-Python parser, before the depth check could run
            raise self._too_deep() from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or str(exc)
            if exc.context:
                problem = f"{exc.context}: {problem}" if exc.problem else exc.context
            raise SpecError(f"invalid YAML: {problem}", path=self.path,
                            line=mark.line + 1 if mark else None,
                            column=mark.column + 1 if mark else None) from None
        except yaml.reader.ReaderError as exc:          # a character YAML does not allow
            line = self.text.count("\n", 0, exc.position) + 1
            column = exc.position - self.text.rfind("\n", 0, exc.position)
            char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
            raise SpecError(f"invalid YAML: unacceptable character {char}: {exc.reason}",
                            path=self.path, line=line, column=column) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"invalid YAML: {exc}", path=self.path) from None

    def _build_locations(self) -> dict[tuple, tuple[int, int]]:
        locations: dict[tuple, tuple[int, int]] = {}
        yaml, loader = _yaml()
        try:
            root = yaml.compose(self.text, Loader=loader)
        except (yaml.YAMLError, RecursionError):
            return locations
        if root is None:
            return locations
        stack = [(root, ())]
        while stack:            # the document was loaded: its depth and size are within bounds
            node, path = stack.pop()
            locations.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    key = key_node.value
                    # the key's own position is where a user looks for "unknown key" errors
                    locations.setdefault(path + (key, "<key>"),
                                         (key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                    stack.append((value_node, path + (key,)))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, path + (index,)) for index, item in enumerate(node.value))
        return locations


# -- JSON -------------------------------------------------------------------------------------------
class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


class JsonSource(PipelineSource):
    """A machine-written pipeline: the same document as YAML, in JSON."""

    _STAGE_LINE = re.compile(r"\"id\"\s*:\s*\"([^\"\\]+)\"")

    def load(self) -> Any:
        import json
        try:
            data = json.loads(self.text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as exc:
            raise SpecError(f"invalid JSON: {exc.msg}", path=self.path, line=exc.lineno, column=exc.colno) from None
        except RecursionError:
            raise self._too_deep() from None
        except _DuplicateKey:
            self._locations = self._build_locations()
            if self._duplicate is None:
                raise SpecError("a key appears twice in one object", path=self.path) from None
            name, first, again = self._duplicate
            raise SpecError(f"key '{name}' appears twice in one object: first on line {first[0]}, again on line "
                            f"{again[0]}", path=self.path, line=again[0], column=again[1]) from None
        if nesting_depth(data) > MAX_DEPTH:
            raise self._too_deep()
        return data

    def _build_locations(self) -> dict[tuple, tuple[int, int]]:
        """Where each value and key starts: a scan of the (valid) text, values read by the json
        module's own decoder; it also notes the first key written twice in one object."""
        import json
        from json.decoder import scanstring
        text = self.text
        decoder = json.JSONDecoder()
        space = re.compile(r"[ \t\n\r]*")
        line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

        def where(offset: int) -> tuple[int, int]:
            line = bisect.bisect_right(line_starts, offset)
            return line, offset - line_starts[line - 1] + 1

        locations: dict[tuple, tuple[int, int]] = {}
        self._duplicate = None
        stack: list[list] = []          # open containers: [path, is_object, next index, keys seen]
        path: tuple = ()
        pos = space.match(text, 0).end()
        state = "value"
        try:
            while True:
                if state == "value":
                    locations[path] = where(pos)
                    if text[pos] in "{[":
                        stack.append([path, text[pos] == "{", 0, {}])
                        pos = space.match(text, pos + 1).end()
                        if text[pos] in "}]":
                            pos += 1
                            stack.pop()
                            state = "after"
                        else:
                            state = "member"
                    else:
                        pos = decoder.raw_decode(text, pos)[1]
                        state = "after"
                elif state == "member":
                    container_path, is_object, index, seen = frame = stack[-1]
                    if is_object:
                        key, end = scanstring(text, pos + 1)
                        locations[container_path + (key, "<key>")] = where(pos)
                        if key in seen and self._duplicate is None:
                            self._duplicate = (key, seen[key], where(pos))
                        seen.setdefault(key, where(pos))
                        pos = space.match(text, space.match(text, end).end() + 1).end()     # past ':'
                        path = container_path + (key,)
                    else:
                        path = container_path + (index,)
                        frame[2] += 1
                    state = "value"
                else:
                    if not stack:
                        break
                    pos = space.match(text, pos).end()
                    if text[pos] == ",":
                        pos = space.match(text, pos + 1).end()
                        state = "member"
                    else:
                        pos += 1
                        stack.pop()
        except (IndexError, ValueError):
            pass                # past the part that parses: keep what was found
        return locations


def nesting_depth(data: Any) -> int:
    """How many collections deep `data` nests (iteratively: the data may be hostile)."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((item, depth + 1) for item in value)
    return deepest


def _first_lines(pattern: re.Pattern, text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    line, pos = 1, 0
    for match in pattern.finditer(text):
        line += text.count("\n", pos, match.start())
        pos = match.start()
        lines.setdefault(match.group(1), line)
    return lines


def stage_lines(text: str) -> dict[str, int]:
    """Line of each stage's `id:` key in YAML text."""
    return _first_lines(YamlSource._STAGE_LINE, text)
