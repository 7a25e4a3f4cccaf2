"""The HTML run report: one self-contained file (images as downscaled data URIs, SVG inline).

- `collect`: what the state dir says about the latest run (stages, states, timing, outputs);
- `dag_svg`: the stage graph as inline SVG, each node with its state, duration and key outputs;
- `timeline_svg`: stages over time in lanes, so parallel stages show side by side;
- `media`: images from stage outputs (sample frames, contact sheets, dataset samples) as data URIs;
- `render`: the page itself.

`build_report(state_dir, pipeline=None, output_path=None)` writes the file and returns its path.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_text
from .collect import RunView, collect
from .render import render_html

__all__ = ["RunView", "build_report", "collect", "render_html"]


def build_report(state_dir, pipeline=None, output_path=None, *, title: str | None = None,
                 max_frames: int = 12, max_dataset_samples: int = 16) -> Path:
    """Write the report of the latest run recorded in `state_dir` (`.pipeline/<pipeline_id>/`).

    `pipeline` (a loaded `Pipeline`) gives the DAG's edges and current stage states; without it the
    pipeline is reloaded from the YAML the run record names, when there is one.
    `output_path` defaults to `<state_dir>/report.html`."""
    run = collect(state_dir, pipeline)
    out = Path(output_path) if output_path else Path(state_dir) / "report.html"
    html = render_html(run, title=title, max_frames=max_frames, max_dataset_samples=max_dataset_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, html, fsync=False)
    return out
