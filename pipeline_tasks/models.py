"""The public enums and dataclasses: what a pipeline is, and what running it produced."""
from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class ExecutionStatus(str, enum.Enum):
    """State of one stage in the API (`StageResult.status`, `PipelineStage.status`)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"      # the stage ran and produced its outputs
    FAILED = "failed"
    SKIPPED = "skipped"      # up to date: its outputs were already complete and current
    CANCELLED = "cancelled"


class PipelineState(str, enum.Enum):
    """State of a whole pipeline, as its run record keeps it."""

    PENDING = "pending"        # created (validated, id assigned), not run yet
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"          # running, but starting no stage (a safety limit crossed, or `pipeline-tasks pause`)

    def can_become(self, other: PipelineState) -> bool:
        """Whether a pipeline in this state may move to `other` (`PIPELINE_TRANSITIONS`)."""
        return other in PIPELINE_TRANSITIONS[self]


# Legal moves between pipeline states. A finished run (completed, failed, cancelled) may run again
# (a rerun or a resume); RUNNING -> RUNNING is a run started after one that was killed before it
# could record its end; PENDING is entered only by `create` (also over an earlier record).
PIPELINE_TRANSITIONS: dict[PipelineState, frozenset[PipelineState]] = {
    PipelineState.PENDING: frozenset({PipelineState.PENDING, PipelineState.RUNNING, PipelineState.CANCELLED}),
    PipelineState.RUNNING: frozenset({PipelineState.RUNNING, PipelineState.COMPLETED, PipelineState.FAILED,
                                      PipelineState.CANCELLED, PipelineState.PAUSED}),
    PipelineState.PAUSED: frozenset({PipelineState.RUNNING, PipelineState.FAILED, PipelineState.CANCELLED}),
    PipelineState.COMPLETED: frozenset({PipelineState.PENDING, PipelineState.RUNNING}),
    PipelineState.FAILED: frozenset({PipelineState.PENDING, PipelineState.RUNNING}),
    PipelineState.CANCELLED: frozenset({PipelineState.PENDING, PipelineState.RUNNING}),
}


class StageType(str, enum.Enum):
    """The built-in stage types of the document's workflows. A stage's `type` may also name any
    other registered type (the audio family, `evaluate`, `report`, plugins) as a plain string;
    `StageType.SEGMENTATION == "segmentation"` holds, so either spelling works."""

    FRAME_EXTRACTION = "frame_extraction"
    SEGMENTATION = "segmentation"
    CLUSTERING = "clustering"
    TRAINING_DATA_PREP = "training_data_prep"
    CUSTOM = "custom"


class StageState(str, enum.Enum):
    """What `status`, the report and the API say of one stage, derived from its files and the
    latest run by `engine.status.stage_state` (the one place that decides)."""

    PENDING = "pending"            # no complete output, not running
    RUNNING = "running"            # started in the run that is going on now
    SUCCESS = "success"            # complete and current; the latest run produced it
    UP_TO_DATE = "up to date"      # complete and current; an earlier run produced it
    STALE = "stale"                # has a manifest, but its config, its output files or a stage it needs changed
                                   # (or is rerunning) since
    BLOCKED = "blocked"            # not complete, and a stage it needs failed: it cannot run until that is fixed
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"    # started, and the run that started it is gone (killed, crashed)

    @property
    def done(self) -> bool:
        return self in (StageState.SUCCESS, StageState.UP_TO_DATE)

    @property
    def execution_status(self) -> ExecutionStatus:
        """The API's `ExecutionStatus` of a stage in this state."""
        return _EXECUTION_STATUS.get(self, ExecutionStatus.PENDING)


_EXECUTION_STATUS = {StageState.RUNNING: ExecutionStatus.RUNNING, StageState.SUCCESS: ExecutionStatus.SUCCESS,
                     StageState.UP_TO_DATE: ExecutionStatus.SKIPPED, StageState.FAILED: ExecutionStatus.FAILED,
                     StageState.CANCELLED: ExecutionStatus.CANCELLED}


# Error categories a RetryPolicy may name besides exception class names: each is a set of exception
# class names (matched against the error's class and its bases, also across a timed child process).
ERROR_CATEGORIES: dict[str, frozenset[str]] = {
    "timeout": frozenset({"TimeoutError", "StageTimeoutError", "TimeoutExpired", "ReadTimeout", "ConnectTimeout"}),
    "resource_exhausted": frozenset({"MemoryError", "OutOfMemoryError", "ResourceExhaustedError"}),
    "io": frozenset({"OSError", "IOError"}),
    "network": frozenset({"ConnectionError", "URLError", "HTTPError", "ConnectError", "RemoteDisconnected"}),
    "process": frozenset({"CalledProcessError", "CommandFailedError"}),
}
ERRNO_CATEGORIES = {"resource_exhausted": frozenset({28, 12, 24, 23, 122})}   # ENOSPC ENOMEM EMFILE ENFILE EDQUOT


@dataclass
class RetryPolicy:
    """How often and when a failed stage is retried.

    `retry_on_errors` lists error categories (`ERROR_CATEGORIES`: "timeout", "resource_exhausted",
    "io", "network", "process") and/or exception class names (e.g. ``"ConnectionError"``); an empty
    list retries any error except configuration and input errors, which a retry cannot fix.
    """

    max_retries: int = 2
    retry_delay: float = 60.0
    backoff_multiplier: float = 2.0
    retry_on_errors: list[str] = field(default_factory=lambda: ["timeout", "resource_exhausted"])

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return self.retry_delay * (self.backoff_multiplier ** (attempt - 1))

    def matches(self, error_names: set[str], errno: int | None = None) -> bool:
        """Whether an error of these class names (its class and bases) is one to retry."""
        if not self.retry_on_errors:
            return True
        for entry in self.retry_on_errors:
            if entry in error_names or error_names & ERROR_CATEGORIES.get(entry, frozenset()):
                return True
            if errno is not None and errno in ERRNO_CATEGORIES.get(entry, ()):
                return True
        return False


NO_RETRY = RetryPolicy(max_retries=0, retry_delay=1.0, retry_on_errors=[])


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
    type: str                                    # a StageType value or any other registered type name
    depends_on: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    status: ExecutionStatus = ExecutionStatus.PENDING   # of the latest run the orchestrator made of it
    outputs: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None
    error_message: str | None = None
    retry: RetryPolicy | None = None             # None: the orchestrator's default policy
    timeout: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    priority: int = 0                            # among ready stages, the higher starts first
    line: int | None = None                      # where the stage starts in its YAML file
    secret_values: list[str] = field(default_factory=list, repr=False)
    fingerprint_config: dict[str, Any] | None = field(default=None, repr=False)   # secrets masked
    description: str = ""
    group: str | None = None                     # foreach stages: the stage id this item belongs to
    item: str | None = None                      # foreach stages: the item's key (id is "group:item")

    def __post_init__(self) -> None:
        if isinstance(self.type, StageType):
            self.type = self.type.value


@dataclass
class Pipeline:
    id: str
    name: str
    version: str
    stages: list[PipelineStage]
    config: dict[str, Any] = field(default_factory=dict)          # the `pipeline:` section as written
    created_at: float = field(default_factory=time.time)
    state: PipelineState = PipelineState.PENDING
    checkpoint_dir: Path | None = None           # its state folder, once an orchestrator has run it
    source: Path | None = None                   # the YAML file, when loaded from one
    definition: dict[str, Any] | None = field(default=None, repr=False)   # the dict it was loaded from
    output_root: str | None = None               # the folder its relative output paths are rooted in
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

    @property
    def progress_percent(self) -> float:
        """Share of stages done: run successfully, or skipped because already up to date."""
        done = sum(1 for s in self.stages if s.status in (ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED))
        return (done / len(self.stages)) * 100 if self.stages else 0


@dataclass
class StageResult:
    stage_id: str
    status: ExecutionStatus = ExecutionStatus.SUCCESS
    duration: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    checkpoints: list[Path] = field(default_factory=list)    # checkpoint files written after the stage
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["checkpoints"] = [str(p) for p in self.checkpoints]
        return data


@dataclass
class PipelineResult:
    pipeline_id: str
    status: PipelineState
    total_duration: float
    stage_results: list[StageResult] = field(default_factory=list)   # in the pipeline's stage order
    final_outputs: dict[str, Any] = field(default_factory=dict)      # outputs of the stages nothing depends on
    error_message: str | None = None
    executed: list[str] = field(default_factory=list)       # stages that actually ran
    up_to_date: list[str] = field(default_factory=list)     # stages skipped as up to date
    failed: list[str] = field(default_factory=list)         # stages that failed (or could not run after one did)
    blocked: list[str] = field(default_factory=list)        # of those, the ones that could not run (never started)

    @property
    def success(self) -> bool:
        return self.status == PipelineState.COMPLETED

    def stage_result(self, stage_id: str) -> StageResult:
        """The result of one stage; KeyError for an id the pipeline does not have."""
        for result in self.stage_results:
            if result.stage_id == stage_id:
                return result
        raise KeyError(stage_id)


@dataclass
class OrchestratorConfig:
    """How the orchestrator runs pipelines. Every field is used:

    - `checkpoint_dir`: where checkpoint files are kept, one folder per pipeline id; None: in each
      pipeline's state folder (`.pipeline/<id>/checkpoints`);
    - `enable_parallel_execution`, `max_parallel_stages`: independent stages run in that many worker
      processes at most (never more than the widest group of the execution plan);
    - `checkpoint_interval`: seconds between checkpoint files during a run (one is always written at
      its end and when it fails);
    - `enable_auto_retry`, `max_retries`: the retry policy of stages that declare none;
    - `event_bus_enabled`: run events reach the EventBus given to the orchestrator (they are always
      written to the pipeline's `events.jsonl`).
    """

    checkpoint_dir: Path | None = None
    enable_parallel_execution: bool = True
    max_parallel_stages: int = 4
    checkpoint_interval: int = 300
    enable_auto_retry: bool = True
    max_retries: int = 2
    event_bus_enabled: bool = True
    state_dir: Path = Path(".pipeline")
    durable: bool = True               # commit each stage's success to the doit DB at once
    show_progress: bool = True
    continue_on_error: bool = False    # doit --continue: run independent stages after a failure
    resources: dict[str, float] = field(default_factory=dict)   # capacity over the file's and the detected
    checkpoint_keep_last: int = 3      # checkpoint files kept per pipeline (older ones are pruned)

    def default_retry(self) -> RetryPolicy:
        """The retry policy of a stage that declares none."""
        if not self.enable_auto_retry:
            return NO_RETRY
        return RetryPolicy(max_retries=self.max_retries)
