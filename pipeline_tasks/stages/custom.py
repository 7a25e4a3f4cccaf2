"""`type: custom`: a Python callable (`callable: "package.module:function"`) or a shell command.

Callable: called with whichever of these keyword arguments it accepts — `inputs` (upstream
outputs), `config` (this stage's config), `output_dir`, `args` (the `args` mapping), `progress`
(`progress(done, total)`), `log`, `stage_id` — and may return a dict of outputs. Validation
(`validate`, `graph`, a run's start) only checks that its module can be found; the module is
imported, and its attribute looked up, when the stage runs.

Command: run with /bin/sh in its own process group. The template is read once, left to right:
`{{` and `}}` are literal braces, `{name}` (no dot) is filled from `params` and the stage's own
config keys (`output_dir`, `inputs`, `outputs`), each value shell-quoted exactly once (a list: one
word per item); substituted text is never read again. The spec's own substitutions (`${ENV}`,
`{vars.x}`, `{stage.key}`) reach the template already quoted with their braces doubled, so they
too come out as literal words. Output goes to the stage log; a non-zero exit fails the stage with
the tail of its stderr.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from typing import Any

from .. import process_groups
from ..errors import StageConfigError, StageExecutionError
from ..executor import StageExecutor, create_folder, shell_words
from ..models import StageResult
from ..settings import thaw

# one token of a command template: a literal `{{` or `}}`, or a `{name}` placeholder
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


_found_modules: set[str] = set()      # found once: a pipeline of 10,000 stages names a few modules


def find_module(name: str) -> bool:
    """Whether module `name` can be imported, found without running it or its packages'
    `__init__` (validating a pipeline must not run the code it names)."""
    if name in sys.modules or name in _found_modules:
        return True
    if _find_module(name):
        _found_modules.add(name)
        return True
    return False


def _find_module(name: str) -> bool:
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    for depth in range(2, len(parts) + 1):
        if spec is None or spec.submodule_search_locations is None:
            return False
        full = ".".join(parts[:depth])
        if full in sys.modules:
            spec = sys.modules[full].__spec__
            continue
        locations = list(spec.submodule_search_locations)
        spec = next((found for finder in sys.meta_path if hasattr(finder, "find_spec")
                     for found in [finder.find_spec(full, locations)] if found is not None), None)
    return spec is not None


def check_callable(target: str, stage_id: str | None = None) -> None:
    """StageConfigError unless the module a `callable` names can be found (not imported: its
    attribute is looked up when the stage runs)."""
    module_name = target.partition(":")[0]
    if not find_module(module_name):
        raise StageConfigError(f"cannot find module '{module_name}'", stage=stage_id, key="callable",
                               hint="is the package installed, or the module on PYTHONPATH?")


def import_callable(target: str, stage_id: str | None = None):
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageConfigError(f"cannot import module '{module_name}' ({exc})", stage=stage_id, key="callable",
                               hint="is the package installed, or the module on PYTHONPATH?") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StageConfigError(f"module '{module_name}' has no attribute '{attr}'", stage=stage_id, key="callable")
        obj = getattr(obj, part)
    if not callable(obj):
        raise StageConfigError(f"'{target}' is not callable", stage=stage_id, key="callable")
    return obj


@functools.lru_cache(maxsize=256)
def _parameters(fn) -> tuple[frozenset[str], bool]:
    """The callable's parameter names, and whether it takes **kwargs (looked up once per callable)."""
    params = inspect.signature(fn).parameters
    return frozenset(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


class CustomExecutor(StageExecutor):
    type_name = "custom"
    version = "1"
    description = "a Python callable or a shell command"
    shell_template_keys = ("command",)
    config_schema = {
        "callable": {"type": "string", "regex": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", "excludes": "command"},
        "command": {"type": "string", "empty": False, "excludes": "callable"},
        "args": {"type": "dict"},
        "params": {"type": "dict"},
        "inputs": {"type": "list", "schema": {"type": "string"}},
        "outputs": {"type": "list", "schema": {"type": "string"}},
        "output_dir": {"type": "string", "empty": False},
        "cwd": {"type": "string"},
        "env": {"type": "dict", "valuesrules": {"type": ["string", "number", "boolean"]}},
    }

    def validate_config(self) -> None:
        s = self.settings
        if not s.callable and not s.command:
            raise StageConfigError("a custom stage needs either 'callable' or 'command'", stage=self.stage_id)
        if s.callable:
            check_callable(s.callable, self.stage_id)
        if s.command:
            self.render_command()
        for name, value in (s.env or {}).items():
            if "\0" in str(value):
                raise StageConfigError("holds a NUL character, which no environment variable can hold",
                                       stage=self.stage_id, key=f"env.{name}")

    def input_files(self) -> list[str]:
        return list(self.settings.inputs or ())

    def output_files(self) -> list[str]:
        return list(self.settings.outputs or ())

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        # what a callable or command writes is theirs to manage: the folder is only made
        if self.settings.output_dir:
            create_folder(self.settings.output_dir, self.stage_id)
        if self.settings.callable:
            outputs = self._call(inputs)
        else:
            outputs = self._run_command()
        return self.result(outputs=outputs)

    # -- callable ---------------------------------------------------------------------------------
    def _call(self, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        s = self.settings
        fn = import_callable(s.callable, self.stage_id)
        args = thaw(s.args) if s.args else {}       # the callable's own: plain, mutable values
        available = {"inputs": inputs, "config": self.config, "output_dir": self.output_dir(),
                     "args": args, "progress": self.progress, "log": self.log, "stage_id": self.stage_id}
        params, any_keyword = _parameters(fn)
        if any_keyword:
            kwargs = available
        else:
            kwargs = {k: v for k, v in available.items() if k in params}
            kwargs.update({k: v for k, v in args.items() if k in params and k not in available})
        returned = fn(**kwargs)
        if returned is None:
            return {}
        if not isinstance(returned, dict):
            raise StageExecutionError(f"callable '{s.callable}' returned {type(returned).__name__}; "
                                      f"expected a dict of outputs or None", stage=self.stage_id)
        return returned

    # -- command ----------------------------------------------------------------------------------
    def _template_values(self) -> dict[str, Any]:
        s = self.settings
        values: dict[str, Any] = {k: getattr(s, k) for k in ("output_dir", "inputs", "outputs") if getattr(s, k)}
        values.update(thaw(s.params) or {})
        return values

    def render_command(self) -> str:
        """The command line: one pass over the template, each value quoted once."""
        template = self.settings.command
        if "\0" in template:
            raise StageConfigError("holds a NUL character, which no command can hold", stage=self.stage_id,
                                   key="command")
        values = self._template_values()

        def fill(match: re.Match) -> str:
            name = match.group(1)
            if name is None:                # `{{` or `}}`
                return match.group(0)[0]
            if name not in values:
                raise StageConfigError(f"command uses unknown placeholder '{{{name}}}'; define it under "
                                       f"'params'", stage=self.stage_id, key="command")
            try:
                return shell_words(values[name])
            except ValueError as exc:
                raise StageConfigError(f"the value of placeholder '{{{name}}}' {exc}", stage=self.stage_id,
                                       key="command") from None
        return _TOKEN.sub(fill, template)

    def _run_command(self) -> dict[str, Any]:
        command = self.render_command()
        env = dict(os.environ)
        env.update({k: str(v) for k, v in (self.settings.env or {}).items()})
        self.log.info("$ %s", command)
        # its own process group (a cancel stops all it started), which dies with this process
        with process_groups.start(["/bin/sh", "-c", command], cwd=self.settings.cwd or None, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            out, err = proc.communicate()
        for line in out.splitlines():
            self.log.info("stdout: %s", line)
        for line in err.splitlines():
            self.log.info("stderr: %s", line)
        if proc.returncode != 0:
            tail = " | ".join(err.strip().splitlines()[-3:]) or "(no stderr)"
            raise StageExecutionError(f"command exited with status {proc.returncode}: {tail}", stage=self.stage_id)
        return {"returncode": proc.returncode}
