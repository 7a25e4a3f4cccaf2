"""The stage graph as Graphviz DOT or Mermaid text, optionally coloured by stage state; drawn for a
terminal (`to_ascii`), or as SVG/PNG by Graphviz's `dot` program where it is installed."""
from __future__ import annotations

from ..models import Pipeline

STATE_COLOURS = {"success": "#b7e4c7", "up to date": "#d3f9d8", "running": "#ffe066", "failed": "#ff8787",
                 "cancelled": "#ced4da", "interrupted": "#ffc9c9", "stale": "#ffd8a8", "pending": "#ffffff",
                 "blocked": "#e9ecef"}


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


def to_ascii(pipeline: Pipeline, states: dict[str, str] | None = None) -> str:
    """The graph for a terminal, drawn top-down like `git log --graph` (asciidag): the stages that
    depend on nothing first, each stage below the stages it needs."""
    import io

    from asciidag.graph import Graph
    from asciidag.node import Node

    dependants: dict[str, list[str]] = {s.id: [] for s in pipeline.stages}
    for stage in pipeline.stages:
        for dep in stage.depends_on:
            dependants[dep].append(stage.id)
    nodes: dict[str, Node] = {}

    def node(stage) -> Node:      # sinks first, so each node's "parents" (its dependants) exist
        return nodes[stage.id]
    by_id = {s.id: s for s in pipeline.stages}
    for stage in reversed(pipeline.stages):
        state = (states or {}).get(stage.id)
        label = f"{stage.id}  [{stage.type}]" + (f"  {state}" if state else "")
        nodes[stage.id] = Node(label, parents=[node(by_id[d]) for d in dependants[stage.id]])
    out = io.StringIO()
    Graph(fh=out, use_color=False).show_nodes([nodes[s.id] for s in pipeline.stages if not s.depends_on])
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


GRAPHVIZ_INSTALL = ("install Graphviz, which provides the `dot` program: apt-get install graphviz (Debian, "
                    "Ubuntu), dnf install graphviz (Fedora), brew install graphviz (macOS) or conda install "
                    "graphviz; or write DOT text with --format dot")


def render_graphviz(dot_text: str, fmt: str) -> bytes:
    """`dot_text` drawn by Graphviz's `dot` program as `fmt` (svg, png)."""
    import shutil
    import subprocess

    from ..errors import PipelineError
    exe = shutil.which("dot")
    if exe is None:
        raise PipelineError(f"graph --format {fmt} needs Graphviz's `dot` program, which is not installed",
                            hint=GRAPHVIZ_INSTALL)
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise PipelineError(f"Graphviz's dot could not draw the graph: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
