"""Batch stages: `foreach` items, one stage per item, and what a stage sees of upstream batches.

- `foreach: {glob: "videos/*.mp4"}` or `{items: [a, b]}` / `{items: "{vars.x}"}` makes a stage run
  once per item; the item with key `k` of stage `s` is the stage `s:k` (a doit sub-task).
- `foreach: <stage>` runs once per item of that stage's batch (item-wise): item `k` depends on item
  `k` of every upstream stage over the same items, and `{up.key}` there is that item's value.
- A stage without `foreach` that depends on a batch stage gathers: it depends on every item, and
  `{up.key}` is the list of all items' values, in item order (a `GatheredList`).
- Item order is the keys' natural order (`item_order`: digit runs compare as numbers, so ep2
  comes before ep10 and item 9 before item 10): the order of the built stages, of `status`,
  `plan`, the report, `doit list` and every gathered list.
- `{item}` is the item's key, `{item.path}` `{item.name}` `{item.stem}` `{item.parent}`
  `{item.suffix}` describe a glob's file, `{item.<field>}` a mapping item's field.
"""
from __future__ import annotations

import copy
import glob as globlib
import os
import re
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..executor import shell_words, template_literal
from ..models import PipelineStage
from .source import YamlSource

ITEM_REF = re.compile(r"(?<!\{)\{item(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}(?!\})")
_FIELD_REF = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_VARS_REF = re.compile(r"(?<!\{)\{vars\.([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\}(?!\})")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$")
SPEC_KEYS = ("glob", "items", "key", "allow_empty")
OUTPUT_KEYS = ("output_dir", "outputs")
KEY_EXAMPLE = 'key: "{parent}-{stem}"'


_DIGITS = re.compile(r"([0-9]+)")


def item_order(key: str) -> tuple:
    """The sort key of an item key: its natural order (runs of digits compare as numbers: `ep2` <
    `ep10`, `9` < `10`), the key itself breaking ties (`ep1` < `ep01`)."""
    parts = _DIGITS.split(key)
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p), key


class GatheredList(list):
    """A reference's value in a gather stage: one value per item, in item order. Inside a
    longer string it makes one string per item."""


class _GatheredMapping(dict):
    """A gather stage's view of a batch stage's configs: each key holds the items' values (a
    mapping again where every item has one); a copy of it is the list of the items' whole values."""

    def __init__(self, values: list[dict]):
        keys = [k for k in values[0] if all(k in v for v in values[1:])]
        super().__init__((k, _gathered([v[k] for v in values])) for k in keys)
        self.values_list = values

    def __deepcopy__(self, memo) -> GatheredList:
        return GatheredList(copy.deepcopy(self.values_list, memo))


class _EmptyBatch(dict):
    """The view of a batch with no items (`allow_empty`): every reference is an empty list."""

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key) -> _EmptyBatch:
        return self

    def __deepcopy__(self, memo) -> GatheredList:
        return GatheredList()


def _gathered(values: list) -> Any:
    if not values:
        return _EmptyBatch()
    if all(isinstance(v, dict) for v in values):
        return _GatheredMapping(values)
    return GatheredList(values)


_SLOT = re.compile("\x00([0-9]+)\x00")


def slot(index: int) -> str:
    """Where the resolver leaves a gathered value inside a longer string (NUL never is in one)."""
    return f"\x00{index}\x00"


def per_item(text: str, gathered: list[GatheredList], as_text: Callable[[Any], str]) -> GatheredList:
    """`text` with its slots filled once per item: a string around a gathered reference becomes
    one string per item."""
    lengths = {len(values) for values in gathered}
    if len(lengths) > 1:
        raise ValueError("references to batches of different sizes in one string")
    return GatheredList(_SLOT.sub(lambda m, i=i: as_text(gathered[int(m.group(1))][i]), text)
                        for i in range(lengths.pop()))


@dataclass(frozen=True)
class Item:
    key: str
    fields: dict[str, Any]      # what {item.<field>} gives
    value: Any                  # what a string that is only `{item}` gives
    origin: str                 # for messages: the file, or "item #n"


@dataclass
class Instance:
    """One stage the loader builds: a plain stage (group None), or one item of a batch stage."""
    id: str
    group: str | None
    item: str | None
    config: dict


class ExpandedGraph:
    """`depends_on` of the built stages (items included), for `dag.ancestors`."""

    def __init__(self, stages: dict[str, PipelineStage]):
        self.stages = stages

    def get(self, stage_id: str, default=()):
        stage = self.stages.get(stage_id)
        return stage.depends_on if stage is not None else default


class Batches:
    """The batch stages of one pipeline file, their items, and the item configs resolved so far."""

    def __init__(self, stage_dicts: list[dict], source: YamlSource):
        self.source = source
        self.index: dict[str, int] = {}
        self.specs: dict[str, Any] = {}                 # batch stage id -> its `foreach` value
        for index, raw in enumerate(stage_dicts):
            self.index.setdefault(raw["id"], index)
            if "foreach" in raw:
                self.specs[raw["id"]] = self._check_spec(raw, index)
                self._check_outputs(raw, index)
            else:
                self._check_no_item(raw.get("config"), ("stages", index, "config"), raw["id"])
        self.family: dict[str, str] = {}                # batch stage -> the stage whose foreach lists its items
        self.items: dict[str, list[Item]] = {}          # listing stage -> its items, in item order
        self.globs: dict[str, list[str]] = {}           # glob pattern -> the files it matched
        self.configs: dict[str, dict[str, dict]] = {}   # batch stage -> item key -> resolved config
        self.masked: dict[str, dict[str, dict]] = {}
        self._views: dict[tuple[str, bool], Any] = {}

    # -- structure ---------------------------------------------------------------------------------
    def _error(self, message: str, path: tuple, stage: str, key: bool = False) -> SpecError:
        return self.source.error(message, path, stage=stage, key=key)

    def _check_spec(self, raw: dict, index: int) -> Any:
        spec, stage = raw["foreach"], raw["id"]
        where = ("stages", index, "foreach")
        if isinstance(spec, str):
            return spec
        if not isinstance(spec, dict):
            raise self._error("foreach: expected a stage id or a mapping with 'glob' or 'items'", where, stage)
        for name in spec:
            if name not in SPEC_KEYS:
                raise self._error(f"foreach: unknown key '{name}'; expected one of: {', '.join(SPEC_KEYS)}",
                                  where + (name,), stage, key=True)
        if ("glob" in spec) == ("items" in spec):
            raise self._error("foreach: give exactly one of 'glob' (files) and 'items' (a list)", where, stage)
        if "glob" in spec and (not isinstance(spec["glob"], str) or not spec["glob"]):
            raise self._error("foreach.glob: expected a non-empty pattern such as \"videos/*.mp4\"",
                              where + ("glob",), stage)
        if "items" in spec and not isinstance(spec["items"], (list, str)):
            raise self._error("foreach.items: expected a list or a \"{vars.name}\" reference", where + ("items",),
                              stage)
        if "key" in spec and (not isinstance(spec["key"], str) or not spec["key"]):
            raise self._error(f"foreach.key: expected a template such as {KEY_EXAMPLE}", where + ("key",), stage)
        if "allow_empty" in spec and not isinstance(spec["allow_empty"], bool):
            raise self._error("foreach.allow_empty: expected true or false", where + ("allow_empty",), stage)
        return spec

    def _check_outputs(self, raw: dict, index: int) -> None:
        """Every output path of a batch stage names its item (else the items overwrite each other)."""
        config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
        for name in OUTPUT_KEYS:
            values = config.get(name)
            for i, value in enumerate(values if isinstance(values, list) else [values]):
                if isinstance(value, str) and not ITEM_REF.search(value):
                    path = ("stages", index, "config", name) + ((i,) if isinstance(values, list) else ())
                    raise self._error(f"{name} of a foreach stage must contain {{item}} (e.g. "
                                      "\"work/frames/{item}\"): otherwise every item writes to the same place",
                                      path, raw["id"])

    def _check_no_item(self, value: Any, path: tuple, stage: str) -> None:
        if isinstance(value, str):
            if "{item" in value and ITEM_REF.search(value):
                raise self._error("{item} is defined only in a stage with 'foreach'", path, stage)
        elif isinstance(value, dict):
            for k, v in value.items():
                self._check_no_item(v, path + (k,), stage)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._check_no_item(v, path + (i,), stage)

    def add_implied_deps(self, deps: dict[str, list[str]]) -> None:
        """`foreach: <stage>` depends on that stage; the stage must exist."""
        for stage, spec in self.specs.items():
            if isinstance(spec, str):
                if spec not in self.index:
                    from .dag import _suggest
                    raise self._error(f"foreach names an unknown stage '{spec}'" + _suggest(spec, self.index),
                                      ("stages", self.index[stage], "foreach"), stage)
                if spec not in deps[stage]:
                    deps[stage].append(spec)

    # -- items -------------------------------------------------------------------------------------
    def discover(self, vars_: dict[str, Any]) -> None:
        """List every batch's items (after the graph is known to be acyclic)."""
        for stage in self.specs:
            self.family[stage] = self._root(stage)
        for root in set(self.family.values()):
            self.items[root] = self._list(root, vars_)

    def _root(self, stage: str) -> str:
        spec = self.specs[stage]
        if not isinstance(spec, str):
            return stage
        if spec not in self.specs:
            raise self._error(f"foreach: stage '{spec}' has no foreach, so it has no items to run over; "
                              "name a stage that has one, or give glob/items here",
                              ("stages", self.index[stage], "foreach"), stage)
        return self._root(spec)

    def _list(self, stage: str, vars_: dict[str, Any]) -> list[Item]:
        spec = self.specs[stage]
        where = ("stages", self.index[stage], "foreach")
        if "glob" in spec:
            pattern = self._vars(spec["glob"], vars_, where + ("glob",), stage)
            files = self.globs[pattern] = match_glob(pattern)
            raw_items = [(_file_fields(f), None, f) for f in files]
            template = spec.get("key", "{stem}")
            empty = f"glob '{pattern}' matches no file (relative to {os.getcwd()})"
        else:
            values = spec["items"]
            if isinstance(values, str):
                values = self._vars(values, vars_, where + ("items",), stage)
                if not isinstance(values, list):
                    raise self._error(f"foreach.items: '{spec['items']}' is not a list", where + ("items",), stage)
            raw_items = []
            for n, value in enumerate(values, 1):
                if isinstance(value, dict):
                    raw_items.append((dict(value), None, f"item #{n}"))
                elif isinstance(value, (str, int, float, bool)):
                    raw_items.append(({"value": value}, value, f"item #{n} ({value!r})"))
                else:
                    raise self._error(f"foreach.items: item #{n} must be a string, a number or a mapping",
                                      where + ("items", n - 1), stage)
            template = spec.get("key") or ("{key}" if any(isinstance(v, dict) for v in values) else "{value}")
            empty = "foreach.items is empty"
        if not raw_items and not spec.get("allow_empty"):
            raise self._error(empty + "; set allow_empty: true to allow a batch without items", where, stage)
        items: dict[str, Item] = {}
        for fields, value, origin in raw_items:
            key = self._key(template, fields, origin, where, stage)
            if key in items:
                raise self._error(f"two items have the key '{key}': {items[key].origin} and {origin}; "
                                  f"set foreach.key to tell them apart, e.g. {KEY_EXAMPLE}", where, stage)
            items[key] = Item(key, fields, key if value is None else value, origin)
        return [items[k] for k in sorted(items, key=item_order)]

    def _key(self, template: str, fields: dict, origin: str, where: tuple, stage: str) -> str:
        def field(match: re.Match) -> str:
            name = match.group(1)
            if name not in fields:
                raise self._error(f"foreach.key uses '{{{name}}}', which {origin} does not have; it has: "
                                  + ", ".join(sorted(fields)), where + ("key",), stage)
            return str(fields[name])
        key = _FIELD_REF.sub(field, template)
        if not KEY_PATTERN.match(key):
            example = KEY_EXAMPLE if "{stem}" in template or "{name}" in template else "items: [{key: ep01, ...}]"
            raise self._error(f"item key '{key}' (from {origin}) cannot name a task: use letters, digits and "
                              f"_ . + - only; set foreach.key or give the item a key, e.g. {example}", where, stage)
        return key

    def _vars(self, text: str, vars_: dict[str, Any], path: tuple, stage: str) -> Any:
        def lookup(match: re.Match) -> Any:
            node: Any = vars_
            for part in match.group(1).split("."):
                if not isinstance(node, dict) or part not in node:
                    raise self._error(f"'{match.group(0)}': vars has no '{match.group(1)}'", path, stage)
                node = node[part]
            return node
        whole = _VARS_REF.fullmatch(text)
        if whole:
            return copy.deepcopy(lookup(whole))
        return _VARS_REF.sub(lambda m: str(lookup(m)), text)

    # -- building the stages -----------------------------------------------------------------------
    def instances(self, stage: str, config: dict, where: tuple, shell_keys: tuple = ()) -> Iterator[Instance]:
        """The stages to build for `stage`: itself, or one per item with `{item…}` filled in."""
        if stage not in self.specs:
            yield Instance(stage, None, None, config)
            return
        self.configs[stage], self.masked[stage] = {}, {}
        for item in self.items[self.family[stage]]:
            yield Instance(f"{stage}:{item.key}", stage, item.key,
                           _fill_item(config, item, where + ("config",), self._error, stage, shell_keys))

    def view(self, instance: Instance, upstream: Container[str], configs: dict, masked: dict) -> None:
        """Point the resolver's configs of upstream batch stages at what `instance` sees: the same
        item's config (item-wise), or every item's values (gather)."""
        group = instance.group or instance.id
        family = self.family.get(group)
        for up in self.family:
            if up not in upstream:
                continue
            if instance.item is not None and self.family[up] == family:
                configs[up] = self.configs[up][instance.item]
                masked[up] = self.masked[up][instance.item]
            else:
                configs[up] = self._gathered(up, False)
                masked[up] = self._gathered(up, True)

    def _gathered(self, stage: str, mask: bool) -> Any:
        view = self._views.get((stage, mask))
        if view is None:
            source = self.masked[stage] if mask else self.configs[stage]
            view = self._views[(stage, mask)] = _gathered([source[k] for k in sorted(source, key=item_order)])
        return view

    def record(self, instance: Instance, resolved: dict, masked: dict) -> None:
        if instance.group is not None:
            self.configs[instance.group][instance.item] = resolved
            self.masked[instance.group][instance.item] = masked

    def depends_on(self, instance: Instance, deps: list[str]) -> list[str]:
        """`deps` with every batch stage replaced by the same item (item-wise) or all its items."""
        family = self.family.get(instance.group or instance.id)
        out: list[str] = []
        for dep in deps:
            if dep not in self.family:
                out.append(dep)
            elif instance.item is not None and self.family[dep] == family:
                out.append(f"{dep}:{instance.item}")
            else:
                out.extend(f"{dep}:{item.key}" for item in self.items[self.family[dep]])
        return out

    def members(self, stage: str) -> list[str]:
        """The built stage ids of `stage`, in item key order."""
        if stage not in self.specs:
            return [stage]
        return [f"{stage}:{item.key}" for item in self.items[self.family[stage]]]

    def keys(self) -> dict[str, list[str]]:
        return {stage: [item.key for item in self.items[self.family[stage]]] for stage in self.specs}


def match_glob(pattern: str) -> list[str]:
    """The files a `foreach` glob names, sorted (relative to the working directory)."""
    return sorted(globlib.glob(os.path.expanduser(pattern), recursive=True))


def _file_fields(path: str) -> dict[str, str]:
    p = Path(path)
    return {"path": path, "name": p.name, "stem": p.stem, "suffix": p.suffix,
            "parent": p.parent.name or os.path.basename(os.getcwd())}


def _fill_item(value: Any, item: Item, path: tuple, error: Callable, stage: str, shell_keys: tuple = (),
               shell: bool = False) -> Any:
    """`value` with `{item}` and `{item.<field>}` filled in, read by the spec's substitution pass
    after this one: the filled-in text goes in as template literal (braces doubled, so it is never
    read as a reference), shell-quoted under `shell_keys` (the stage type's shell templates). A
    string that is only one of them keeps a non-string value's type."""
    if isinstance(value, dict):
        return {k: _fill_item(v, item, path + (k,), error, stage, (), shell or k in shell_keys)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_item(v, item, path + (i,), error, stage, (), shell) for i, v in enumerate(value)]
    if not isinstance(value, str) or "{item" not in value:
        return value

    def lookup(match: re.Match) -> Any:
        name = match.group(1)
        if name is None:
            return item.value
        if name not in item.fields:
            raise error(f"'{match.group(0)}': {item.origin} has no field '{name}'; it has: "
                        + ", ".join(sorted(item.fields)), path, f"{stage}:{item.key}")
        return item.fields[name]

    def literal(match: re.Match) -> str:
        found = lookup(match)
        return template_literal(shell_words(found) if shell else str(found))
    whole = ITEM_REF.fullmatch(value)
    if whole and not shell:
        found = lookup(whole)
        return template_literal(found) if isinstance(found, str) else copy.deepcopy(found)
    return ITEM_REF.sub(literal, value)
