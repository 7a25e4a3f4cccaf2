"""`report`: write the HTML report of the run this stage is part of (see docs/report.md).

The state dir comes from the config (`state_dir`) or from the runtime (`self.context.state_dir`,
the run's `.pipeline/<pipeline_id>/`). Put the stage last and make it depend on the stages it
should show. The report is the run's final one: the stage shows itself completed (its duration up
to the writing of the page), and the pipeline completed when every other stage is done."""
from __future__ import annotations

import time
from typing import Any

from ..errors import PipelineNotFoundError, StageInputError
from ..executor import StageExecutor
from ..models import StageResult


class ReportExecutor(StageExecutor):
    type_name = "report"
    version = "1"
    reproducible = False            # the report shows the run's times
    description = "Self-contained HTML report of the run: DAG, timeline, scores, frames, clusters, dataset"
    config_schema = {
        "output_dir": {"type": "string", "required": True, "empty": False},
        "state_dir": {"type": "string", "nullable": True, "empty": False, "default": None},
        "filename": {"type": "string", "regex": r"^[^/\\]+\.html?$", "default": "report.html"},
        "title": {"type": "string", "nullable": True, "default": None},
        "max_frames": {"type": "integer", "min": 0, "max": 500, "default": 12},
        "max_dataset_samples": {"type": "integer", "min": 0, "max": 500, "default": 16},
    }

    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        from . import build_report, run_of
        s = self.settings
        state_dir = s.state_dir or self.context.state_dir
        if not state_dir:
            raise StageInputError("no state dir to report on: set 'state_dir' (.pipeline/<pipeline_id>) or run the "
                                  "stage inside a pipeline run", stage=self.stage_id)
        folder = self.output_folder()
        out = folder.path
        path = folder.claim(s.filename)
        try:
            pipeline, status, _notes = run_of(state_dir)
            as_finished(status, self.stage_id, time.time())
            build_report(state_dir, pipeline, path, status=status, title=s.title, max_frames=s.max_frames,
                         max_dataset_samples=s.max_dataset_samples)
        except PipelineNotFoundError as exc:
            raise StageInputError(str(exc), path=state_dir, stage=self.stage_id) from exc
        return self.result(outputs={"output_dir": str(out), "report": str(path)},
                           metrics={"bytes": path.stat().st_size})


def as_finished(status, stage_id: str, now: float) -> None:
    """The run's status as it will be when the report stage `stage_id` ends: the stage completed,
    and the pipeline completed when every other stage is done."""
    from ..models import StageState
    for st in status.stages:
        if st.stage_id == stage_id:
            st.state, st.finished, st.produced_by = StageState.SUCCESS, now, "latest"
            st.duration = round(now - st.started, 6) if st.started else None
    if all(st.state.done for st in status.stages):
        status.state, status.finished, status.eta = "completed", now, None
