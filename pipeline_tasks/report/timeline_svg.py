"""The run's timeline as inline SVG: one bar per stage that ran, from its start to its end, in
lanes (a stage takes the first lane free at its start), so stages that overlapped in time sit in
different lanes: the number of lanes is the run's peak parallelism."""
from __future__ import annotations

from html import escape

from . import fmt
from .collect import RunView
from .dag_svg import COLOURS

LEFT, RIGHT, TOP, LANE_H, AXIS_H, WIDTH = 12, 12, 8, 28, 26, 960


def lanes(intervals: list[tuple[str, float, float]]) -> dict[str, int]:
    """Interval partitioning: stage id -> lane, first free lane at each start (sorted by start)."""
    ends: list[float] = []
    out = {}
    for sid, start, end in sorted(intervals, key=lambda t: (t[1], t[2], t[0])):
        for i, e in enumerate(ends):
            if e <= start:
                ends[i] = end
                out[sid] = i
                break
        else:
            ends.append(end)
            out[sid] = len(ends) - 1
    return out


def bars(run: RunView, now: float | None = None) -> list[tuple[str, float, float, str]]:
    """(stage id, start, end, state) of the stages that ran in this run; a running stage ends `now`.
    A stage up to date carries the times of the earlier run that made its outputs: no bar."""
    out = []
    for s in run.stages:
        if s.started is None or s.state == "up to date":
            continue
        end = s.finished if s.finished is not None else (now or s.started)
        out.append((s.id, float(s.started), float(max(end, s.started)), s.state))
    return out


def render(run: RunView, now: float | None = None) -> tuple[str, int]:
    """(svg, peak parallelism)."""
    items = bars(run, now)
    if not items:
        return '<p class="empty">no stage ran in the latest run (everything was up to date)</p>', 0
    t0 = min(b[1] for b in items)
    t1 = max(b[2] for b in items)
    span = max(t1 - t0, 1e-3)
    lane_of = lanes([(sid, a, b) for sid, a, b, _ in items])
    n_lanes = max(lane_of.values()) + 1
    height = TOP + n_lanes * LANE_H + AXIS_H
    inner = WIDTH - LEFT - RIGHT
    scale = inner / span
    parts = [(f'<svg id="timeline" class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="run timeline" '
             f'data-lanes="{n_lanes}">')]
    # axis: about 6 ticks at round intervals
    step = _nice_step(span / 6)
    t = 0.0
    axis_y = TOP + n_lanes * LANE_H + 4
    while t <= span + 1e-9:
        x = LEFT + t * scale
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{axis_y}" stroke="#e9ecef"/>'
                     f'<text x="{x:.1f}" y="{axis_y + 14}" class="tl-tick" text-anchor="middle">'
                     f'{escape(fmt.duration(t) if t else "0")}</text>')
        t += step
    for sid, a, b, state in items:
        x = LEFT + (a - t0) * scale
        w = max((b - a) * scale, 2.0)
        y = TOP + lane_of[sid] * LANE_H
        colour = COLOURS.get(state, "#ffffff")
        parts.append(f'<g class="timeline-bar" data-stage="{escape(sid)}" data-lane="{lane_of[sid]}" '
                     f'data-start="{a - t0:.3f}" data-end="{b - t0:.3f}">'
                     f'<title>{escape(sid)}: {escape(fmt.duration(b - a))} ({escape(state)})</title>'
                     f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{LANE_H - 6}" rx="4" fill="{colour}" '
                     f'stroke="#495057"/>'
                     + (f'<text x="{x + 4:.1f}" y="{y + LANE_H / 2 + 4}" class="tl-label">{escape(sid)}</text>'
                        if w >= 7 * len(sid) + 8 else "")      # too short for its label: the title shows it
                     + "</g>")
    parts.append("</svg>")
    return "".join(parts), n_lanes


def _nice_step(raw: float) -> float:
    import math
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag
