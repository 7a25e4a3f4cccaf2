"""pipeline_tasks: file-target pipelines for media and ML data preparation, built on doit."""
from .builder import PipelineBuilder
from .engine.monitor import PipelineProgressMonitor
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
from .executor import StageContext, StageExecutor
from .models import (
    ExecutionStatus,
    OrchestratorConfig,
    Pipeline,
    PipelineResult,
    PipelineStage,
    PipelineState,
    RetryPolicy,
    StageResult,
    StageState,
    StageType,
)
from .orchestrator import PipelineOrchestrator
from .spec.registry import BUILTIN_STAGES, register_stage_executor
from .state.checkpoint import CheckpointData, CheckpointManager
from .state.events import EventBus
from .version import __version__

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
_EXECUTORS = {target.partition(":")[2]: target for target in BUILTIN_STAGES.values()}
__all__ += sorted(_EXECUTORS)


def __getattr__(name: str):
    target = _EXECUTORS.get(name)
    if target is None:
        raise AttributeError(f"module 'pipeline_tasks' has no attribute '{name}'")
    import importlib
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
