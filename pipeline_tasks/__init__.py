"""pipeline_tasks: file-target pipelines for media and ML data preparation, built on doit."""
from .builder import PipelineBuilder
from .checkpoint import CheckpointData, CheckpointManager
from .errors import (DagError, PipelineError, PipelineLockedError, SpecError, StageCancelled, StageConfigError,
                     StageExecutionError, StageInputError, StageTimeoutError)
from .events import EventBus
from .models import (ExecutionStatus, OrchestratorConfig, Pipeline, PipelineResult, PipelineStage,
                     PipelineState, RetryPolicy, StageResult)
from .orchestrator import PipelineOrchestrator
from .progress import PipelineProgressMonitor
from .registry import register_stage_executor
from .stages.base import StageContext, StageExecutor

__version__ = "0.1.0"

__all__ = [
    "CheckpointData", "CheckpointManager", "DagError", "EventBus", "ExecutionStatus", "OrchestratorConfig",
    "Pipeline", "PipelineBuilder", "PipelineError", "PipelineLockedError", "PipelineOrchestrator",
    "PipelineProgressMonitor", "PipelineResult", "PipelineStage", "PipelineState", "RetryPolicy", "SpecError",
    "StageCancelled", "StageConfigError", "StageContext", "StageExecutionError", "StageExecutor",
    "StageInputError", "StageResult", "StageTimeoutError", "register_stage_executor",
]
