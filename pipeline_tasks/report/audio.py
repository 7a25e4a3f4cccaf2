"""The report's audio section, found by the outputs stages publish: `audio_file` with
`metadata_file` (audio_extraction: the recording and its speech spans), `segments_file`
(transcription), `cues_file` (subtitle_generation). Outputs of one item of a batch (or of the
plain stages) make one block: an audio player, a timeline of speech spans, transcript segments
and cues (click a span to play from there), the transcript and the cues."""
from __future__ import annotations

import base64
import json
import os
from html import escape
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from . import charts, fmt
from .collect import RunView, StageView

MAX_EMBEDDED_AUDIO = 4 * 1024 * 1024     # a larger recording is linked (relative to the report), not embedded
MAX_CUES_LISTED = 200
KEYS = ("audio_file", "segments_file", "cues_file")


def section(run: RunView, base: str | os.PathLike | None) -> str:
    blocks: dict[str, dict[str, StageView]] = {}
    for unit in run.units():
        for key in KEYS:
            if isinstance(unit.outputs.get(key), str) and key not in blocks.setdefault(unit.item or "", {}):
                blocks[unit.item or ""][key] = unit
    blocks = {k: v for k, v in blocks.items() if v}
    if not blocks:
        return ""
    parts = ['<h2>Audio</h2><section id="audio">']
    for key, found in blocks.items():
        parts.append(_block(key, found, base))
    parts.append("</section>")
    return "".join(parts)


def _read(reader, path: str) -> list:
    try:
        return reader(path)
    except PipelineError:
        return []


def _speech(outputs: dict[str, Any]) -> tuple[list[tuple[float, float]], float | None]:
    try:
        meta = json.loads(Path(outputs["metadata_file"]).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return [], None
    spans = [(float(a), float(b)) for a, b in meta.get("speech") or [] if isinstance(a, (int, float))]
    duration = meta.get("duration")
    return spans, float(duration) if isinstance(duration, (int, float)) else None


def _player(path: str, base) -> str:
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return f'<p class="note">recording not found: {escape(path)}</p>'
    if size <= MAX_EMBEDDED_AUDIO:
        src = "data:audio/wav;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
    else:
        src = fmt.href(p, base)
    where = escape(os.path.abspath(p))
    return (f'<audio class="player" controls preload="metadata" src="{escape(src)}" data-path="{where}"></audio>'
            f'<p class="path"><code>{where}</code></p>')


def _block(key: str, found: dict[str, StageView], base) -> str:
    from ..stages.audio.subtitle_files import read_cues
    from ..stages.audio.transcript import read_segments

    title = key or " · ".join(dict.fromkeys(u.label for u in found.values()))
    parts = [f'<div class="audio-block" data-item="{escape(key)}"><h3>{escape(title)}</h3>']
    spans: list[tuple[float, float]] = []
    duration = None
    if "audio_file" in found:
        outputs = found["audio_file"].outputs
        spans, duration = _speech(outputs)
        parts.append(_player(outputs["audio_file"], base))
    segments = _read(read_segments, found["segments_file"].outputs["segments_file"]) if "segments_file" in found \
        else []
    cues = _read(read_cues, found["cues_file"].outputs["cues_file"]) if "cues_file" in found else []
    ends = [b for _, b in spans] + [s.end for s in segments] + [c.end for c in cues]
    duration = duration or (max(ends) if ends else 0.0)
    parts.append(charts.audio_timeline(duration, [
        ("vad", "speech", [(a, b, "") for a, b in spans]),
        ("segments", "transcript", [(s.start, s.end, s.text) for s in segments]),
        ("cues", "cues", [(c.start, c.end, " / ".join(c.lines)) for c in cues])]))
    if spans:
        speech = sum(b - a for a, b in spans)
        parts.append(f'<p class="meta" data-speech-spans="{len(spans)}">{len(spans)} speech span(s), '
                     f"{speech:.1f} s of {duration:.1f} s</p>")
    if segments:
        parts.append('<div class="transcript">' + "".join(
            f'<p class="segment" data-seek="{s.start:.3f}"><span class="t">{s.start:.1f}–{s.end:.1f} s</span> '
            f"{escape(s.text)}</p>" for s in segments) + "</div>")
    if cues:
        rows = "".join(f'<tr class="cue" data-seek="{c.start:.3f}"><td class="num">{n}</td>'
                       f'<td class="num">{c.start:.2f}</td><td class="num">{c.end:.2f}</td>'
                       f"<td>{'<br>'.join(escape(line) for line in c.lines)}</td></tr>"
                       for n, c in enumerate(cues[:MAX_CUES_LISTED], 1))
        more = f'<p class="meta">{len(cues) - MAX_CUES_LISTED} more cues</p>' if len(cues) > MAX_CUES_LISTED else ""
        parts.append(f'<details class="cues" open><summary>{len(cues)} cue(s)</summary><table class="cues">'
                     f"<tr><th>#</th><th>start</th><th>end</th><th>text</th></tr>{rows}</table>{more}</details>")
    parts.append("</div>")
    return "".join(parts)
