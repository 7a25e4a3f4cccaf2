"""PipelineBuilder: the public API for loading and checking pipelines."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .executor import StageExecutor
from .models import Pipeline, StageType
from .spec import dag
from .spec.loader import load_pipeline, load_pipeline_dict
from .spec.registry import register_stage_executor as _register


class PipelineBuilder:
    """Loads pipelines (YAML/JSON files or dicts), checks their graph and plans their execution.

    `output_root`: the folder every relative output path of the pipelines it loads is rooted in."""

    def __init__(self, *, check_inputs: bool = True, output_root: str | os.PathLike | None = None):
        self.check_inputs = check_inputs
        self.output_root = output_root

    def load_from_yaml(self, path: str | Path) -> Pipeline:
        return load_pipeline(path, check_inputs=self.check_inputs, output_root=self.output_root)

    def load_from_dict(self, config: dict[str, Any], name: str = "<dict>") -> Pipeline:
        """A pipeline from a dict shaped like a pipeline file. Its id comes from its name (or its
        `pipeline: id:`), so changing a stage's config reruns that stage alone, and it can be
        resumed from its checkpoint (which keeps the dict)."""
        return load_pipeline_dict(config, check_inputs=self.check_inputs, name=name, output_root=self.output_root)

    def register_stage_executor(self, stage_type: str | StageType, executor_class: type[StageExecutor]) -> None:
        _register(stage_type, executor_class)

    def validate_dag(self, pipeline: Pipeline) -> bool:
        """True when stage ids are unique, every dependency exists and there is no cycle; a
        DagError saying which stage breaks which rule otherwise."""
        dag.check_graph(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})
        return True

    def build_execution_plan(self, pipeline: Pipeline) -> list[list[str]]:
        """Parallel groups: stages of one group depend only on stages of earlier groups."""
        self.validate_dag(pipeline)
        return dag.generations(pipeline.stage_ids, {s.id: s.depends_on for s in pipeline.stages})
