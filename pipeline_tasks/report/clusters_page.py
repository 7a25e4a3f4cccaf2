"""`pipeline-tasks clusters PIPELINE`: every clustering stage's clusters, with the fingerprints a
person names them by (names.yaml), as text or as one self-contained HTML page of contact sheets.

For each `clustering` stage that has run: its clusters from `quality.json` (size, verdict, cohesion,
flags), the contact sheet of each, and the name a `names` file of a training_data_prep stage fed by
it gives the cluster's identity.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..models import Pipeline
from ..stages.characters import names as names_file


@dataclass
class ClusterView:
    folder: str                  # cluster_ab12
    size: int
    verdict: str
    cohesion: float | None
    flags: dict[str, int]
    sheet: Path | None
    name: str | None = None
    mixture_of: list[str] = field(default_factory=list)


@dataclass
class StageClusters:
    stage_id: str
    output_dir: Path
    clusters: list[ClusterView]
    names_file: str | None = None


def collect(pipeline: Pipeline) -> list[StageClusters]:
    stages = [s for s in pipeline.stages if s.type == "clustering"]
    if not stages:
        raise PipelineError("the pipeline has no clustering stage")
    out = []
    for st in stages:
        folder = Path(st.config["output_dir"])
        try:
            data = json.loads((folder / "quality.json").read_text(encoding="utf-8"))
            clusters: dict[str, Any] = data["clusters"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PipelineError(f"stage '{st.id}' has no clusters to show yet ({folder / 'quality.json'}: "
                                f"{type(exc).__name__})", hint="run the pipeline first") from None
        naming = [s.config.get("names") for s in pipeline.stages
                  if s.type == "training_data_prep" and st.id in s.depends_on and s.config.get("names")]
        names = names_file.load(naming[0], stage=st.id) if naming else names_file.Names()
        views = []
        for name, e in clusters.items():
            if e.get("verdict") == "noise":
                continue
            sheet = folder / "contact_sheets" / f"{name}.png"
            views.append(ClusterView(name, int(e.get("size", 0)), str(e.get("verdict")), e.get("cohesion"),
                                     dict(e.get("flags") or {}), sheet if sheet.is_file() else None,
                                     names.name(name) or ("(excluded)" if names.excluded(name) else None),
                                     list(e.get("mixture_of") or [])))
        views.sort(key=lambda v: (-v.size, v.folder))
        out.append(StageClusters(st.id, folder, views, naming[0] if naming else None))
    return out


def as_text(stages: list[StageClusters]) -> str:
    lines = []
    for st in stages:
        lines.append(f"{st.stage_id}: {len(st.clusters)} cluster(s) in {st.output_dir}"
                     + (f" (names: {st.names_file})" if st.names_file else ""))
        for v in st.clusters:
            flags = ", ".join(f"{k} {n}" for k, n in v.flags.items())
            mix = f" of {' + '.join(v.mixture_of)}" if v.mixture_of else ""
            cohesion = f"{v.cohesion:.2f}" if isinstance(v.cohesion, float) else "-"
            lines.append(f"  {v.folder:<16} {v.size:>5} crops  {v.verdict}{mix:<1}  cohesion {cohesion}"
                         f"  {v.name or '(unnamed)'}" + (f"  flags: {flags}" if flags else "")
                         + (f"  {v.sheet}" if v.sheet else ""))
    lines.append("name them in a names.yaml (names: {cluster_ab12: heroine}, exclude: [cluster_cd34]) and set "
                 "`names:` of the training_data_prep stage")
    return "\n".join(lines) + "\n"


def as_html(stages: list[StageClusters], title: str) -> str:
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
             "<style>body{font:14px system-ui,sans-serif;margin:16px 24px}figure{margin:0 0 18px}"
             "figcaption{margin:4px 0}code{font-size:13px}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    for st in stages:
        parts.append(f"<h2>{escape(st.stage_id)}</h2>")
        for v in st.clusters:
            img = ""
            if v.sheet is not None:
                data = base64.b64encode(v.sheet.read_bytes()).decode()
                img = f'<img src="data:image/png;base64,{data}" alt="{escape(v.folder)}">'
            flags = ", ".join(f"{k} {n}" for k, n in v.flags.items())
            parts.append(f'<figure data-cluster="{escape(v.folder)}"><figcaption><code>{escape(v.folder)}</code> · '
                         f"{v.size} crops · {escape(v.verdict)} · {escape(v.name or '(unnamed)')}"
                         f"{' · ' + escape(flags) if flags else ''}</figcaption>{img}</figure>")
    parts.append("</body></html>\n")
    return "".join(parts)
