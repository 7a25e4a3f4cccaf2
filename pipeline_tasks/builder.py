"""PipelineBuilder: the public API for loading and checking pipelines."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .executor import StageExecutor
from .models import Pipeline
from .spec import dag
from .spec.loader import load_pipeline, load_pipeline_dict
from .spec.registry import register_stage_executor as _register


class PipelineBuilder:
    def __init__(self, *, check_inputs: bool = True):
        self.check_inputs = check_inputs

    def load_from_yaml(self, path: str | Path) -> Pipeline:
        return load_pipeline(path, check_inputs=self.check_inputs)

    def load_from_dict(self, data: dict[str, Any], name: str = "<dict>") -> Pipeline:
        return load_pipeline_dict(data, check_inputs=self.check_inputs, name=name)

    def register_stage_executor(self, type_name: str, cls: type[StageExecutor]) -> None:
        _register(type_name, cls)

    def validate_dag(self, pipeline: Pipeline) -> list[str]:
        """Check ids, dependencies and cycles; returns a topological order of stage ids."""
        return dag.check_graph(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})

    def build_execution_plan(self, pipeline: Pipeline) -> list[list[str]]:
        """Parallel groups: stages of one group depend only on stages of earlier groups."""
        self.validate_dag(pipeline)
        return dag.generations(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})
