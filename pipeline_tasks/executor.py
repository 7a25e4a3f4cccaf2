"""The StageExecutor contract every stage type implements, and the context it runs in.

An executor:
- declares `type_name`, a cerberus `config_schema` for its config, and a `version` (bump it when
  its output changes, so stages rerun);
- checks semantics beyond the schema in `validate_config()` (raise `StageConfigError`);
- names the files it reads that no upstream stage produces in `input_files()` (doit `file_dep`);
- does its work in `execute(inputs)`, where `inputs` maps each upstream stage id to that stage's
  outputs, and returns a `StageResult` (use `self.result(...)`).

Inside `execute`, report item progress with `self.progress(done, total)` (it also raises
`StageCancelled` when the run is cancelled), log with `self.log`, write every item atomically with
`pipeline_tasks.atomic`, and skip items already written (item-level resume). Bad inputs raise
`StageInputError(message, path=...)`, never a library traceback.
"""
from __future__ import annotations

import copy
import logging
import os
import shlex
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from .errors import StageCancelled
from .models import ExecutionStatus, StageResult
from .state.events import STAGE_PROGRESS, EventBus


def apply_defaults(schema: dict, doc: dict) -> dict:
    """Fill in cerberus `default`s (also in nested dict schemas). Done by hand because cerberus'
    normalisation costs ~0.5 ms a document, 10x its validation: too slow for 10,000 stages.
    Executors get their defaults this way whether the config came through the spec or not."""
    defaults, nested = _default_plan(schema)
    out = dict(doc)
    for key, default in defaults:
        if key not in out:
            out[key] = copy.deepcopy(default) if isinstance(default, (dict, list, set)) else default
    for key, sub in nested:
        if key in doc and isinstance(doc[key], dict):
            out[key] = apply_defaults(sub, doc[key])
    return out


_plans: dict[int, tuple[list, list, dict]] = {}


def _default_plan(schema: dict) -> tuple[list, list]:
    """(key, default) pairs and (key, sub-schema) pairs of a schema, worked out once per schema."""
    plan = _plans.get(id(schema))
    if plan is None or plan[2] is not schema:
        rules = [(key, r) for key, r in schema.items() if isinstance(r, dict)]
        plan = _plans[id(schema)] = (
            [(key, r["default"]) for key, r in rules if "default" in r],
            [(key, r["schema"]) for key, r in rules if r.get("type") == "dict"
             and isinstance(r.get("schema"), dict)],
            schema)
    return plan[0], plan[1]


def shell_words(value: Any) -> str:
    """`value` as it goes into a shell template: each item of a list or tuple one word, anything
    else one word (its `str`), each quoted exactly once. Raises ValueError for a NUL character,
    which no argument of a process can hold."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    words = []
    for item in items:
        text = str(item)
        if "\0" in text:
            raise ValueError("holds a NUL character, which no command argument can hold")
        words.append(shlex.quote(text))
    return " ".join(words)


def template_literal(text: str) -> str:
    """`text` as literal text of a template: braces doubled, so no placeholder is read in it."""
    return text.replace("{", "{{").replace("}", "}}")


def _as_path(value: str | os.PathLike | None) -> Path | None:
    if not value or isinstance(value, Path):
        return value or None
    return Path(value)


class StageContext:
    """What the runtime gives an executor: logging, events, progress, cancellation, resources."""

    def __init__(self, stage_id: str, *, pipeline_id: str | None = None, bus: EventBus | None = None,
                 logger: logging.Logger | None = None, cancel_file: str | os.PathLike | None = None,
                 resources: dict[str, float] | None = None, progress_interval: float = 0.5,
                 state_dir: str | os.PathLike | None = None):
        self.stage_id = stage_id
        self.pipeline_id = pipeline_id
        self.bus = bus or EventBus()
        self._log = logger
        self.cancel_file = _as_path(cancel_file)
        self.resources = dict(resources or {})
        self.state_dir = _as_path(state_dir)
        self.progress_interval = progress_interval
        self.attempt = 0                        # 1 on the first attempt, 2 on the first retry …
        self._start = time.monotonic()
        self._last_emit = 0.0
        self._last_cancel_check = 0.0

    @property
    def log(self) -> logging.Logger:
        if self._log is None:       # looked up only when used: compiling 10,000 stages makes no loggers
            self._log = logging.getLogger(f"pipeline_tasks.stage.{self.stage_id}")
        return self._log

    def cancelled(self) -> bool:
        return self.cancel_file is not None and self.cancel_file.exists()

    def check_cancelled(self) -> None:
        now = time.monotonic()
        if now - self._last_cancel_check < 0.2:
            return
        self._last_cancel_check = now
        if self.cancelled():
            raise StageCancelled("run cancelled", stage=self.stage_id)

    def progress(self, done: int, total: int | None = None, *, unit: str = "items", message: str = "") -> None:
        """Report `done` of `total` items; throttled to one event every `progress_interval` s."""
        self.check_cancelled()
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_emit < self.progress_interval:
            return
        self._last_emit = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        # no ETA from the first instants: a rate measured over a few ms says nothing
        eta = (total - done) / rate if total and rate > 0 and elapsed >= 1.0 else None
        self.bus.emit(STAGE_PROGRESS, pipeline_id=self.pipeline_id, stage_id=self.stage_id, done=done,
                      total=total, unit=unit, rate=round(rate, 3),
                      eta=round(eta, 1) if eta is not None else None, message=message)


class StageExecutor(ABC):
    """Base class of every stage type (the public stage interface)."""

    type_name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    config_schema: ClassVar[dict[str, Any]] = {}
    description: ClassVar[str] = ""
    # config keys holding shell templates. The spec substitutes its own placeholders (`${ENV}`,
    # `{vars.x}`, `{stage.key}`) into them as `template_literal(shell_words(value))` and leaves `{{`
    # `}}` as they are, so the key's text stays a template in the executor's syntax (`{name}`
    # placeholders, `{{` `}}` literal braces) that the executor renders in one pass
    shell_template_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, stage_id: str, config: dict[str, Any], context: StageContext | None = None):
        self.stage_id = stage_id
        self.config = apply_defaults(self.config_schema, config) if self.config_schema else dict(config)
        self._context = context

    @property
    def context(self) -> StageContext:
        """The runtime's context; a standalone one (events to no file) when used outside a run.
        Made on first use: compiling 10,000 stages instantiates 10,000 executors."""
        if self._context is None:
            self._context = StageContext(self.stage_id)
        return self._context

    # -- declarations used by the compiler -------------------------------------------------------
    def validate_config(self) -> None:
        """Semantic checks beyond the schema; raise StageConfigError(key=...)."""

    def input_files(self) -> list[str]:
        """Files this stage reads that no upstream stage produces (become doit file_dep)."""
        return []

    def output_files(self) -> list[str]:
        """Files this stage promises to write (checked after execute; recorded in the manifest).
        Everything under `output_dir` is recorded anyway."""
        return []

    def output_dir(self) -> str | None:
        value = self.config.get("output_dir")
        return str(value) if value else None

    def estimate_duration(self) -> float | None:
        """Seconds this stage is expected to take, if the executor can tell (used for ETA)."""
        return None

    # -- the work ----------------------------------------------------------------------------------
    @abstractmethod
    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        """Run the stage. `inputs[upstream_id]` is that stage's outputs dict."""

    # -- helpers for subclasses ------------------------------------------------------------------
    def cfg(self, key: str) -> Any:
        """A config value, or its schema default where the value is missing or null."""
        value = self.config.get(key)
        if value is None:
            return (self.config_schema.get(key) or {}).get("default")
        return value

    @property
    def log(self) -> logging.Logger:
        return self.context.log

    def progress(self, done: int, total: int | None = None, *, unit: str = "items", message: str = "") -> None:
        self.context.progress(done, total, unit=unit, message=message)

    def result(self, outputs: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> StageResult:
        outputs = dict(outputs or {})
        if self.output_dir() and "output_dir" not in outputs:
            outputs["output_dir"] = self.output_dir()
        return StageResult(stage_id=self.stage_id, status=ExecutionStatus.COMPLETED,
                           outputs=outputs, metrics=dict(metrics or {}))
