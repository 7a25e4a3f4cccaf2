"""The report page: header, DAG, timeline, stage table, ground-truth scores, sample frames,
contact sheets and a dataset sample. Everything inline (CSS, SVG, images as data URIs, a few lines
of JS that mark the page once every image has decoded: `<html data-images-loaded="true">`)."""
from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path
from typing import Any

from . import dag_svg, fmt, media, timeline_svg
from .collect import RunView

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;background:#f8f9fa}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
.meta{color:#495057}.meta span{margin-right:18px}.note{color:#862e9c}
.state{display:inline-block;padding:1px 8px;border-radius:10px;background:#e9ecef}
.state.completed{background:#b7e4c7}.state.failed,.state.interrupted{background:#ff8787}.state.running{background:#ffe066}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:6px}
svg text{font:12px system-ui,sans-serif;fill:#212529}.dag-id{font-weight:600}.dag-type,.dag-out{fill:#495057}
.tl-tick{fill:#868e96;font-size:11px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #dee2e6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:6px;max-width:340px}
figure.sheet{max-width:100%}
figcaption{font-size:12px;color:#495057;margin-top:4px;word-break:break-word}
figure.sample{width:200px}
img.alpha{background:repeating-conic-gradient(#dee2e6 0% 25%,#fff 0% 50%) 50%/16px 16px}
code{font-size:12px}
table.scores{display:inline-table;margin:0 12px 8px 0}

"""

JS = """
(function(){
  function check(){
    var imgs=Array.prototype.slice.call(document.images), broken=0;
    imgs.forEach(function(i){
      if(!(i.complete && i.naturalWidth>0)){ broken++; i.setAttribute('data-broken','true'); }
    });
    var root=document.documentElement;
    root.setAttribute('data-images-total', String(imgs.length));
    root.setAttribute('data-images-broken', String(broken));
    root.setAttribute('data-images-loaded', broken===0 ? 'true' : 'false');
  }
  if(document.readyState==='complete'){check();} else {window.addEventListener('load', check);}
})();
"""


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "–"


def _figures(pics: list[media.Picture], cls: str, alpha: bool = False) -> str:
    items = []
    for p in pics:
        items.append(f'<figure class="{cls}"><img class="{"alpha" if alpha else ""}" src="{p.uri}" width="{p.width}" '
                     f'height="{p.height}" alt="{escape(Path(p.source).name)}" title="{escape(p.source)}">'
                     f'<figcaption class="caption">{escape(p.caption)}</figcaption></figure>')
    return '<div class="grid">' + "".join(items) + "</div>"


def _stage_table(run: RunView) -> str:
    rows = [("<table id=\"stages\"><tr><th>stage</th><th>type</th><th>state</th><th>duration</th><th>attempts</th>"
            "<th>key outputs</th><th>metrics</th></tr>")]
    for s in run.stages:
        outs = ", ".join(f"{k}={v}" for k, v in fmt.key_outputs(s.outputs, limit=6))
        mets = ", ".join(f"{k}={fmt.number(v)}" for k, v in sorted(s.metrics.items())
                         if isinstance(v, (int, float, bool)))
        err = f'<div class="note">{escape(s.error)}</div>' if s.error else ""
        retry = f" ({s.retries} retr{'y' if s.retries == 1 else 'ies'})" if s.retries else ""
        rows.append(f'<tr data-stage="{escape(s.id)}"><td><b>{escape(s.id)}</b></td><td>{escape(s.type or "?")}</td>'
                    f'<td><span class="state {escape(s.state.replace(" ", "-"))}">{escape(s.state)}</span>{err}</td>'
                    f'<td class="num">{escape(fmt.duration(s.duration))}</td>'
                    f'<td class="num">{escape(str(s.attempts or ""))}{escape(retry)}</td>'
                    f"<td>{escape(outs)}</td><td>{escape(mets)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


_SCORE_KEYS = {
    "scene_cuts": ("Scene cuts", ["precision", "recall", "f1", "true_positives", "false_positives",
                                  "false_negatives", "tolerance"]),
    "masks": ("Instance masks", ["mean_iou", "mean_iou_all", "precision", "recall", "matched", "missed",
                                 "false_positives", "frames"]),
    "clusters": ("Identity clusters", ["ari", "ari_noise_as_singletons", "purity", "noise_fraction", "clusters",
                                       "identities", "labelled", "unlabelled"]),
}


def _evaluation(stage_id: str, outputs: dict[str, Any]) -> str:
    try:
        data = json.loads(Path(outputs["metrics_json"]).read_text())
    except (OSError, ValueError):
        data = {}
    parts = [f'<div class="evaluation" data-stage="{escape(stage_id)}"><h3>{escape(stage_id)}</h3>']
    for key, (title, fields) in _SCORE_KEYS.items():
        block = data.get(key)
        if not isinstance(block, dict):
            continue
        cells = "".join(f"<tr><th>{escape(f)}</th><td class=\"num\">{escape(fmt.number(block[f]))}</td></tr>"
                        for f in fields if f in block)
        parts.append(f'<table class="scores" data-score="{key}"><tr><th colspan="2">{escape(title)}</th></tr>'
                     f"{cells}</table> ")
    unavailable = data.get("unavailable") or outputs.get("unavailable") or {}
    if unavailable:
        parts.append("<ul class=\"unavailable\">" + "".join(
            f"<li><b>{escape(k)}</b>: not scored — {escape(str(v))}</li>" for k, v in sorted(unavailable.items()))
                     + "</ul>")
    parts.append("</div>")
    return "".join(parts)


def render_html(run: RunView, *, title: str | None = None, max_frames: int = 12, max_dataset_samples: int = 16,
                now: float | None = None) -> str:
    now = now or time.time()
    title = title or f"{run.name} — pipeline report"
    done = sum(1 for s in run.stages if s.state in ("completed", "up to date"))
    timeline, peak = timeline_svg.render(run, now)
    head = (f'<h1>{escape(title)}</h1><div class="meta"><span>pipeline <code>{escape(run.pipeline_id)}</code></span>'
            f'<span>state <span class="state {escape(run.state)}" id="run-state">{escape(run.state)}</span></span>'
            f"<span>started {escape(_when(run.started))}</span>"
            f"<span>duration {escape(fmt.duration(run.duration))}</span>"
            f"<span>{done}/{len(run.stages)} stages complete</span><span>report made {escape(_when(now))}</span></div>"
            + "".join(f'<p class="note">{escape(n)}</p>' for n in run.notes))
    body = [head, "<h2>Stages</h2>", f'<div class="scroll">{dag_svg.render(run)}</div>',
            "<h2>Timeline</h2>",
            f'<p class="meta">peak parallelism: <b id="peak-parallelism">{peak}</b> stage(s) at once</p>',
            f'<div class="scroll">{timeline}</div>', _stage_table(run)]
    evals = [_evaluation(s.id, s.outputs) for s in run.stages if "metrics_json" in s.outputs]
    body.append('<h2>Ground-truth scores</h2>')
    body.append("".join(evals) if evals else '<p class="empty">no evaluate stage in this pipeline</p>')
    sections = [("Sample frames", "frames", "frames_jsonl"), ("Clusters", "clusters", "contact_sheets_dir"),
                ("Dataset sample", "dataset", "metadata_jsonl")]
    for heading, kind, key in sections:
        stages = [s for s in run.stages if key in s.outputs]
        body.append(f'<h2>{heading}</h2><section id="{kind}">')
        if not stages:
            body.append(f'<p class="empty">no stage published <code>{key}</code></p>')
        for s in stages:
            if kind == "frames":
                pics, cls, alpha = media.sample_frames(s.outputs, max_frames), "frame", False
            elif kind == "clusters":
                pics, cls, alpha = media.contact_sheets(s.outputs), "sheet", False
            else:
                pics, cls, alpha = media.dataset_samples(s.outputs, max_dataset_samples), "sample", True
            extra = ""
            if kind == "dataset":
                concepts = s.outputs.get("concepts") or {}
                extra = " · ".join(f"{escape(n)}: {c.get('images')} images × {c.get('repeats')} repeats"
                                   for n, c in sorted(concepts.items()))
            body.append(f'<h3>{escape(s.id)}</h3>' + (f'<p class="meta">{extra}</p>' if extra else "")
                        + (_figures(pics, cls, alpha) if pics else '<p class="empty">no images found</p>'))
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\" data-images-loaded=\"pending\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><main>" + "".join(body)
            + f"</main><script>{JS}</script></body></html>\n")
