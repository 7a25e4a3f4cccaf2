"""The report page: header, DAG, timeline, stage table, batch items, ground-truth scores, scenes
(filmstrip, detector score curve) and sample frames, clusters (size chart, contact sheets), a
dataset sample and the audio (player, speech spans, transcript, cues); a section with nothing to
show is left out. Everything inline (CSS, SVG, images as data URIs, a few lines of JS: it marks the
page once every image has decoded, `<html data-images-loaded="true">`, enlarges an image clicked,
or named by the URL's `#img-N`, with its file's path, and plays the audio from a span clicked)."""
from __future__ import annotations

import json
import os
import time
from html import escape
from pathlib import Path
from typing import Any

from ..engine.usage import describe as describe_usage
from ..errors import PipelineError
from ..stages.video.formats import read_scores
from . import audio, batches, charts, dag_svg, fmt, media, quality_section, timeline_svg
from .collect import RunView, StageView

MAX_ITEMS_SHOWN = 6     # items of one batch stage whose images a section shows

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;background:#f8f9fa}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
.meta{color:#495057}.meta span{margin-right:18px}.note{color:#862e9c}
.state{display:inline-block;padding:1px 8px;border-radius:10px;background:#e9ecef}
.state.success,.state.completed{background:#b7e4c7}.state.failed,.state.interrupted{background:#ff8787}.state.running{background:#ffe066}
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
.batch .count{margin-right:4px}tr:target{outline:2px solid #f08c00}
.filmstrip{display:flex;gap:4px;overflow-x:auto;padding-bottom:4px}.filmstrip figure{flex:0 0 auto;max-width:210px}
img.zoom{cursor:zoom-in}.chart text{font-size:12px}.chart .chart-num{fill:#495057;font-size:11px}
.audio-timeline .span{cursor:pointer}.segment,.cue{cursor:pointer}.segment .t{color:#868e96;font-size:12px}
audio.player{width:100%;max-width:960px}.path code{color:#495057}
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);z-index:10;padding:24px;box-sizing:border-box;
 flex-direction:column;align-items:center;justify-content:center;color:#fff}
#lightbox.open{display:flex}#lightbox img{max-width:95vw;max-height:80vh;background:#fff;image-rendering:auto}
#lightbox .lb-caption{margin-top:8px}#lightbox code{color:#ffe066;word-break:break-all}#lightbox a{color:#74c0fc}

"""

JS = """
(function(){
  function check(){
    var imgs=Array.prototype.slice.call(document.querySelectorAll('main img')), broken=0;
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
(function(){
  var box=document.getElementById('lightbox');
  function show(){
    var m=/^#(img-[0-9]+)$/.exec(location.hash), img=m && document.getElementById(m[1]);
    if(!img){ box.className=''; return; }
    var big=box.querySelector('img') || box.insertBefore(document.createElement('img'), box.firstChild);
    var fig=img.closest('figure');
    big.alt='enlarged: '+img.alt;
    big.onerror=function(){ big.onerror=null; big.src=img.src; };
    big.src=img.getAttribute('data-full');
    box.querySelector('.lb-caption').textContent=fig ? fig.textContent : '';
    box.querySelector('code').textContent=img.getAttribute('data-path');
    box.querySelector('a').setAttribute('href', img.getAttribute('data-full'));
    box.setAttribute('data-image', img.id);
    box.className='open';
  }
  document.addEventListener('click', function(e){
    var t=e.target;
    if(t.classList && t.classList.contains('zoom')){ location.hash=t.id; return; }
    if(t.closest && t.closest('#lightbox') && t.tagName!=='A'){ history.replaceState(null,'',' '); show(); return; }
    var seek=t.closest && t.closest('[data-seek]'), block=seek && seek.closest('.audio-block');
    var player=block && block.querySelector('audio');
    if(player){ player.currentTime=parseFloat(seek.getAttribute('data-seek')); player.play(); }
  });
  window.addEventListener('hashchange', show);
  show();
  Array.prototype.forEach.call(document.querySelectorAll('audio'), function(a){
    function ready(){ a.setAttribute('data-loaded-duration', a.duration.toFixed(3)); }
    if(a.readyState>=1){ ready(); } else { a.addEventListener('loadedmetadata', ready); }
  });
})();
"""

LIGHTBOX = ('<div id="lightbox" role="dialog" aria-label="enlarged image">'
            '<div class="lb-caption"></div><div><code></code> · <a target="_blank">open the file</a></div></div>')


def _scenes(s: StageView, figures: _Figures) -> str:
    """A frame_extraction output's filmstrip (one frame per scene) over the detector's score curve."""
    scenes = media.scene_rows(s.outputs)
    strip = media.filmstrip(s.outputs, scenes) if len(scenes) > 1 else []
    scores: list[tuple[int, float]] = []
    if s.outputs.get("scene_scores_csv"):
        try:
            scores = read_scores(s.outputs["scene_scores_csv"])
        except PipelineError:
            scores = []
    cuts = [c for c in s.outputs.get("cuts") or [] if isinstance(c, int)]
    threshold = s.outputs.get("detector_threshold")
    curve = charts.score_curve(scores, cuts, threshold if isinstance(threshold, (int, float)) else None,
                               [(r.start_frame, r.end_frame) for r in scenes], s.outputs.get("fps"))
    if not strip and not curve:
        return ""
    detector = s.outputs.get("detector")
    what = f'<p class="meta">{len(scenes)} scene(s)' + (f", {escape(str(detector))} detector" if detector else "") \
        + (f", {len(cuts)} cut(s)" if curve else "") + "</p>"
    return what + (figures(strip, "scene", strip=True) if strip else "") \
        + (f'<div class="scroll">{curve}</div>' if curve else "")


def _notes(notes: list[str]) -> str:
    return "".join(f'<p class="meta">{escape(n)}</p>' for n in notes)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "–"


class _Figures:
    """Figures of one page: every image gets an id (`img-N`; the page's URL with `#img-N` shows it
    enlarged), its file's path and a link to the original relative to the page (`data-full`)."""

    def __init__(self, base: str | os.PathLike | None):
        self.base = base
        self.count = 0

    def __call__(self, pics: list[media.Picture], cls: str, alpha: bool = False, strip: bool = False) -> str:
        items = []
        for p in pics:
            n = self.count
            self.count += 1
            items.append(f'<figure class="{cls}"><img id="img-{n}" class="zoom{" alpha" if alpha else ""}" '
                         f'src="{p.uri}" width="{p.width}" height="{p.height}" alt="{escape(Path(p.source).name)}" '
                         f'title="{escape(p.source)}" data-path="{escape(os.path.abspath(p.source))}" '
                         f'data-full="{escape(fmt.href(p.source, self.base))}">'
                         f'<figcaption class="caption">{escape(p.caption)}</figcaption></figure>')
        return f'<div class="{"filmstrip" if strip else "grid"}">' + "".join(items) + "</div>"


def _stage_table(run: RunView) -> str:
    rows = [("<table id=\"stages\"><tr><th>stage</th><th>type</th><th>state</th><th>duration</th><th>attempts</th>"
            "<th>key outputs</th><th>metrics</th><th>resources used</th></tr>")]
    for s in run.stages:
        outs = ", ".join(f"{k}={v}" for k, v in fmt.key_outputs(s.outputs, limit=6))
        mets = ", ".join(f"{k}={fmt.number(v)}" for k, v in sorted(s.metrics.items())
                         if isinstance(v, (int, float, bool)))
        used = describe_usage(s.usage) if s.usage else ""
        err = f'<div class="note">{escape(s.error)}</div>' if s.error else ""
        retry = f" ({s.retries} retr{'y' if s.retries == 1 else 'ies'})" if s.retries else ""
        name = (f'<a href="#items-{escape(s.id)}"><b>{escape(s.id)}</b></a>' if s.items is not None
                else f"<b>{escape(s.id)}</b>")
        rows.append(f'<tr data-stage="{escape(s.id)}"><td>{name}</td><td>{escape(s.type or "?")}</td>'
                    f'<td><span class="state {escape(s.state.replace(" ", "-"))}">{escape(s.state)}</span>{err}</td>'
                    f'<td class="num">{escape(fmt.duration(s.duration))}</td>'
                    f'<td class="num">{escape(str(s.attempts or ""))}{escape(retry)}</td>'
                    f"<td>{escape(outs)}</td><td>{escape(mets)}</td><td>{escape(used)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


_SCORE_KEYS = {
    "scene_cuts": ("Scene cuts", ["precision", "recall", "f1", "true_positives", "false_positives",
                                  "false_negatives", "tolerance"]),
    "masks": ("Instance masks", ["mean_iou", "mean_iou_all", "precision", "recall", "matched", "missed",
                                 "false_positives", "frames", "poor_iou", "poor", "poor_share", "min_iou"]),
    "dataset": ("Dataset crops", ["crops", "bad", "bad_share", "poor_iou", "poor", "multi", "background",
                                  "bad_files"]),
    "clusters": ("Identity clusters", ["ari", "ari_noise_as_singletons", "purity", "solo_purity", "noise_fraction",
                                       "clusters", "identities", "labelled", "unlabelled", "multi_crops",
                                       "multi_flagged", "multi_flagged_wrongly", "background_crops", "flagged_crops",
                                       "clusters_mostly_multi", "clusters_mostly_background", "junk_clusters",
                                       "multi_clusters"]),
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
        cells = "".join(f"<tr><th>{escape(f)}</th><td class=\"num\">{escape(_cell(block[f]))}</td></tr>"
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


def publishers(run: RunView, key: str) -> tuple[list[StageView], list[str]]:
    """The stages and items whose outputs have `key`; of a batch stage at most `MAX_ITEMS_SHOWN`
    items, spread over its items, and a note naming how many more there are."""
    found: list[StageView] = []
    notes: list[str] = []
    for s in run.stages:
        if s.items is None:
            if key in s.outputs:
                found.append(s)
            continue
        having = [i for i in s.items if key in i.outputs]
        found.extend(media.spread(having, MAX_ITEMS_SHOWN))
        if len(having) > MAX_ITEMS_SHOWN:
            notes.append(f"{s.id}: {MAX_ITEMS_SHOWN} of {len(having)} items shown")
    return found, notes


def _cell(value: Any) -> str:
    return (", ".join(map(str, value)) or "none") if isinstance(value, list) else fmt.number(value)


def render_html(run: RunView, *, title: str | None = None, max_frames: int = 12, max_dataset_samples: int = 16,
                now: float | None = None, base: str | os.PathLike | None = None) -> str:
    """The page. `base`: the folder the page is written to, for relative links to local files."""
    now = now or time.time()
    title = title or f"{run.name} — pipeline report"
    done = sum(1 for s in run.stages if s.state in ("success", "up to date"))
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
            f'<div class="scroll">{timeline}</div>', _stage_table(run), batches.section(run, base)]
    judged, notes = publishers(run, "quality_summary")
    if judged:
        body.append('<h2>Quality</h2>' + _notes(notes) + quality_section.render(judged))
    scored, notes = publishers(run, "metrics_json")
    if scored:
        body.append('<h2>Ground-truth scores</h2><section id="scores">' + _notes(notes)
                    + "".join(_evaluation(s.label, s.outputs) for s in scored) + "</section>")
    figures = _Figures(base)
    sections = [("Scenes and sample frames", "frames", "frames_jsonl"), ("Clusters", "clusters", "contact_sheets_dir"),
                ("Dataset sample", "dataset", "metadata_jsonl")]
    for heading, kind, key in sections:
        stages, notes = publishers(run, key)
        if not stages:
            continue                    # a section with nothing to show is left out
        body.append(f'<h2>{heading}</h2><section id="{kind}">' + _notes(notes))
        for s in stages:
            extra = ""
            if kind == "frames":
                pics, cls, alpha = media.sample_frames(s.outputs, max_frames), "frame", False
                extra = _scenes(s, figures)
            elif kind == "clusters":
                pics, cls, alpha = media.contact_sheets(s.outputs), "sheet", False
                extra = charts.cluster_bars(s.outputs.get("cluster_sizes") or {}, s.outputs.get("noise_count"))
            else:
                pics, cls, alpha = media.dataset_samples(s.outputs, max_dataset_samples), "sample", True
                concepts = s.outputs.get("concepts") or {}
                extra = '<p class="meta">' + " · ".join(
                    f"{escape(n)}: {c.get('images')} images × {c.get('repeats')} repeats"
                    for n, c in sorted(concepts.items())) + "</p>" if concepts else ""
            if not pics and not extra:
                continue
            body.append(f'<div class="{kind}-block" data-stage="{escape(s.label)}"><h3>{escape(s.label)}</h3>'
                        + (f'<div class="scroll">{extra}</div>' if extra.startswith("<svg") else extra)
                        + (figures(pics, cls, alpha) if pics else "") + "</div>")
        body.append("</section>")
    body.append(audio.section(run, base))
    body.append(LIGHTBOX)
    return ("<!DOCTYPE html>\n<html lang=\"en\" data-images-loaded=\"pending\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><main>" + "".join(body)
            + f"</main><script>{JS}</script></body></html>\n")
