"""Small inline SVG charts of the report: cluster sizes with the noise, a scene detector's score
curve with its cuts and threshold, and an audio timeline (speech spans, transcript segments,
subtitle cues). Every mark carries data-* attributes with the numbers it draws."""
from __future__ import annotations

from html import escape

from . import fmt

WIDTH = 960
CURVE_POINTS = 600          # a longer score list is reduced to the maximum of each bucket


def cluster_bars(sizes: dict[str, int], noise: int | None) -> str:
    """One horizontal bar per cluster (largest first), then the noise in grey."""
    rows = sorted(((str(k), int(v)) for k, v in sizes.items() if k != "noise"), key=lambda kv: (-kv[1], kv[0]))
    if noise:
        rows.append(("noise", int(noise)))
    if not rows:
        return ""
    bar_h, label_w, left = 22, 120, 8
    top = max(n for _, n in rows) or 1
    inner = WIDTH - label_w - left - 60
    height = len(rows) * bar_h + 8
    total = sum(n for _, n in rows)
    parts = [f'<svg class="chart cluster-chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="cluster sizes" data-total="{total}">']
    for i, (name, n) in enumerate(rows):
        y = 4 + i * bar_h
        w = max(inner * n / top, 1.0)
        colour = "#adb5bd" if name == "noise" else "#4dabf7"
        share = f"{100 * n / total:.0f}%" if total else ""
        parts.append(f'<g class="cluster-bar" data-cluster="{escape(name)}" data-size="{n}">'
                     f"<title>{escape(name)}: {n} crops ({share})</title>"
                     f'<text x="{left}" y="{y + 15}">{escape(name)}</text>'
                     f'<rect x="{left + label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" rx="3" '
                     f'fill="{colour}"/><text x="{left + label_w + w + 6:.1f}" y="{y + 15}" class="chart-num">'
                     f"{n} · {share}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def reduce(points: list[tuple[int, float]], n: int = CURVE_POINTS) -> list[tuple[int, float]]:
    """At most about `n` points: the highest score of each run of frames (peaks, where cuts are, survive)."""
    if len(points) <= n:
        return list(points)
    size = -(-len(points) // n)
    return [max(points[i:i + size], key=lambda p: p[1]) for i in range(0, len(points), size)]


def score_curve(scores: list[tuple[int, float]], cuts: list[int], threshold: float | None,
                scenes: list[tuple[int, int]], fps: float | None) -> str:
    """The score of every frame the detector saw, the cuts it made (vertical lines), its threshold
    (dashed) and the scenes as alternating bands."""
    if not scores:
        return ""
    height, left, right, top, bottom = 160, 44, 12, 10, 24
    first = min(min(i for i, _ in scores), min((a for a, _ in scenes), default=scores[0][0]))
    last = max(max(i for i, _ in scores), max((b for _, b in scenes), default=scores[-1][0]))
    span = max(last - first, 1)
    peak = max([s for _, s in scores] + ([threshold] if threshold else [])) or 1.0
    inner_w, inner_h = WIDTH - left - right, height - top - bottom

    def x(frame: float) -> float:
        return left + (frame - first) * inner_w / span

    def y(score: float) -> float:
        return top + inner_h - score * inner_h / peak

    parts = [f'<svg class="chart score-curve" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="scene detector score per frame" '
             f'data-frames="{len(scores)}" data-cuts="{len(cuts)}">']
    for n, (a, b) in enumerate(scenes):
        parts.append(f'<rect class="scene-band" data-scene="{n}" x="{x(a):.1f}" y="{top}" '
                     f'width="{max(x(b) - x(a), 1):.1f}" height="{inner_h}" fill="{"#f1f3f5" if n % 2 else "#fff"}"/>')
    line = " ".join(f"{x(i):.1f},{y(s):.1f}" for i, s in reduce(scores))
    parts.append(f'<polyline class="score" points="{line}" fill="none" stroke="#1c7ed6" stroke-width="1.2"/>')
    for c in cuts:
        when = f" ({fmt.duration(c / fps)})" if fps else ""
        parts.append(f'<line class="cut" data-frame="{c}" x1="{x(c):.1f}" y1="{top}" x2="{x(c):.1f}" '
                     f'y2="{top + inner_h}" stroke="#e03131" stroke-width="1.5"><title>cut at frame {c}{escape(when)}'
                     "</title></line>")
    if threshold is not None:
        parts.append(f'<line class="threshold" data-value="{threshold:g}" x1="{left}" y1="{y(threshold):.1f}" '
                     f'x2="{WIDTH - right}" y2="{y(threshold):.1f}" stroke="#f08c00" stroke-dasharray="6 4"/>'
                     f'<text x="{WIDTH - right - 4}" y="{y(threshold) - 4:.1f}" text-anchor="end" class="chart-num">'
                     f"threshold {fmt.number(threshold)}</text>")
    parts.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" class="chart-num">{fmt.number(peak)}</text>'
                 f'<text x="{left - 6}" y="{top + inner_h}" text-anchor="end" class="chart-num">0</text>'
                 f'<text x="{left}" y="{height - 6}" class="chart-num">frame {first}</text>'
                 f'<text x="{WIDTH - right}" y="{height - 6}" text-anchor="end" class="chart-num">frame {last}</text>')
    parts.append("</svg>")
    return "".join(parts)


def audio_timeline(duration: float, lanes: list[tuple[str, str, list[tuple[float, float, str]]]]) -> str:
    """Lanes of spans over the recording, e.g. ("vad", "speech", [(start, end, text), ...]). A span
    carries `data-seek` (its start): clicking it plays the recording from there."""
    lanes = [lane for lane in lanes if lane[2]]
    if not lanes or duration <= 0:
        return ""
    lane_h, label_w, right, axis = 26, 90, 12, 22
    height = len(lanes) * lane_h + axis
    inner = WIDTH - label_w - right
    colours = {"vad": "#69db7c", "segments": "#74c0fc", "cues": "#ffd43b"}
    parts = [f'<svg class="chart audio-timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="audio timeline" '
             f'data-duration="{duration:g}">']
    for row, (kind, label, spans) in enumerate(lanes):
        y = row * lane_h
        parts.append(f'<text x="4" y="{y + 17}">{escape(label)}</text>')
        for a, b, text in spans:
            x0 = label_w + max(a, 0) * inner / duration
            w = max((min(b, duration) - max(a, 0)) * inner / duration, 1.5)
            parts.append(f'<rect class="span {kind}" data-kind="{kind}" data-start="{a:.3f}" data-end="{b:.3f}" '
                         f'data-seek="{a:.3f}" x="{x0:.1f}" y="{y + 4}" width="{w:.1f}" height="{lane_h - 8}" '
                         f'rx="3" fill="{colours.get(kind, "#ced4da")}" stroke="#495057" stroke-width="0.5">'
                         f"<title>{a:.2f}–{b:.2f} s{escape(': ' + text if text else '')}</title></rect>")
    step = 1.0
    for candidate in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800):
        step = candidate
        if duration / candidate <= 12:
            break
    t = 0.0
    while t <= duration + 1e-9:
        x = label_w + t * inner / duration
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" class="chart-num">'
                     f"{escape(fmt.duration(t) if t else '0')}</text>")
        t += step
    parts.append("</svg>")
    return "".join(parts)
