"""The stage graph as inline SVG: columns are the execution plan's parallel groups (topological
generations), each node shows its id, type, state, duration and a few key outputs."""
from __future__ import annotations

from html import escape

from ..spec import dag
from . import fmt
from .collect import RunView
from .graph_text import STATE_COLOURS

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 184, 96, 48, 24, 16
COLOURS = {**STATE_COLOURS, "up to date": "#d3f9d8", "interrupted": "#ffc9c9"}


def layout(run: RunView) -> dict[str, tuple[int, int]]:
    """Stage id -> (column, row)."""
    ids = [s.id for s in run.stages]
    if run.edges_known:
        deps = {s.id: [d for d in s.depends_on if d in ids] for s in run.stages}
        columns = dag.generations(ids, deps)
    else:
        columns = [[i] for i in ids]           # dependencies unknown: the order they ran in
    return {sid: (c, r) for c, col in enumerate(columns) for r, sid in enumerate(col)}


def render(run: RunView) -> str:
    pos = layout(run)
    if not pos:
        return '<p class="empty">no stages</p>'
    cols = max(c for c, _ in pos.values()) + 1
    rows = max(r for _, r in pos.values()) + 1
    width = PAD * 2 + cols * NODE_W + (cols - 1) * GAP_X
    height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y

    def xy(sid: str) -> tuple[int, int]:
        c, r = pos[sid]
        return PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y)

    parts = [(f'<svg id="dag" class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" style="width:100%;max-width:{width}px;height:auto;display:block" '
             'role="img" aria-label="stage graph">'),
             ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#868e96"/></marker></defs>')]
    if run.edges_known:
        for s in run.stages:
            for d in s.depends_on:
                if d not in pos:
                    continue
                x1, y1 = xy(d)
                x2, y2 = xy(s.id)
                x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
                mid = (x1 + x2) / 2
                parts.append(f'<path class="dag-edge" data-from="{escape(d)}" data-to="{escape(s.id)}" '
                             f'd="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" fill="none" stroke="#868e96" '
                             f'stroke-width="1.5" marker-end="url(#arrow)"/>')
    for s in run.stages:
        x, y = xy(s.id)
        colour = COLOURS.get(s.state, "#ffffff")
        lines = [f'<text x="{x + 10}" y="{y + 20}" class="dag-id">{escape(s.id)}</text>',
                 f'<text x="{x + 10}" y="{y + 36}" class="dag-type">{escape(s.type or "?")}</text>',
                 (f'<text x="{x + 10}" y="{y + 52}" class="dag-state">{escape(s.state)} · '
                 f'{escape(fmt.duration(s.duration))}</text>')]
        for i, (k, v) in enumerate(fmt.key_outputs(s.outputs, limit=2)):
            lines.append(f'<text x="{x + 10}" y="{y + 68 + 14 * i}" class="dag-out">{escape(k)}: {escape(v)}</text>')
        title = f"{s.id} ({s.type}): {s.state}" + (f" — {s.error}" if s.error else "")
        parts.append(f'<g class="dag-node" data-stage="{escape(s.id)}" data-state="{escape(s.state)}">'
                     f'<title>{escape(title)}</title>'
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{colour}" '
                     f'stroke="#495057"/>' + "".join(lines) + "</g>")
    parts.append("</svg>")
    return "".join(parts)
