"""Inputs that are one folder or file, or a list of them (a gather over a batch stage's items).

`labelled` tells the paths of a list apart by the path components where they differ, which is
the item key in the usual layouts (`work/characters/{item}` → `ep01`, `ep02`): files gathered from
several items are named and recorded with that label, so they never collide downstream.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# a config value that is one path or a list of paths
PATHS_SCHEMA = {"type": ["string", "list"], "empty": False, "schema": {"type": "string", "empty": False}}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]+")


def as_list(value: Any) -> list[str]:
    """[] for nothing, [value] for one path, the paths of a list."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def labelled(value: Any) -> list[tuple[str, Path]]:
    """Each path with its label: "" when there is one path (names stay as they were), else the
    path components in which the paths differ, joined by '-'."""
    paths = as_list(value)
    if len(paths) <= 1:
        return [("", Path(p)) for p in paths]
    parts = [Path(os.path.normpath(p)).parts for p in paths]
    shortest = min(len(p) for p in parts)
    head = 0
    while head < shortest and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({p[len(p) - 1 - tail] for p in parts}) == 1:
        tail += 1
    labels = [_UNSAFE.sub("_", "-".join(p[head:len(p) - tail])) or "_" for p in parts]
    if len(set(labels)) < len(labels):          # the same path twice: number them
        labels = [f"{i}-{label}" for i, label in enumerate(labels)]
    return list(zip(labels, (Path(p) for p in paths)))


def item_file_name(label: str, name: str) -> str:
    """The name of a file copied from a labelled input: the label first, so items never collide."""
    return f"{label}_{name}" if label else name
