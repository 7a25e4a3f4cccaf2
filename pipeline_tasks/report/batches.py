"""The report's section on batch stages (`foreach`): per stage, its items counted by state, the
failed ones named, and a table of every item (in item order) with its state, duration, key
outputs and links to its output folder and its log."""
from __future__ import annotations

import os
from html import escape
from pathlib import Path

from . import fmt
from .collect import RunView, StageView

OPEN_UP_TO = 40          # an item table this long or shorter starts unfolded
STATE_ORDER = ("success", "up to date", "failed", "running", "interrupted", "cancelled", "stale", "pending")


def anchor(stage: str, key: str) -> str:
    return f"item-{stage}-{key}"


def section(run: RunView, base: str | os.PathLike | None) -> str:
    """The section's HTML, "" when the pipeline has no batch stage."""
    batches = run.batches
    if not batches:
        return ""
    parts = ['<h2>Batch items</h2><section id="items">']
    for row in batches:
        parts.append(_batch(row, run.state_dir, base))
    parts.append("</section>")
    return "".join(parts)


def _batch(row: StageView, state_dir: Path, base) -> str:
    items = row.items or []
    counts = row.counts
    done = counts.get("success", 0) + counts.get("up to date", 0)
    shown = sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else len(STATE_ORDER))
    summary = " · ".join(f'<span class="count" data-state="{escape(s)}">{escape(s)} <b>{counts[s]}</b></span>'
                         for s in shown)
    failed = [i for i in items if i.state == "failed"]
    out = [f'<div class="batch" id="items-{escape(row.id)}" data-stage="{escape(row.id)}" data-items="{len(items)}" '
           f'data-done="{done}"><h3>{escape(row.id)} <span class="meta">{escape(row.type or "")}</span></h3>'
           f'<p class="meta">{done}/{len(items)} items done' + (f" — {summary}" if summary else "") + "</p>"]
    if failed:
        out.append('<p class="note">failed: ' + " ".join(
            f'<a href="#{escape(anchor(row.id, i.item))}">{escape(i.item)}</a>' for i in failed) + "</p>")
    if items:
        opened = " open" if len(items) <= OPEN_UP_TO or failed else ""
        out.append(f"<details{opened}><summary>{len(items)} items</summary>"
                   '<table class="items"><tr><th>item</th><th>state</th><th>duration</th><th>key outputs</th>'
                   "<th>files</th></tr>")
        for i in items:
            out.append(_item_row(row.id, i, state_dir, base))
        out.append("</table></details>")
    out.append("</div>")
    return "".join(out)


def _item_row(stage: str, item: StageView, state_dir: Path, base) -> str:
    links = []
    folder = item.outputs.get("output_dir")
    if isinstance(folder, str) and folder:
        links.append(f'<a class="out" href="{escape(fmt.href(folder, base))}" '
                     f'title="{escape(os.path.abspath(folder))}">output folder</a>')
    log = Path(state_dir) / "logs" / f"{item.label}.log"
    if log.is_file():
        links.append(f'<a class="log" href="{escape(fmt.href(log, base))}" title="{escape(str(log))}">log</a>')
    outs = ", ".join(f"{k}={v}" for k, v in fmt.key_outputs(item.outputs, limit=4))
    err = f'<div class="note">{escape(item.error)}</div>' if item.error else ""
    return (f'<tr id="{escape(anchor(stage, item.item))}" data-item="{escape(item.item)}" '
            f'data-state="{escape(item.state)}"><td><b>{escape(item.item)}</b></td>'
            f'<td><span class="state {escape(item.state.replace(" ", "-"))}">{escape(item.state)}</span>{err}</td>'
            f'<td class="num">{escape(fmt.duration(item.duration))}</td><td>{escape(outs)}</td>'
            f'<td>{" · ".join(links)}</td></tr>')
