"""evaluate: scene-cut F1, mask IoU and cluster ARI against a hand-built ground truth."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_tasks.errors import StageConfigError, StageInputError
from pipeline_tasks.stages.evaluate import EvaluateExecutor
from pipeline_tasks.stages.video import rle

W, H = 64, 48
# two characters, rectangles that move one pixel per frame; four frames
BOXES = {1: (4, 6, 20, 15), 2: (34, 20, 20, 15)}


def gt_box(cid: int, frame: int) -> tuple[int, int, int, int]:
    x, y, w, h = BOXES[cid]
    return x + frame, y, w, h


def write_ground_truth(root):
    frames = []
    for f in range(4):
        chars = []
        for cid in BOXES:
            x, y, w, h = gt_box(cid, f)
            chars.append({"id": cid, "name": f"c{cid}", "scene": 0, "z": cid, "opacity": 1.0, "bbox": [x, y, w, h],
                          "area": w * h, "mask": rle.encode(np.ones((h, w), bool))})
        frames.append({"frame": f, "scene": 0, "transition": None, "characters": chars})
    gt = {"format": "pipeline_tasks.synthetic_video.ground_truth/1", "video": {"width": W, "height": H},
          "cut_frames": [10, 25], "scene_starts": [10, 25, 33], "frames": frames}
    path = root / "ground_truth.json"
    path.write_text(json.dumps(gt))
    return path


def write_predictions(root, cluster_of):
    """Predicted masks: each true rectangle shifted right by one pixel (IoU 19/21)."""
    seg = root / "seg"
    (seg / "masks").mkdir(parents=True)
    instances, clusters = [], []
    for f in range(4):
        for cid in BOXES:
            x, y, w, h = gt_box(cid, f)
            name = f"f{f}_c{cid}"
            Image.fromarray(np.full((h, w), 255, np.uint8)).save(seg / "masks" / f"{name}.png")
            instances.append({"file": f"characters/{name}.png", "mask": f"masks/{name}.png",
                              "crop_box": [x + 1, y, w, h],
                              "frame_index": f, "source_frame": f"frame_{f:07d}.png", "bbox": [x + 1, y, w, h],
                              "area": w * h, "score": 1.0, "scene_index": 0})
            clusters.append({"file": f"characters/{name}.png", "cluster": cluster_of(f, cid), "probability": 1.0})
    (seg / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in instances))
    clu = root / "clu"
    clu.mkdir()
    (clu / "clusters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clusters))
    return seg, clu


def write_scenes(root, starts):
    d = root / "frames"
    d.mkdir()
    rows = ["scene_index,start_frame,end_frame,start_time,end_time"]
    ends = starts[1:] + [50]
    rows += [f"{i},{s},{e},{s / 25},{e / 25}" for i, (s, e) in enumerate(zip(starts, ends))]
    (d / "scenes.csv").write_text("\n".join(rows) + "\n")
    return d


def run_eval(tmp_path, **config):
    stage = EvaluateExecutor("eval", {"output_dir": str(tmp_path / "eval"), **config})
    stage.validate_config()
    return stage.execute({})


def write_mask(seg: Path, name: str, full: np.ndarray) -> list[int]:
    """Replace instance `name`'s mask by the full-frame mask `full`; its new crop box."""
    ys, xs = np.nonzero(full)
    x, y, w, h = int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    Image.fromarray(full[y:y + h, x:x + w].astype(np.uint8) * 255).save(seg / "masks" / f"{name}.png")
    lines = [json.loads(line) for line in (seg / "instances.jsonl").read_text().splitlines()]
    for r in lines:
        if r["mask"] == f"masks/{name}.png":
            r["crop_box"] = r["bbox"] = [x, y, w, h]
    (seg / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return [x, y, w, h]


def rect(box) -> np.ndarray:
    x, y, w, h = box
    m = np.zeros((H, W), bool)
    m[y:y + h, x:x + w] = True
    return m


def write_selection(root: Path, crops: list[str]) -> Path:
    """A training_data_prep output holding the crops named (instance names as in write_predictions)."""
    d = root / "dataset"
    d.mkdir()
    (d / "selection.jsonl").write_text("".join(
        json.dumps({"file_name": f"10_c/{name}.png", "key": f"characters/{name}.png"}) + "\n" for name in crops))
    return d


def test_all_scores(tmp_path):
    gt = write_ground_truth(tmp_path)
    seg, clu = write_predictions(tmp_path, lambda f, cid: cid - 1)        # perfect identities
    frames = write_scenes(tmp_path, [0, 10, 26, 40])
    dataset = write_selection(tmp_path, ["f0_c1", "f1_c2"])
    res = run_eval(tmp_path, ground_truth=str(gt), frames_dir=str(frames), instances=str(seg), clusters=str(clu),
                   dataset=str(dataset))
    o = res.outputs
    # cuts [10, 26, 40] vs truth [10, 25] with tolerance 1: 2 hits, 1 spurious
    assert o["scene_precision"] == pytest.approx(2 / 3) and o["scene_recall"] == 1.0
    assert o["scene_f1"] == pytest.approx(0.8)
    assert o["mask_mean_iou"] == pytest.approx(19 / 21, abs=1e-6)
    assert o["cluster_ari"] == 1.0 and o["cluster_purity"] == 1.0
    assert o["unavailable"] == {}
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["scene_cuts"]["spurious"] == [40] and saved["masks"]["matched"] == 8
    assert saved["clusters"]["labelled"] == 8
    assert saved["masks"]["poor"] == 0 and saved["dataset"]["crops"] == 2 and saved["dataset"]["bad"] == 0


def test_masks_carrying_background_or_another_character_are_named(tmp_path):
    """A mean IoU hides a few bad masks; the per-instance figures name them, and the dataset score
    says which training images are not one whole character."""
    gt = write_ground_truth(tmp_path)
    seg, clu = write_predictions(tmp_path, lambda f, cid: cid - 1)
    # f1_c1 carries a block of background beside the character (IoU 300/540)
    x, y, w, h = gt_box(1, 1)
    write_mask(seg, "f1_c1", rect((x, y, w + 16, h)))
    # f2_c2 carries a leg of character 1 (a 6x15 piece, 23 % of its mask) and is otherwise exact
    write_mask(seg, "f2_c2", rect(gt_box(2, 2)) | rect((gt_box(1, 2)[0] + 14, 6, 6, 15)))
    dataset = write_selection(tmp_path, ["f0_c1", "f1_c1", "f2_c2", "f3_c2"])
    res = run_eval(tmp_path, ground_truth=str(gt), instances=str(seg), clusters=str(clu), dataset=str(dataset))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    masks = saved["masks"]
    assert masks["matched"] == 8 and masks["poor"] == 1 and masks["poor_share"] == pytest.approx(1 / 8)
    assert masks["poor_crops"] == [{"file": "characters/f1_c1.png", "iou": round(300 / 540, 4)}]
    assert masks["min_iou"] == pytest.approx(300 / 540)
    d = saved["dataset"]
    assert (d["crops"], d["bad"], d["poor"], d["multi"], d["background"]) == (4, 2, 1, 1, 0)
    assert d["bad_files"] == ["10_c/f1_c1.png", "10_c/f2_c2.png"]
    assert [b["kind"] for b in d["bad_crops"]] == ["poor", "multi"]
    assert res.outputs["dataset_bad_share"] == 0.5 and res.outputs["mask_poor"] == 1


def test_dataset_naming_a_crop_not_segmented_is_an_input_error(tmp_path):
    gt = write_ground_truth(tmp_path)
    seg, _ = write_predictions(tmp_path, lambda f, cid: 0)
    dataset = write_selection(tmp_path, ["f0_c1", "f9_c9"])
    with pytest.raises(StageInputError, match="f9_c9"):
        run_eval(tmp_path, ground_truth=str(gt), instances=str(seg), dataset=str(dataset))
    with pytest.raises(StageConfigError, match="instances"):
        run_eval(tmp_path, ground_truth=str(gt), dataset=str(dataset))


def test_cluster_ari_reflects_mistakes(tmp_path):
    from sklearn.metrics import adjusted_rand_score
    gt = write_ground_truth(tmp_path)
    def wrong(f, cid):                  # frame 3's c2 put with c1
        return 0 if (cid == 1 or f == 3) else 1
    seg, clu = write_predictions(tmp_path, wrong)
    res = run_eval(tmp_path, ground_truth=str(gt), instances=str(seg / "instances.jsonl"),
                   clusters=str(clu / "clusters.jsonl"), cut_truth="scene_starts")
    truth = [cid for f in range(4) for cid in BOXES]
    pred = [wrong(f, cid) for f in range(4) for cid in BOXES]
    assert res.outputs["cluster_ari"] == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-6)
    assert res.outputs["cluster_ari"] < 1.0
    assert res.outputs["cluster_purity"] == pytest.approx(7 / 8)
    assert res.outputs["unavailable"] == {"scene_cuts": "frames_dir not configured"}
    assert "scene_f1" not in res.outputs


def test_scorers_missing_are_reported_not_fatal(tmp_path, monkeypatch):
    from pipeline_tasks.stages import characters
    gt = write_ground_truth(tmp_path)
    seg, clu = write_predictions(tmp_path, lambda f, cid: cid)
    frames = write_scenes(tmp_path, [0, 10, 25])
    monkeypatch.setitem(sys.modules, "pipeline_tasks.stages.characters.metrics", None)
    monkeypatch.delattr(characters, "metrics", raising=False)
    res = run_eval(tmp_path, ground_truth=str(gt), frames_dir=str(frames), instances=str(seg), clusters=str(clu))
    assert res.outputs["scene_f1"] == 1.0
    assert set(res.outputs["unavailable"]) == {"masks", "clusters"}
    assert "pipeline_tasks.stages.characters.metrics cannot be imported" in res.outputs["unavailable"]["masks"]
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "masks" not in saved
    assert saved["unavailable"]["clusters"].startswith("pipeline_tasks.stages.characters.metrics")


def test_bad_inputs(tmp_path):
    with pytest.raises(StageInputError, match="ground truth file not found"):
        run_eval(tmp_path, ground_truth=str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(StageInputError, match="has no 'cut_frames' list"):
        run_eval(tmp_path, ground_truth=str(tmp_path / "bad.json"))
    gt = write_ground_truth(tmp_path)
    with pytest.raises(StageInputError, match="scenes.csv not found"):
        run_eval(tmp_path, ground_truth=str(gt), frames_dir=str(tmp_path))
    with pytest.raises(StageInputError, match="file not found"):
        run_eval(tmp_path, ground_truth=str(gt), instances=str(tmp_path / "seg"))
    with pytest.raises(StageConfigError, match="needs 'instances'"):
        run_eval(tmp_path, ground_truth=str(gt), clusters=str(tmp_path))


def test_scene_cuts_gathered_over_items_are_scored_per_item_and_pooled(tmp_path):
    truths, frames = [], []
    for item, starts in (("ep01", [0, 10, 26, 40]), ("ep02", [0, 25])):
        (tmp_path / item).mkdir()
        truths.append(str(write_ground_truth(tmp_path / item)))          # true cuts [10, 25]
        frames.append(str(write_scenes(tmp_path / item, starts)))
    res = run_eval(tmp_path, ground_truth=truths, frames_dir=frames)
    # ep01: 2 hits, 1 spurious; ep02: 1 hit, 1 missed -> pooled tp 3, fp 1, fn 1
    assert res.outputs["scene_precision"] == 0.75 and res.outputs["scene_recall"] == 0.75
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["scene_cuts"]["by_item"]["ep02"]["missed"] == [10]
    assert res.outputs["items"] == 2
    with pytest.raises(StageConfigError, match="paired in order"):
        run_eval(tmp_path, ground_truth=truths, frames_dir=frames[:1])
    with pytest.raises(StageConfigError, match="instances lists 1 paths for 2 ground truths; they are paired"):
        run_eval(tmp_path, ground_truth=truths, instances=frames[0])
    with pytest.raises(StageConfigError, match="frames_dir is a list but ground_truth is one file"):
        run_eval(tmp_path, ground_truth=truths[0], frames_dir=frames)


def test_masks_and_clusters_gathered_over_items(tmp_path):
    """Masks scored per item and pooled; clusters over the pooled instances, from one clustering
    over every item or from one clustering per item (whose clusters stay its own)."""
    from sklearn.metrics import adjusted_rand_score
    assign = {"ep1": lambda f, cid: cid - 1, "ep10": lambda f, cid: 0 if (cid == 1 or f == 3) else 1}
    truths, segs, clus = [], [], []
    for item, cluster_of in assign.items():
        (tmp_path / item).mkdir()
        truths.append(str(write_ground_truth(tmp_path / item)))
        seg, clu = write_predictions(tmp_path / item, cluster_of)
        segs.append(str(seg))
        clus.append(str(clu))
    alone = {item: run_eval(tmp_path / item, ground_truth=truth, instances=seg, clusters=clu).outputs
             for item, truth, seg, clu in zip(assign, truths, segs, clus)}
    res = run_eval(tmp_path, ground_truth=truths, instances=segs, clusters=clus)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["masks"]["matched"] == 16 and set(saved["masks"]["by_item"]) == {"ep1", "ep10"}
    assert res.outputs["mask_mean_iou"] == pytest.approx(19 / 21, abs=1e-6) == alone["ep1"]["mask_mean_iou"]
    # one clustering per item: ep1's clusters and ep10's are four clusters over two identities
    truth = [cid for _ in assign for f in range(4) for cid in BOXES]
    pred = [(item, cluster_of(f, cid)) for item, cluster_of in assign.items() for f in range(4) for cid in BOXES]
    numbers = {p: n for n, p in enumerate(dict.fromkeys(pred))}
    assert res.outputs["cluster_ari"] == pytest.approx(adjusted_rand_score(truth, [numbers[p] for p in pred]), abs=1e-6)
    assert saved["clusters"]["labelled"] == 16 and saved["clusters"]["clusters"] == 4
    assert saved["unavailable"] == {"scene_cuts": "frames_dir not configured"}
    # one clustering over both items (files carry the item): ep10's crops join ep1's clusters
    gathered = tmp_path / "gathered"
    gathered.mkdir()
    rows = [{**json.loads(line), "item": item} for item, clu in zip(assign, clus)
            for line in (Path(clu) / "clusters.jsonl").read_text().splitlines()]
    (gathered / "clusters.jsonl").write_text("".join(json.dumps({**r, "file": f"{r['item']}/{r['file']}"}) + "\n"
                                                     for r in rows))
    res = run_eval(tmp_path, ground_truth=truths, instances=segs, clusters=str(gathered))
    pred = [cluster_of(f, cid) for cluster_of in assign.values() for f in range(4) for cid in BOXES]
    assert res.outputs["cluster_ari"] == pytest.approx(adjusted_rand_score(truth, pred), abs=1e-6)
    assert res.outputs["cluster_purity"] == pytest.approx(15 / 16)
