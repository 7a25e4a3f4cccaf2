"""The public enums and dataclasses: what a pipeline is, and what running it produced."""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class ExecutionStatus(str, enum.Enum):
    """State of one stage."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"      # up to date: doit did not need to run it
    CANCELLED = "cancelled"


class PipelineState(str, enum.Enum):
    """State of a whole pipeline."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"          # running, but starting no stage (a safety limit crossed, or `pipeline-tasks pause`)


class StageState(str, enum.Enum):
    """What `status`, the report and the API say of one stage, derived from its files and the
    latest run by `engine.status.stage_state` (the one place that decides)."""

    PENDING = "pending"            # no complete output, not running
    RUNNING = "running"            # started in the run that is going on now
    COMPLETED = "completed"        # complete and current; the latest run produced it
    UP_TO_DATE = "up to date"      # complete and current; an earlier run produced it
    STALE = "stale"                # has a manifest, but its config, its output files or a stage it needs changed
                                   # (or is rerunning) since
    BLOCKED = "blocked"            # not complete, and a stage it needs failed: it cannot run until that is fixed
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"    # started, and the run that started it is gone (killed, crashed)

    @property
    def done(self) -> bool:
        return self in (StageState.COMPLETED, StageState.UP_TO_DATE)

    @property
    def execution_status(self) -> ExecutionStatus:
        """The API's `ExecutionStatus` of a stage in this state."""
        return _EXECUTION_STATUS.get(self, ExecutionStatus.PENDING)


_EXECUTION_STATUS = {StageState.RUNNING: ExecutionStatus.RUNNING, StageState.COMPLETED: ExecutionStatus.COMPLETED,
                     StageState.UP_TO_DATE: ExecutionStatus.SKIPPED, StageState.FAILED: ExecutionStatus.FAILED,
                     StageState.CANCELLED: ExecutionStatus.CANCELLED}


@dataclass
class RetryPolicy:
    """How often and when a failed stage is retried.

    `retry_on_errors` lists exception class names (e.g. ``["TimeoutError", "ConnectionError"]``);
    an empty list retries any error except configuration and input errors, which a retry cannot fix.
    """

    max_retries: int = 0
    retry_delay: float = 1.0
    backoff_multiplier: float = 2.0
    retry_on_errors: list[str] = field(default_factory=list)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return self.retry_delay * (self.backoff_multiplier ** (attempt - 1))


ON_EXHAUSTION = ("suspend", "cancel")


@dataclass
class SafetySettings:
    """The pipeline's `safety:`: limits that pause the run while they are crossed."""

    min_free_disk_gb: float = 1.0          # on each file system the run writes to (state, output folders)
    max_memory_percent: float = 95.0       # of the machine's memory in use
    max_gpu_memory_percent: float = 98.0   # of any GPU's memory in use (measured with NVML when present)
    check_interval: float = 5.0            # seconds between checks
    on_exhaustion: str = "suspend"         # running stages: "suspend" (SIGSTOP/SIGCONT) or "cancel" (rerun later)
    pause_timeout: float = 3600.0          # seconds paused by a limit before the run fails (resource_exhausted)


@dataclass
class PipelineStage:
    id: str
    type: str
    depends_on: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    priority: int = 0                            # among ready stages, the higher starts first
    line: int | None = None                      # where the stage starts in its YAML file
    secret_values: list[str] = field(default_factory=list, repr=False)
    fingerprint_config: dict[str, Any] | None = field(default=None, repr=False)   # secrets masked
    description: str = ""
    group: str | None = None                     # foreach stages: the stage id this item belongs to
    item: str | None = None                      # foreach stages: the item's key (id is "group:item")


@dataclass
class Pipeline:
    name: str
    version: str
    stages: list[PipelineStage]
    source: Path | None = None                  # the YAML file, when loaded from one
    env: dict[str, str] = field(default_factory=dict, repr=False)
    vars: dict[str, Any] = field(default_factory=dict)
    state_dir: Path | None = None
    max_parallel_stages: int | None = None
    resources: dict[str, float] = field(default_factory=dict)   # declared capacity (cpu, mem_gb, gpu, named)
    safety: SafetySettings = field(default_factory=SafetySettings)
    env_used: dict[str, str | None] = field(default_factory=dict, repr=False)   # process env the spec read
    input_files: list[str] = field(default_factory=list, repr=False)            # checked to exist
    batches: dict[str, list[str]] = field(default_factory=dict)      # foreach stage id -> item keys, sorted
    globs: dict[str, list[str]] = field(default_factory=dict, repr=False)  # foreach glob -> the files it matched
    # stages of the file left out of this pipeline, with why (`enabled: false`, `enabled: auto` and
    # a model it needs absent, an upstream stage left out, a problem in a stage a partial run needs not)
    skipped: dict[str, str] = field(default_factory=dict)

    def stage(self, stage_id: str) -> PipelineStage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise KeyError(stage_id)

    @property
    def stage_ids(self) -> list[str]:
        return [s.id for s in self.stages]

    @property
    def secret_values(self) -> list[str]:
        return sorted({v for s in self.stages for v in s.secret_values})


@dataclass
class StageResult:
    stage_id: str
    status: ExecutionStatus = ExecutionStatus.COMPLETED
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 1

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration"] = self.duration
        return data


@dataclass
class PipelineResult:
    pipeline_id: str
    state: PipelineState
    executed: list[str] = field(default_factory=list)       # stages that actually ran
    up_to_date: list[str] = field(default_factory=list)     # stages doit skipped
    failed: list[str] = field(default_factory=list)         # stages that failed (or could not run after one did)
    blocked: list[str] = field(default_factory=list)        # of those, the ones that could not run (never started)
    error: str | None = None
    duration: float | None = None
    collect: Callable[[], dict[str, StageResult]] | None = field(default=None, repr=False, compare=False)
    _stage_results: dict[str, StageResult] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def success(self) -> bool:
        return self.state == PipelineState.COMPLETED

    @property
    def stage_results(self) -> dict[str, StageResult]:
        """Per-stage results (outputs from manifests, timing from events), read on first use."""
        if self._stage_results is None:
            self._stage_results = self.collect() if self.collect else {}
        return self._stage_results


@dataclass
class OrchestratorConfig:
    state_dir: Path = Path(".pipeline")
    max_parallel_stages: int = 1
    durable: bool = True               # commit each stage's success to the doit DB at once
    show_progress: bool = True
    continue_on_error: bool = False    # doit --continue: run independent stages after a failure
    checkpoint_keep_last: int = 10
    resources: dict[str, float] = field(default_factory=dict)   # capacity over the file's and the detected
