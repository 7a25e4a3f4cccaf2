"""Built-in pipeline templates: `pipeline-tasks new TEMPLATE [DIR] [--set name=value]`.

Each template is a pipeline file in this folder whose `vars` are its parameters (and `name`, the
pipeline's name); `--set` gives a parameter another value. The written file keeps the template's
comments, so it reads as a pipeline someone wrote, and its vars can be edited later.
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import PipelineError

PIPELINE_FILE = "pipeline.yaml"
INPUT_FOLDERS = {"characters": "videos", "frames": "videos", "subtitles": "recordings"}   # the var naming it


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def text(name: str) -> str:
    if name not in names():
        raise PipelineError(f"no template '{name}'", hint="templates: " + "; ".join(
            f"{n}: {summary(n)}" for n in names()))
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def summary(name: str) -> str:
    """The first sentence of the template's opening comment."""
    first = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").split(":")[0]


def parameters(name: str) -> dict[str, Any]:
    """The template's parameters with their values as written: `name` and every var."""
    import yaml
    data = yaml.safe_load(text(name))
    return {"name": data["pipeline"]["name"], **data.get("vars", {})}


def render(name: str, values: dict[str, Any]) -> str:
    """The template's text with `values` in place of its parameters' (comments kept)."""
    known = parameters(name)
    for key in values:
        if key not in known:
            raise PipelineError(f"template '{name}' has no parameter '{key}'",
                                hint="its parameters: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in known.items()))
    out, block = [], None
    for line in text(name).splitlines(keepends=True):
        top = re.match(r"^([A-Za-z_]+):", line)
        if top:
            block = top.group(1)
        field = re.match(r"^(  )([A-Za-z_][A-Za-z0-9_\-]*):( *)([^#\n]*?)( +#.*)?$", line.rstrip("\n"))
        wanted = block == "vars" or (block == "pipeline" and field and field.group(2) == "name")
        if field and wanted and field.group(2) in values:
            value = json.dumps(values[field.group(2)])         # JSON is YAML: any value, quoted as needed
            line = f"{field.group(1)}{field.group(2)}: {value}{field.group(5) or ''}\n"
        out.append(line)
    return "".join(out)


def parse_values(settings: list[str]) -> dict[str, Any]:
    """`name=value` texts (`--set`), each value read as YAML."""
    import yaml
    values = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        if not sep or not key.strip():
            raise PipelineError(f"--set {setting!r}: expected NAME=VALUE (a template parameter)")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def write(name: str, folder: str | os.PathLike, values: dict[str, Any]) -> tuple[Path, Path | None]:
    """Write the template as `folder/pipeline.yaml` (never over an existing file) and make its input
    folder when it is a relative one that does not exist; (the file, the input folder)."""
    import yaml
    rendered = render(name, values)
    folder = Path(folder)
    path = folder / PIPELINE_FILE
    if path.exists():
        raise PipelineError(f"{path} exists; not writing over it", hint="name another folder, or remove the file")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered, encoding="utf-8")
    inputs = yaml.safe_load(rendered)["vars"].get(INPUT_FOLDERS.get(name, ""))
    input_dir = None
    if isinstance(inputs, str) and not os.path.isabs(inputs):
        input_dir = folder / inputs
        input_dir.mkdir(parents=True, exist_ok=True)
    return path, input_dir
