"""The report's quality section: each stage's quality summary (the `quality_summary` output of
segmentation, clustering and training_data_prep), and the clusters with their verdicts, cohesion
and flagged crops from the clustering stage's quality.json (a non-ok verdict with why)."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from . import fmt
from .collect import StageView


def _clusters(outputs: dict[str, Any]) -> str:
    try:
        data = json.loads(Path(outputs["quality_json"]).read_text(encoding="utf-8"))
        clusters = data["clusters"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not isinstance(clusters, dict):
        return ""
    rows = ['<table class="quality-clusters"><tr><th>cluster</th><th>verdict</th><th>crops</th><th>cohesion</th>'
            "<th>flagged</th><th>flags</th></tr>"]
    for name, e in clusters.items():
        if not isinstance(e, dict):
            continue
        flags = ", ".join(f"{k} {v}" for k, v in (e.get("flags") or {}).items())
        mix = (f" (of {' + '.join(e['mixture_of'])})" if e.get("mixture_of")
               else f" ({', '.join(e['reasons'])})" if e.get("reasons") else "")
        rows.append(f'<tr data-verdict="{escape(str(e.get("verdict")))}"><td>{escape(str(name))}</td>'
                    f"<td>{escape(str(e.get('verdict')))}{escape(mix)}</td>"
                    f'<td class="num">{escape(fmt.number(e.get("size", "")))}</td>'
                    f'<td class="num">{escape(fmt.number(e.get("cohesion", "")))}</td>'
                    f'<td class="num">{escape(fmt.number(e.get("flagged_share", "")))}</td>'
                    f"<td>{escape(flags)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def render(stages: list[StageView]) -> str:
    """The section's body for the stages (or batch items) that publish `quality_summary`."""
    parts = ['<section id="quality"><ul class="quality">']
    parts += [f'<li data-stage="{escape(s.label)}"><b>{escape(s.label)}</b>: '
              f'{escape(str(s.outputs["quality_summary"]))}</li>' for s in stages]
    parts.append("</ul>")
    parts += [f"<h3>{escape(s.label)}</h3>" + _clusters(s.outputs) for s in stages if "cluster_verdicts" in s.outputs]
    parts.append("</section>")
    return "".join(parts)
