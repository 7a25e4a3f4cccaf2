"""Quality gates of single character crops: what a crop is, measured, and the flags that say why it
is not a clean picture of one whole character.

`measure_crop` reads the RGBA crop (alpha = the instance mask) with its `instances.jsonl` record;
`crop_flags` turns the measures into flags:

- `small`: the mask covers less than `min_area_share` of the frame, or the longer side of its box
  is under `min_side` pixels: too little of a character to train on (a dataset would have to
  upscale it);
- `border`: the mask runs along a frame edge for at least `border_share` of the box's side on that
  edge (and 3 pixels): the character is cut off by the frame;
- `fragment`: not one whole figure: solidity (mask area / convex hull area) under
  `min_solidity`, extent (mask area / box area) under `min_extent`, a strip (width / height outside
  [1 / `max_aspect`, `max_aspect`]), or a mask in pieces whose largest holds under
  `min_largest_share` of it (and no two large pieces, which is `multi`);
- `multi`: several characters grouped into one instance: two or more large pieces (each at least
  `multi_part_share` of the largest) in a crop that is neither small nor on the border, or, for
  characters touching or overlapping (one piece), a mask whose left and right are two palettes
  (`palette_split` at least `multi_palette_split`) in a crop that is not small, or, whatever the
  arrangement (one in front of the other too), a crop holding the colours of two characters seen
  whole elsewhere in the run (`known_pair` at least `multi_known_pair`, `two_known_characters`) in
  a crop that is not small. Clustering adds `multi` to crops whose colours are a mixture of two
  identities (`cluster_quality.py`);
- `blank`: the pixels under the mask are flat (luma standard deviation under `blank_std`) or black
  (mean luma under `black_luma`), or the whole frame is: a fade, a flash, a strip of sky;
- `static_region`: at least `max_static_share` of the mask lies in regions that stay put on the
  background while the character moves (the record's `static_share`, measured by the background
  model over the shot's frames): background carried along, such as a house a slow character walks
  in front of.

`assess_instances` flags every instance of a segmentation run (measuring each crop, as the stage
wrote it or read from its file, then comparing the palettes of all of them for `known_pair`, and, for the
blank-frame check, each frame with an instance covering at least `LARGE_SHARE` of it: in a fade or
a flash the background model finds the whole frame) and returns the records with their flags and the
stage's `quality.json` content. Flags are computed from the crops' pixels (lossless files), so a
resumed run and a fresh one flag alike. A run with more than `MOSTLY_FLAGGED` of its crops flagged is mostly junk
(`mostly_flagged`): the stage says so, and stops under `on_low_quality: fail`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .formats import InstanceRecord

if TYPE_CHECKING:
    import numpy as np

FLAGS = ("small", "border", "fragment", "multi", "blank", "static_region")
LARGE_SHARE = 0.25        # an instance this share of its frame gets the blank-frame check
MOSTLY_FLAGGED = 0.5      # more than this share of a run's crops flagged: the run is mostly junk
QUALITY = "quality.json"
MAX_STATIC_SHARE = 0.1    # of a crop's mask in regions fixed on the background: it carries background


@dataclass(frozen=True)
class CropThresholds:
    min_area_share: float = 0.002     # of the frame's area
    min_side: int = 48                # pixels, the box's longer side
    border_share: float = 0.1         # of the box side along a frame edge
    min_solidity: float = 0.25
    min_extent: float = 0.12
    max_aspect: float = 5.0
    min_largest_share: float = 0.5
    multi_part_share: float = 0.3
    multi_palette_split: float = 0.45
    multi_known_pair: float = 0.2
    blank_std: float = 6.0            # luma, 0..255
    black_luma: float = 12.0
    max_static_share: float = MAX_STATIC_SHARE

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CropThresholds:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


# the segmentation stage's `quality` config: one key per threshold, defaults as above
SCHEMA = {"type": "dict", "default": {}, "schema": {
    "min_area_share": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.min_area_share},
    "min_side": {"type": "integer", "min": 0, "max": 100_000, "default": CropThresholds.min_side},
    "border_share": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.border_share},
    "min_solidity": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.min_solidity},
    "min_extent": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.min_extent},
    "max_aspect": {"type": "number", "min": 1, "max": 1000, "default": CropThresholds.max_aspect},
    "min_largest_share": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.min_largest_share},
    "multi_part_share": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.multi_part_share},
    "multi_palette_split": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.multi_palette_split},
    "multi_known_pair": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.multi_known_pair},
    "blank_std": {"type": "number", "min": 0, "max": 255, "default": CropThresholds.blank_std},
    "black_luma": {"type": "number", "min": 0, "max": 255, "default": CropThresholds.black_luma},
    "max_static_share": {"type": "number", "min": 0, "max": 1, "default": CropThresholds.max_static_share},
}}


def luma(rgb: np.ndarray) -> np.ndarray:
    import numpy as np
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def frame_is_blank(rgb: np.ndarray, t: CropThresholds) -> bool:
    """A black or flat frame (a fade, a flash): every instance found in it is an artefact."""
    y = luma(rgb[::4, ::4])
    return bool(y.std() < t.blank_std or y.mean() < t.black_luma)


SPLIT_CUTS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)   # cut positions across the mask's width
RARE = 0.01               # a colour under this share of one side's pixels is not that side's
MIN_SIDE = 0.25           # a cut leaving less than this share of the pixels on one side is not tried


def _colour_bins(rgb: np.ndarray) -> np.ndarray:
    """The colour bin (of 512: 8 levels a channel) of each pixel (N x 3, uint8)."""
    import numpy as np
    q = rgb.astype(np.int32) >> 5
    return (q[:, 0] << 6) | (q[:, 1] << 3) | q[:, 2]


def _palette(rgb: np.ndarray) -> np.ndarray:
    """Share of the pixels (N x 3, uint8) in each of 512 colour bins."""
    import numpy as np
    return np.bincount(_colour_bins(rgb), minlength=512) / max(1, len(rgb))


def palette_split(rgb: np.ndarray, mask: np.ndarray) -> float:
    """How far the left and right parts of the mask's largest piece are two palettes: over vertical
    cuts across its middle (`SPLIT_CUTS` of its width, each side keeping `MIN_SIDE` of its pixels),
    the most, over cuts, of the smaller of the two sides' shares of pixels in colours the other side
    hardly has (under `RARE`). A character's left and right hold the same colours (arms, legs, both
    sides of head and body): low; two characters side by side or overlapping, each with its own
    colours: high. The outline (a pixel wide, blended with the background) is left out."""
    import cv2
    import numpy as np
    m8 = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m8, connectivity=8)
    if n < 2:
        return 0.0
    main = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    inner = cv2.erode(main.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    cols = np.flatnonzero(inner.any(axis=0))
    total = int(np.count_nonzero(inner))
    if cols.size < 8:
        return 0.0
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    # colour counts of each column's pixels, summed between the cuts: one pass over the pixels
    cuts = [x0 + int(t * (x1 - x0)) for t in SPLIT_CUTS]
    ys, xs = np.nonzero(inner)
    per_column = np.bincount(xs * 512 + _colour_bins(rgb[ys, xs]),
                             minlength=inner.shape[1] * 512).reshape(inner.shape[1], 512)
    whole = per_column.sum(axis=0)
    left_of, left, done = {}, np.zeros(512, np.int64), 0
    for x in sorted(set(cuts)):
        left = left + per_column[done:x].sum(axis=0)
        left_of[x], done = left, x
    best = 0.0
    for x in cuts:
        left = left_of[x]
        right = whole - left
        n_left, n_right = int(left.sum()), int(right.sum())
        if min(n_left, n_right) < max(50, MIN_SIDE * total):
            continue
        pl, pr = left / n_left, right / n_right
        best = max(best, min(float(pl[pr < RARE].sum()), float(pr[pl < RARE].sum())))
    return best


PART_CONTAINED = 0.8      # a whole crop is a part of a crop when this share of its pixels is in the crop's colours
PARTS_COVER = 0.8         # two parts explain a crop when this share of its pixels is in their colours
KNOWN_PAIR_ROUNDS = 3    # passes of `two_known_characters`, each without the crops the last one flagged
MAX_PARTS = 256           # distinct candidate parts compared per crop (the most covering ones)


def crop_palette(rgba: np.ndarray) -> np.ndarray:
    """The palette (`_palette`) of the pixels under the mask, its one-pixel outline left out."""
    import cv2
    import numpy as np
    mask = (rgba[..., 3] >= 128).astype(np.uint8)
    inner = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0
    return _palette(rgba[..., :3][inner]) if inner.any() else np.zeros(512)


def two_known_characters(palettes: np.ndarray, whole: Sequence[bool]) -> list[tuple[float, int, int]]:
    """For each crop, how far it holds two characters seen whole in other crops: (score, part a,
    part b), parts -1 when none. A part is a crop with no flag whose pixels are at least
    `PART_CONTAINED` in the crop's colours (a colour: a `_palette` bin holding `RARE` of the
    pixels or more); a pair of parts whose colours hold at least `PARTS_COVER` of the crop's
    pixels scores the smaller of the shares of the crop's pixels in colours of one part only.
    Other views of the same character bring the same colours (their own shares near 0); two
    characters, one in front of the other or side by side, each bring their own (both high). Blind
    to a character never seen whole alone in the run, and to two characters of the same colours."""
    import numpy as np
    palettes = np.asarray(palettes, np.float64)
    present = palettes >= RARE
    parts = np.flatnonzero(np.asarray(whole, bool))
    part_palettes = palettes[parts].T
    out: list[tuple[float, int, int]] = []
    contained = np.zeros((0, len(parts)))
    for c in range(len(palettes)):
        if c % 256 == 0:          # shares of each part's pixels in the colours of the next 256 crops
            contained = present[c:c + 256].astype(np.float64) @ part_palettes
        w = palettes[c]
        own = present[c]
        cand = parts[(parts != c) & (contained[c % 256] >= PART_CONTAINED)]
        if len(cand) < 2:
            out.append((0.0, -1, -1))
            continue
        # the score of a pair depends only on which of the crop's colours each part has
        q, first = np.unique(present[cand][:, own], axis=0, return_index=True)
        cover = q.astype(np.float64) @ w[own]
        keep = np.argsort(-cover, kind="stable")[:MAX_PARTS]
        q, first, cover = q[keep], cand[first[keep]], cover[keep]
        shared = (q * w[own]) @ q.T.astype(np.float64)
        only = cover[:, None] - shared                     # [a, b]: the crop's share in colours of a only
        score = np.minimum(only, only.T)
        score[cover[:, None] + cover[None, :] - shared < PARTS_COVER] = 0.0
        np.fill_diagonal(score, 0.0)
        a, b = np.unravel_index(int(np.argmax(score)), score.shape)
        out.append((float(score[a, b]), int(first[a]), int(first[b])) if score[a, b] > 0 else (0.0, -1, -1))
    return out


def measure_crop(rgba: np.ndarray, rec: InstanceRecord) -> dict[str, float]:
    """The measures of one crop: area share of the frame, box sides, border run, solidity,
    extent, pieces of the mask, luma statistics under the mask, and the record's static share."""
    import cv2
    import numpy as np
    mask = rgba[..., 3] >= 128
    area = int(np.count_nonzero(mask))
    fw, fh = rec.frame_size or (rgba.shape[1], rgba.shape[0])
    x, y, w, h = rec.bbox
    out: dict[str, float] = {"area_share": area / max(1, fw * fh), "width": w, "height": h,
                             "aspect": w / max(1, h)}
    if rec.static_share is not None:
        out["static_share"] = rec.static_share
    # runs along the frame's edges, as a share of the box side on that edge
    cx, cy, cw, ch = rec.crop_box
    runs = []
    if cx == 0:
        runs.append(np.count_nonzero(mask[:, 0]) / max(1, h))
    if cx + cw >= fw:
        runs.append(np.count_nonzero(mask[:, -1]) / max(1, h))
    if cy == 0:
        runs.append(np.count_nonzero(mask[0, :]) / max(1, w))
    if cy + ch >= fh:
        runs.append(np.count_nonzero(mask[-1, :]) / max(1, w))
    out["border_run"] = max(runs) if runs and max(runs) * min(w, h) >= 3 else 0.0
    out["extent"] = area / max(1, w * h)
    if area:
        m8 = mask.astype(np.uint8)
        contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(np.vstack(contours))
        out["solidity"] = area / max(1.0, cv2.contourArea(hull))
        n, _, stats, _ = cv2.connectedComponentsWithStats(m8, connectivity=8)
        parts = sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA]), reverse=True)
        out["pieces"] = len(parts)
        out["largest_share"] = parts[0] / area
        out["second_part"] = parts[1] / parts[0] if len(parts) > 1 else 0.0
        y_ = luma(rgba[..., :3])[mask]
        out["luma_mean"], out["luma_std"] = float(y_.mean()), float(y_.std())
        out["palette_split"] = palette_split(rgba[..., :3], mask)
    else:
        out.update(solidity=0.0, pieces=0, largest_share=0.0, second_part=0.0, luma_mean=0.0, luma_std=0.0,
                   palette_split=0.0)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def crop_flags(m: Mapping[str, float], t: CropThresholds) -> list[str]:
    """The flags of one crop's measures, in `FLAGS` order."""
    flags = set()
    if m["area_share"] < t.min_area_share or max(m["width"], m["height"]) < t.min_side:
        flags.add("small")
    if m["border_run"] >= t.border_share:
        flags.add("border")
    # pieces of a speck, or of a character cut by the frame's edge, say nothing of how many there are
    multi = ((m["second_part"] >= t.multi_part_share and not flags)
             or (m.get("palette_split", 0.0) >= t.multi_palette_split and "small" not in flags)
             or (m.get("known_pair", 0.0) >= t.multi_known_pair and "small" not in flags))
    if multi:
        flags.add("multi")
    if (m["solidity"] < t.min_solidity or m["extent"] < t.min_extent
            or not 1 / t.max_aspect <= m["aspect"] <= t.max_aspect
            or (m["largest_share"] < t.min_largest_share and not multi)):
        flags.add("fragment")
    if m["luma_std"] < t.blank_std or m["luma_mean"] < t.black_luma:
        flags.add("blank")
    if m.get("static_share", 0.0) >= t.max_static_share:
        flags.add("static_region")
    return [f for f in FLAGS if f in flags]


def flag_crops(measures: Sequence[dict[str, float]], palettes: Sequence[np.ndarray], t: CropThresholds,
               blank_frame: Sequence[bool] | None = None) -> tuple[list[list[str]], list[tuple[float, int, int]]]:
    """The flags of a run's crops: each crop's own (`crop_flags`, plus `blank` for a crop of a blank
    frame), then `known_pair` (set in each measures dict) against the crops left unflagged, and the
    flags again. Returns the flags and `two_known_characters`' (score, part, part) per crop."""
    blank_frame = blank_frame or [False] * len(measures)

    def flags_of(m: Mapping[str, float], blank: bool) -> list[str]:
        flags = crop_flags(m, t)
        return [f for f in FLAGS if f in {*flags, "blank"}] if blank else flags
    flags = [flags_of(m, b) for m, b in zip(measures, blank_frame)]
    pairs: list[tuple[float, int, int]] = [(0.0, -1, -1)] * len(measures)
    # a crop found to hold two characters is no part of another: again without it (a few rounds)
    for _ in range(KNOWN_PAIR_ROUNDS):
        whole = [not f for f in flags]
        pairs = two_known_characters(palettes, whole) if measures else []
        for m, (score, _, _) in zip(measures, pairs):
            m["known_pair"] = round(score, 4)
        flags = [flags_of(m, b) for m, b in zip(measures, blank_frame)]
        if whole == [not f for f in flags]:
            break
    return flags, pairs


def crop_measures(rgba: np.ndarray, rec: InstanceRecord) -> tuple[dict[str, float], np.ndarray]:
    """What `assess_instances` needs of one crop: its measures (`measure_crop`) and its palette
    (`crop_palette`)."""
    return measure_crop(rgba, rec), crop_palette(rgba)


def assess_instances(out_dir: Path, records: list[InstanceRecord], read_frame: Callable[[InstanceRecord], np.ndarray],
                     thresholds: CropThresholds, *, progress: Callable[[int, int], None] | None = None,
                     measured: Mapping[str, tuple[dict[str, float], np.ndarray]] | None = None,
                     ) -> tuple[list[InstanceRecord], dict[str, Any]]:
    """Every record with its flags, and the `quality.json` content of the run. `read_frame(rec)`
    returns the RGB frame of a record (read once per frame with a large instance). `measured`
    holds `crop_measures` of crops measured as they were written (by file); the other crops are
    read from their files (the same pixels: the crops are lossless)."""
    import numpy as np
    from PIL import Image
    blank_frames: dict[int, bool] = {}
    measures: list[dict[str, float]] = []
    palettes = []
    in_blank: list[bool] = []
    for i, rec in enumerate(records, 1):
        known = (measured or {}).get(rec.file)
        if known is None:
            with Image.open(out_dir / rec.file) as im:
                known = crop_measures(np.asarray(im.convert("RGBA")), rec)
        m = dict(known[0])
        measures.append(m)
        palettes.append(known[1])
        # an instance covering a quarter of the frame or more may be a fade or a flash itself: its
        # frame is read (once); elsewhere the crop's own blank check speaks for the frame
        if m["area_share"] >= LARGE_SHARE and rec.frame_index not in blank_frames:
            blank_frames[rec.frame_index] = frame_is_blank(read_frame(rec), thresholds)
        in_blank.append(bool(blank_frames.get(rec.frame_index)))
        if progress is not None:
            progress(i, len(records))
    all_flags, pairs = flag_crops(measures, palettes, thresholds, in_blank)
    flagged: list[InstanceRecord] = []
    crops: list[dict[str, Any]] = []
    for rec, m, flags, (_, a, b) in zip(records, measures, all_flags, pairs):
        flagged.append(replace(rec, flags=tuple(flags)))
        entry: dict[str, Any] = {"file": rec.file, "flags": flags, "measures": m}
        if a >= 0 and m["known_pair"] >= thresholds.multi_known_pair:
            entry["known_pair_of"] = [records[a].file, records[b].file]
        crops.append(entry)
    report = crop_report(flagged, thresholds)
    report["blank_frames"] = sorted(f for f, blank in blank_frames.items() if blank)
    report["by_crop"] = crops
    return flagged, report


def crop_report(records: Iterable[InstanceRecord], thresholds: CropThresholds | None = None) -> dict[str, Any]:
    """Counts of flagged crops by flag, and the one-line summary the CLI prints."""
    records = list(records)
    counts = Counter(f for r in records for f in r.flags)
    flagged = sum(1 for r in records if r.flags)
    report: dict[str, Any] = {"crop_count": len(records), "flagged": flagged,
                              "flags": {f: counts[f] for f in FLAGS if counts[f]},
                              "summary": summary_line(len(records), flagged, counts)}
    if thresholds is not None:
        report["thresholds"] = {f.name: getattr(thresholds, f.name) for f in fields(thresholds)}
    return report


def mostly_flagged(report: Mapping[str, Any]) -> bool:
    """More than `MOSTLY_FLAGGED` of the crops are flagged: the segmentation found mostly debris."""
    return report["flagged"] > MOSTLY_FLAGGED * report["crop_count"]


def summary_line(total: int, flagged: int, counts: Mapping[str, int]) -> str:
    detail = ", ".join(f"{f} {counts[f]}" for f in FLAGS if counts.get(f))
    return f"{flagged} of {total} crops flagged" + (f" ({detail})" if detail else "")
