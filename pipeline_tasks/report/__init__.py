"""The HTML run report: one self-contained file (images as downscaled data URIs, SVG inline).

- `collect`: the report's view of a run, from the pipeline and its status (`engine.status`);
- `dag_svg`: the stage graph as inline SVG, each node with its state, duration and key outputs;
- `timeline_svg`: stages over time in lanes, so parallel stages show side by side;
- `media`: images from stage outputs (sample frames, contact sheets, dataset samples) as data URIs;
- `render`: the page itself.

`build_report(state_dir, pipeline=None, output_path=None, status=None)` writes the file and returns its path.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..engine.session import PipelineSession
from ..engine.status import PipelineStatus, pipeline_status, recorded_status
from ..errors import PipelineError, PipelineNotFoundError
from ..models import Pipeline
from ..spec.loader import load_pipeline
from ..state.paths import StatePaths, read_record
from .collect import RunView, collect
from .render import render_html

__all__ = ["RunView", "build_report", "collect", "render_html", "run_of"]


def build_report(state_dir, pipeline: Pipeline | None = None, output_path=None, *, status: PipelineStatus | None = None,
                 title: str | None = None, max_frames: int = 12, max_dataset_samples: int = 16) -> Path:
    """Write the report of the latest run recorded in `state_dir` (`.pipeline/<pipeline_id>/`).

    `pipeline` (a loaded `Pipeline`, for the DAG's edges) and `status` are what the caller knows;
    what it does not pass is read from `state_dir` (`run_of`). `output_path` defaults to
    `<state_dir>/report.html`."""
    pipeline, status, notes = run_of(state_dir, pipeline, status)
    run = collect(status, pipeline, notes)
    out = Path(output_path) if output_path else Path(state_dir) / "report.html"
    html = render_html(run, title=title, max_frames=max_frames, max_dataset_samples=max_dataset_samples,
                       base=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, html, fsync=False)
    return out


def run_of(state_dir, pipeline: Pipeline | None = None, status: PipelineStatus | None = None,
           ) -> tuple[Pipeline | None, PipelineStatus, list[str]]:
    """(pipeline, status, notes) of the run in `state_dir`, filling in what is not given: the
    pipeline from the YAML file the run record names, its status from the state files. Notes say
    what could not be known."""
    paths = StatePaths(state_dir)
    record = read_record(paths)
    if record is None and not paths.events.exists():
        raise PipelineNotFoundError("no pipeline state here (no pipeline.json or events.jsonl); pass the "
                                    "state dir of a run: .pipeline/<pipeline_id>/", path=paths.root)
    record = record or {}
    notes: list[str] = []
    if pipeline is None:
        pipeline = _recorded_pipeline(record, notes)
    if status is None and pipeline is not None:
        pipeline_id = record.get("pipeline_id") if isinstance(record.get("pipeline_id"), str) else paths.root.name
        try:
            status = pipeline_status(PipelineSession(pipeline, pipeline_id, paths))
        except PipelineError as exc:
            notes.append(f"stage states from events only ({exc})")
    if status is None:
        status = recorded_status(paths.root)
    return pipeline, status, notes


def _recorded_pipeline(record: dict[str, Any], notes: list[str]) -> Pipeline | None:
    source = record.get("source")
    if not isinstance(source, str) or not source:
        notes.append("the run was not started from a YAML file: stage dependencies are not known")
        return None
    if not os.path.exists(source):
        notes.append(f"pipeline file {source} no longer exists: stage dependencies are not known")
        return None
    try:
        return load_pipeline(source, check_inputs=False)
    except PipelineError as exc:
        notes.append(f"pipeline file {source} does not load any more ({exc}): stage dependencies are not known")
        return None
