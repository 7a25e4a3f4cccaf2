"""pipeline_tasks: file-target pipelines for media and ML data preparation, built on doit."""
from .builder import PipelineBuilder
from .engine.progress import PipelineProgressMonitor
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
)
from .orchestrator import PipelineOrchestrator
from .spec.registry import register_stage_executor
from .state.checkpoint import CheckpointData, CheckpointManager
from .state.events import EventBus
from .version import __version__

__all__ = [
    "__version__",
    "CheckpointData", "CheckpointManager", "DagError", "EventBus", "ExecutionStatus", "OrchestratorConfig",
    "Pipeline", "PipelineBuilder", "PipelineError", "PipelineLockedError", "PipelineOrchestrator",
    "PipelineProgressMonitor", "PipelineResult", "PipelineStage", "PipelineState", "RetryPolicy", "SpecError",
    "StageCancelled", "StageConfigError", "StageContext", "StageExecutionError", "StageExecutor",
    "StageInputError", "StageResult", "StageState", "StageTimeoutError", "register_stage_executor",
]
