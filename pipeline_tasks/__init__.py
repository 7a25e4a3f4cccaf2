"""pipeline_tasks: file-target pipelines for media and ML data preparation, built on doit.

The public names below are imported on first use (PEP 562), so that a process that needs one
module (a stage's helpers, a stage run in a subprocess) does not import the engine and doit."""
from .errors import (
    DagError,
    PipelineError,
    PipelineLockedError,
    SpecError,
    StageCancelled,
    StageConfigError,
    StageExecutionError,
    StageInputError,
    StageTimeoutError,
)
from .version import __version__

# public name -> "module:attribute", imported on first use
_LAZY = {
    "PipelineBuilder": "pipeline_tasks.builder:PipelineBuilder",
    "PipelineProgressMonitor": "pipeline_tasks.engine.monitor:PipelineProgressMonitor",
    "StageContext": "pipeline_tasks.executor:StageContext",
    "StageExecutor": "pipeline_tasks.executor:StageExecutor",
    "PipelineOrchestrator": "pipeline_tasks.orchestrator:PipelineOrchestrator",
    "CheckpointData": "pipeline_tasks.state.checkpoint:CheckpointData",
    "CheckpointManager": "pipeline_tasks.state.checkpoint:CheckpointManager",
    "EventBus": "pipeline_tasks.state.events:EventBus",
    **{name: f"pipeline_tasks.models:{name}" for name in (
        "ExecutionStatus", "OrchestratorConfig", "Pipeline", "PipelineResult", "PipelineStage", "PipelineState",
        "RetryPolicy", "StageResult", "StageState", "StageType")},
}

__all__ = [
    "__version__",
    "CheckpointData", "CheckpointManager", "DagError", "EventBus", "ExecutionStatus", "OrchestratorConfig",
    "Pipeline", "PipelineBuilder", "PipelineError", "PipelineLockedError", "PipelineOrchestrator",
    "PipelineProgressMonitor", "PipelineResult", "PipelineStage", "PipelineState", "RetryPolicy", "SpecError",
    "StageCancelled", "StageConfigError", "StageContext", "StageExecutionError", "StageExecutor",
    "StageInputError", "StageResult", "StageState", "StageTimeoutError", "StageType", "register_stage_executor",
]
# the built-in executors (FrameExtractionExecutor, SegmentationExecutor, ClusteringExecutor,
# TrainingDataPrepExecutor, CustomExecutor …), imported on first use: they need the media and ML
# libraries of their extras
from .spec.registry import BUILTIN_STAGES, register_stage_executor  # noqa: E402

_EXECUTORS = {target.partition(":")[2]: target for target in BUILTIN_STAGES.values()}
__all__ += sorted(_EXECUTORS)
_LAZY.update(_EXECUTORS)


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'pipeline_tasks' has no attribute '{name}'")
    import importlib
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
