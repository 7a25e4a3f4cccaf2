"""The stage graph as Graphviz DOT or Mermaid text, optionally coloured by stage state."""
from __future__ import annotations

from ..models import Pipeline

STATE_COLOURS = {"completed": "#b7e4c7", "up to date": "#d3f9d8", "running": "#ffe066", "failed": "#ff8787",
                 "cancelled": "#ced4da", "interrupted": "#ffc9c9", "stale": "#ffd8a8", "pending": "#ffffff"}


def _class_name(state: str) -> str:       # "up to date" -> "up_to_date": a Mermaid class is one word
    return state.replace(" ", "_")


def _label(stage, states: dict[str, str] | None) -> str:
    state = (states or {}).get(stage.id)
    return f"{stage.id}\\n[{stage.type}]" + (f"\\n{state}" if state else "")


def to_dot(pipeline: Pipeline, states: dict[str, str] | None = None) -> str:
    lines = [f'digraph "{pipeline.name}" {{', "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor="#ffffff"];']
    for stage in pipeline.stages:
        colour = STATE_COLOURS.get((states or {}).get(stage.id, ""), "#ffffff")
        lines.append(f'  "{stage.id}" [label="{_label(stage, states)}", fillcolor="{colour}"];')
    for stage in pipeline.stages:
        for dep in stage.depends_on:
            lines.append(f'  "{dep}" -> "{stage.id}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(pipeline: Pipeline, states: dict[str, str] | None = None) -> str:
    def node(stage_id: str) -> str:
        return "n_" + stage_id.replace("-", "_")
    lines = ["flowchart LR"]
    for stage in pipeline.stages:
        label = _label(stage, states).replace("\\n", "<br/>")
        lines.append(f'  {node(stage.id)}["{label}"]')
    for stage in pipeline.stages:
        for dep in stage.depends_on:
            lines.append(f"  {node(dep)} --> {node(stage.id)}")
    used = {s for s in (states or {}).values()}
    for state in sorted(used):
        if state in STATE_COLOURS:
            lines.append(f"  classDef {_class_name(state)} fill:{STATE_COLOURS[state]}")
    for stage in pipeline.stages:
        state = (states or {}).get(stage.id)
        if state in STATE_COLOURS:
            lines.append(f"  class {node(stage.id)} {_class_name(state)}")
    return "\n".join(lines) + "\n"
