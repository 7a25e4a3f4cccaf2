"""The PipelineError family: every error a user can act on.

Each error carries enough context (file, line, column, stage id, config key) to be printed as one
line by the CLI, without a traceback.
"""
from __future__ import annotations


class PipelineError(Exception):
    """Base of every error pipeline_tasks raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path=None, line: int | None = None, column: int | None = None,
                 stage: str | None = None, key: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.stage = stage
        self.key = key
        self.hint = hint

    def location(self) -> str:
        if not self.path:
            return ""
        loc = self.path
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        return loc

    def __str__(self) -> str:
        parts = []
        loc = self.location()
        # a message that already names its file says it once (`x.wav holds no audio samples`)
        if loc and not (self.line is None and self.path in self.message):
            parts.append(loc + ":")
        if self.stage:
            parts.append(f"stage '{self.stage}'" + (f", key '{self.key}':" if self.key else ":"))
        elif self.key:
            parts.append(f"key '{self.key}':")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" ({self.hint})"
        return text


class SpecError(PipelineError):
    """The pipeline file is malformed: bad YAML, unknown keys, wrong types, bad references."""

    exit_code = 2


class SpecErrors(SpecError):
    """Several problems in one pipeline file, found in one pass; each is a SpecError of its own.
    Its location, stage and key are the first problem's; `str()` gives one line per problem."""

    def __init__(self, errors: list[SpecError]):
        first = errors[0]
        super().__init__(first.message, path=first.path, line=first.line, column=first.column, stage=first.stage,
                         key=first.key, hint=first.hint)
        self.errors = list(errors)
        self.exit_code = max(e.exit_code for e in errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class DagError(SpecError):
    """The stage graph is invalid: duplicate ids, unknown dependencies, cycles."""


class StageConfigError(PipelineError):
    """A stage's config is semantically wrong (found by the executor's validate_config)."""

    exit_code = 2


class StageInputError(PipelineError):
    """A stage's input file is missing, unreadable or not what the stage expects."""


class StageExecutionError(PipelineError):
    """A stage failed while running."""


class StageTimeoutError(StageExecutionError):
    """A stage ran past its `timeout`."""


class StageCancelled(PipelineError):
    """The run was cancelled (`pipeline-tasks cancel`, SIGTERM or Ctrl-C)."""

    exit_code = 130


class PipelineLockedError(PipelineError):
    """Another process is running a pipeline on the same state directory."""

    exit_code = 3


class PipelineNotFoundError(PipelineError):
    """A pipeline id or checkpoint file that does not exist."""


class ModelWeightsError(StageConfigError):
    """A model weights file named in the config is missing or unreadable."""


class MissingPackageError(StageConfigError):
    """An optional Python package the config needs (a backend, a detector) is not installed."""


class ResourceExhaustedError(StageExecutionError):
    """A stage went past its own resource limit (`mem_gb`), or the machine ran short of a resource
    (disk, memory) for longer than the pipeline's `safety.pause_timeout`."""

    error_code = "resource_exhausted"        # the name `retry_on_errors` may list
