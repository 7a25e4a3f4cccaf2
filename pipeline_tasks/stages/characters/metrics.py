"""Scoring of segmentation and clustering outputs against a synthetic video's ground truth.

`instance_mask_iou(instances_jsonl, ground_truth_json, masks_dir=None, ...)`
    For every frame listed in instances.jsonl, predicted instance masks (the `mask` PNG of each
    record, placed at its `crop_box`) are matched one-to-one to the ground-truth character masks of
    that frame by maximum total IoU (Hungarian assignment); a pair counts as a match when its IoU is
    at least `match_iou` (0.5). Ground-truth characters smaller than `min_gt_area` pixels (mostly
    off-screen or hidden) are ignored: neither missed, nor able to make a prediction a false positive
    (a prediction that overlaps an ignored character by at least half of its own area is ignored too).
    Returns: `mean_iou` (mean IoU over matched pairs), `mean_iou_all` (same, with each missed
    character counted as 0), `matched`, `missed` (ground-truth characters without a match),
    `false_positives` (predictions without a match), `precision`, `recall`, `frames`, `ignored_gt`.
    Masks are compared at the ground truth's resolution (predictions are resized, nearest neighbour,
    when frames were saved smaller).
    Per instance: `poor` matched instances have an IoU under `poor_iou` (0.75: background or
    another character in the mask, or a part missing), `poor_share` of the matched, `min_iou`,
    `poor_crops` (file and IoU of each).

`dataset_scores(instances_jsonl, ground_truth_json, selection, ...)`
    The crops a training dataset holds (the rows of training_data_prep's selection.jsonl,
    `dataset.formats.read_selection`), each scored against
    its frame's true characters: `poor` (best IoU under `poor_iou`), `multi` (a second character
    covers 5 % of it),
    `background` (no character covers half of it), `bad` (any of those), `bad_share`, `bad_crops`.

`clustering_scores(clusters_jsonl, instances_jsonl, ground_truth_json, ...)`
    Each instance gets a true identity: the ground-truth character covering the largest share of the
    instance's mask pixels, provided that share is at least `label_share` (0.5); other instances
    (background, or two characters merged half and half) are `unlabelled` and left out. Over the
    labelled instances: `noise_fraction` = share with cluster -1; `ari` = adjusted Rand index of the
    clusters vs identities over the labelled, non-noise instances; `ari_noise_as_singletons` = ARI
    over all labelled instances with each noise point its own cluster; `purity` = share of non-noise
    labelled instances whose identity is their cluster's majority identity; `clusters`,
    `identities`, `labelled`, `unlabelled`. `scores_of(truth, clusters)` computes the same from an
    identity and a cluster per instance (pooled over the items of a batch by `evaluate`).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .formats import InstanceRecord, read_clusters, read_instances

POOR_IOU = 0.75      # a matched instance mask under this IoU is `poor`: background or another character in it


def _load_gt(path):
    from ..video import ground_truth
    gt = ground_truth.load(path)
    frames = {f["frame"]: f for f in gt["frames"]}
    return gt, frames


def _pred_mask(rec: InstanceRecord, masks_dir: Path, gt_w: int, gt_h: int) -> np.ndarray:
    """The full-frame boolean mask of one instance record, at the ground truth's resolution."""
    from PIL import Image
    x, y, w, h = rec.crop_box
    fw, fh = rec.frame_size or (gt_w, gt_h)
    m = np.asarray(Image.open(masks_dir / rec.mask).convert("L")) >= 128
    full = np.zeros((fh, fw), bool)
    full[y:y + h, x:x + w] = m[:h, :w]
    if (fw, fh) != (gt_w, gt_h):
        import cv2
        full = cv2.resize(full.astype(np.uint8), (gt_w, gt_h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return full


def _masks_dir(instances_jsonl: Path, masks_dir) -> Path:
    return Path(masks_dir) if masks_dir is not None else Path(instances_jsonl).parent


def instance_mask_iou(instances_jsonl_path, ground_truth_json_path, masks_dir=None, *,
                      match_iou: float = 0.5, min_gt_area: int = 200, poor_iou: float = POOR_IOU) -> dict[str, Any]:
    from scipy.optimize import linear_sum_assignment

    from ..video.ground_truth import decode_mask
    instances_jsonl_path = Path(instances_jsonl_path)
    base = _masks_dir(instances_jsonl_path, masks_dir)
    gt, gt_frames = _load_gt(ground_truth_json_path)
    W, H = gt["video"]["width"], gt["video"]["height"]
    recs = read_instances(instances_jsonl_path)
    by_frame: dict[int, list[InstanceRecord]] = defaultdict(list)
    for r in recs:
        by_frame[r.frame_index].append(r)
    # frames that were segmented, including those with no instance at all
    listed = {r.frame_index for r in recs}
    frame_list = Path(instances_jsonl_path).parent / "frames_done.json"
    if frame_list.exists():
        listed |= set(json.loads(frame_list.read_text()))
    ious: list[float] = []
    poor: list[dict[str, Any]] = []
    missed = fps = ignored = 0
    for fi in sorted(listed):
        chars = gt_frames[fi]["characters"] if fi in gt_frames else []
        gms, ign = [], []
        for c in chars:
            (gms if c["area"] >= min_gt_area else ign).append(decode_mask(c, H, W))
        ignored += len(ign)
        pms = [_pred_mask(r, base, W, H) for r in by_frame.get(fi, [])]
        if gms and pms:
            iou = np.zeros((len(gms), len(pms)))
            for i, g in enumerate(gms):
                for j, p in enumerate(pms):
                    inter = np.count_nonzero(g & p)
                    if inter:
                        iou[i, j] = inter / np.count_nonzero(g | p)
            rows, cols = linear_sum_assignment(-iou)
            pairs = [(i, j) for i, j in zip(rows, cols) if iou[i, j] >= match_iou]
        else:
            pairs = []
        ious.extend(float(iou[i, j]) for i, j in pairs)
        poor += [{"file": by_frame[fi][j].file, "iou": round(float(iou[i, j]), 4)}
                 for i, j in pairs if iou[i, j] < poor_iou]
        missed += len(gms) - len(pairs)
        used = {j for _, j in pairs}
        for j, p in enumerate(pms):
            if j in used:
                continue
            area = max(1, np.count_nonzero(p))
            if any(np.count_nonzero(p & g) * 2 >= area for g in ign):
                continue
            fps += 1
    matched = len(ious)
    total_gt = matched + missed
    return {"mean_iou": float(np.mean(ious)) if ious else 0.0,
            "mean_iou_all": float(sum(ious) / total_gt) if total_gt else 0.0,
            "matched": matched, "missed": missed, "false_positives": fps,
            "precision": matched / (matched + fps) if matched + fps else 1.0,
            "recall": matched / total_gt if total_gt else 1.0,
            "frames": len(listed), "ignored_gt": ignored,
            "poor_iou": poor_iou, "poor": len(poor), "poor_share": len(poor) / matched if matched else 0.0,
            "min_iou": float(min(ious)) if ious else 0.0, "poor_crops": sorted(poor, key=lambda p: p["file"])}


def instance_truth(instances_jsonl_path, ground_truth_json_path, masks_dir=None, *, label_share: float = 0.5,
                   multi_share: float = 0.2) -> dict[str, tuple[int | None, str]]:
    """instance file -> (true character id or None, kind). The id is the character covering the
    largest share of the mask if that share is at least `label_share` (the identity ARI and purity
    use). Kind: `multi` when two or more characters each cover at least `multi_share` of the mask
    (several characters in one crop), `single` when one covers `label_share` of it, else
    `background`."""
    from ..video.ground_truth import decode_mask
    instances_jsonl_path = Path(instances_jsonl_path)
    base = _masks_dir(instances_jsonl_path, masks_dir)
    gt, gt_frames = _load_gt(ground_truth_json_path)
    W, H = gt["video"]["width"], gt["video"]["height"]
    out: dict[str, tuple[int | None, str]] = {}
    for r in read_instances(instances_jsonl_path):
        p = _pred_mask(r, base, W, H)
        area = max(1, np.count_nonzero(p))
        shares = sorted(((np.count_nonzero(decode_mask(c, H, W) & p) / area, int(c["id"]))
                         for c in gt_frames.get(r.frame_index, {}).get("characters", [])), reverse=True)
        ident = shares[0][1] if shares and shares[0][0] >= label_share else None
        if len(shares) > 1 and shares[1][0] >= multi_share:
            out[r.file] = (ident, "multi")
        elif ident is not None:
            out[r.file] = (shares[0][1], "single")
        else:
            out[r.file] = (None, "background")
    return out


def identity_labels(instances_jsonl_path, ground_truth_json_path, masks_dir=None, *,
                    label_share: float = 0.5) -> dict[str, int | None]:
    """instance file -> true character id (or None when no character covers `label_share` of it)."""
    truth = instance_truth(instances_jsonl_path, ground_truth_json_path, masks_dir, label_share=label_share)
    return {f: ident for f, (ident, _) in truth.items()}


def clustering_scores(clusters_jsonl_path, instances_jsonl_path, ground_truth_json_path, masks_dir=None, *,
                      label_share: float = 0.5) -> dict[str, Any]:
    """ARI, purity and noise (`scores_of`), and what those scores leave out, said (`left_out`)."""
    kinds = instance_truth(instances_jsonl_path, ground_truth_json_path, masks_dir, label_share=label_share)
    records = read_clusters(clusters_jsonl_path)
    scores = scores_of({f: ident for f, (ident, _) in kinds.items()}, {r.file: r.cluster for r in records})
    scores.update(left_out(kinds, records, Path(clusters_jsonl_path).parent))
    return scores


def scores_of(truth: dict[str, int | None], clusters: dict[str, int]) -> dict[str, Any]:
    """`clustering_scores` from instance file -> true identity and instance file -> cluster (e.g.
    pooled over several items, each file prefixed by its item)."""
    from sklearn.metrics import adjusted_rand_score
    items = [(f, truth[f], c) for f, c in sorted(clusters.items()) if truth.get(f) is not None]
    unlabelled = sum(1 for f in clusters if truth.get(f) is None)
    n = len(items)
    noise = [it for it in items if it[2] == -1]
    kept = [it for it in items if it[2] != -1]
    if kept:
        ari = float(adjusted_rand_score([t for _, t, _ in kept], [c for _, _, c in kept]))
        groups: dict[int, Counter] = defaultdict(Counter)
        for _, t, c in kept:
            groups[c][t] += 1
        purity = sum(cnt.most_common(1)[0][1] for cnt in groups.values()) / len(kept)
    else:
        ari, purity = 0.0, 0.0
    singleton = [c if c != -1 else -(i + 2) for i, (_, _, c) in enumerate(items)]
    ari_all = float(adjusted_rand_score([t for _, t, _ in items], singleton)) if items else 0.0
    return {"ari": ari, "purity": float(purity), "noise_fraction": len(noise) / n if n else 0.0,
            "ari_noise_as_singletons": ari_all, "clusters": len({c for *_, c in kept}),
            "identities": len({t for _, t, _ in items}), "labelled": n, "unlabelled": unlabelled}


def left_out(kinds: dict[str, tuple[int | None, str]], records: list, clusters_dir: Path) -> dict[str, Any]:
    """What ARI and purity leave out, said: crops of several characters (`multi_crops`, how many the
    pipeline flagged `multi`, and how many it flagged wrongly), crops of no character, the crops the
    pipeline flagged, clusters made mostly of several-character or background crops, and the
    clusters the clustering stage judged junk or multi (its quality.json). `solo_purity` is purity
    over every clustered crop, a crop of several characters or of none counting as a wrong one."""
    clusters = {r.file: r.cluster for r in records}
    flags = {r.file: r.flags for r in records}
    kind_of = {f: kinds.get(f, (None, "background"))[1] for f in clusters}
    multi = [f for f, k in kind_of.items() if k == "multi"]
    by_cluster: dict[int, Counter] = defaultdict(Counter)
    for f, c in clusters.items():
        if c != -1:
            by_cluster[c][("single", kinds[f][0]) if kind_of[f] == "single" else (kind_of[f], None)] += 1
    clustered = sum(sum(cnt.values()) for cnt in by_cluster.values())
    solo_hits = 0
    for cnt in by_cluster.values():
        singles = Counter({k: v for k, v in cnt.items() if k[0] == "single"})
        solo_hits += singles.most_common(1)[0][1] if singles else 0
    mostly: Counter = Counter()
    for cnt in by_cluster.values():
        top = cnt.most_common(1)[0][0][0]
        if top != "single":
            mostly[top] += 1
    verdicts = _cluster_verdicts(clusters_dir)
    return {"solo_purity": solo_hits / clustered if clustered else 0.0,
            "multi_crops": len(multi), "multi_flagged": sum(1 for f in multi if "multi" in flags[f]),
            "multi_flagged_wrongly": sum(1 for f, k in kind_of.items() if k != "multi" and "multi" in flags[f]),
            "background_crops": sum(1 for k in kind_of.values() if k == "background"),
            "flagged_crops": sum(1 for f in flags.values() if f),
            "clusters_mostly_multi": mostly["multi"], "clusters_mostly_background": mostly["background"],
            "junk_clusters": sorted(k for k, v in verdicts.items() if v == "junk"),
            "multi_clusters": sorted(k for k, v in verdicts.items() if v == "multi")}


def _cluster_verdicts(clusters_dir: Path) -> dict[str, str]:
    """Cluster name -> verdict from the clustering stage's quality.json beside clusters.jsonl."""
    try:
        data = json.loads((clusters_dir / "quality.json").read_text(encoding="utf-8"))
        return {str(k): str(v["verdict"]) for k, v in data["clusters"].items() if v.get("verdict") != "noise"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}

def box_match(instances_jsonl_path, ground_truth_json_path, *, match_iou: float = 0.5,
              min_gt_area: int = 200) -> dict[str, Any]:
    """Boxes against the ground truth's boxes, frame by frame: predicted instances are matched
    one-to-one to the fully opaque true characters of at least `min_gt_area` pixels by maximum total
    box IoU (Hungarian); a pair with IoU >= `match_iou` matches. Returns `instances`, `matched`,
    `instance_match` (matched / instances: the share of instances that are a true character),
    `character_recall` (matched / true characters) and `identity` (instance file -> character id
    of its match)."""
    from scipy.optimize import linear_sum_assignment
    instances_jsonl_path = Path(instances_jsonl_path)
    _, gt_frames = _load_gt(ground_truth_json_path)
    recs = read_instances(instances_jsonl_path)
    by_frame: dict[int, list[InstanceRecord]] = defaultdict(list)
    for r in recs:
        by_frame[r.frame_index].append(r)
    listed = {r.frame_index for r in recs}
    frame_list = instances_jsonl_path.parent / "frames_done.json"
    if frame_list.exists():
        listed |= set(json.loads(frame_list.read_text()))

    def iou(a, b) -> float:
        ax, ay, aw, ah = a
        bx, by, bw, bh = b
        inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
        return inter / (aw * ah + bw * bh - inter) if inter else 0.0

    matched = truths = 0
    identity: dict[str, int] = {}
    for fi in sorted(listed):
        chars = [c for c in gt_frames.get(fi, {}).get("characters", [])
                 if c["area"] >= min_gt_area and c["opacity"] == 1]
        preds = by_frame.get(fi, [])
        truths += len(chars)
        if not chars or not preds:
            continue
        m = np.array([[iou(p.bbox, c["bbox"]) for c in chars] for p in preds])
        for i, j in zip(*linear_sum_assignment(-m)):
            if m[i, j] >= match_iou:
                matched += 1
                identity[preds[i].file] = int(chars[j]["id"])
    return {"instances": len(recs), "matched": matched,
            "instance_match": matched / len(recs) if recs else 0.0,
            "character_recall": matched / truths if truths else 1.0, "identity": identity}


def dataset_scores(instances_jsonl_path, ground_truth_json_path, selection: Iterable[Mapping[str, Any]],
                   masks_dir=None, *, poor_iou: float = POOR_IOU, label_share: float = 0.5,
                   other_share: float = 0.05) -> dict[str, Any]:
    """What reached a training dataset, scored: each selected crop (the rows of training_data_prep's
    selection.jsonl, `key` = the instance file) against the true characters of its frame. A crop is
    `poor` when its mask's best IoU with a true character is under `poor_iou` (background or a
    piece of another character in it, or a part missing), `multi` when a second character covers
    `other_share` of it (a training image of one character must not show another's legs),
    `background` when none covers `label_share` of it. `bad` crops are any of those; `bad_share`
    their share of the dataset, `bad_files` and `bad_crops` which (dataset file, crop, iou, kind)."""
    from ..video.ground_truth import decode_mask
    instances_jsonl_path = Path(instances_jsonl_path)
    base = _masks_dir(instances_jsonl_path, masks_dir)
    gt, gt_frames = _load_gt(ground_truth_json_path)
    W, H = gt["video"]["width"], gt["video"]["height"]
    records = {r.file: r for r in read_instances(instances_jsonl_path)}
    selected = list(selection)
    for n, row in enumerate(selected, 1):
        if row["key"] not in records:
            raise ValueError(f"selection line {n}: crop {row['key']!r} is not in {instances_jsonl_path}")
    bad: list[dict[str, Any]] = []
    counts: Counter = Counter()
    for row in selected:
        rec = records[row["key"]]
        p = _pred_mask(rec, base, W, H)
        area = max(1, np.count_nonzero(p))
        best, shares = 0.0, []
        for c in gt_frames.get(rec.frame_index, {}).get("characters", []):
            g = decode_mask(c, H, W)
            inter = np.count_nonzero(g & p)
            shares.append(inter / area)
            if inter:
                best = max(best, inter / np.count_nonzero(g | p))
        shares.sort(reverse=True)
        if len(shares) > 1 and shares[1] >= other_share:
            kind = "multi"
        elif not shares or shares[0] < label_share:
            kind = "background"
        elif best < poor_iou:
            kind = "poor"
        else:
            continue
        counts[kind] += 1
        bad.append({"file": row.get("file_name"), "crop": rec.file, "iou": round(best, 4), "kind": kind})
    n = len(selected)
    bad.sort(key=lambda b: str(b["file"]))
    return {"crops": n, "poor_iou": poor_iou, "poor": counts["poor"], "multi": counts["multi"],
            "background": counts["background"], "bad": len(bad), "bad_share": len(bad) / n if n else 0.0,
            "bad_files": [str(b["file"]) for b in bad], "bad_crops": bad}
