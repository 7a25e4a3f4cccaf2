"""segmentation on real (generated) frames: the weight-free backend against ground truth, the ONNX
and SAM code paths with tiny self-built models, resume after kill -9, and bad inputs."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from character_fixtures import run_segmentation, write_png
from PIL import Image

from pipeline_tasks.errors import ModelWeightsError, StageConfigError, StageInputError
from pipeline_tasks.stages.characters.background_model import BackgroundModelBackend
from pipeline_tasks.stages.characters.formats import InstanceRecord, write_instances
from pipeline_tasks.stages.characters.metrics import instance_mask_iou
from pipeline_tasks.stages.video import ground_truth

REPO = Path(__file__).resolve().parent.parent


def read_instances(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "instances.jsonl").read_text().splitlines()]


# -- quality: the weight-free backend on the synthetic cartoon ---------------------------------------

def test_background_backend_meets_iou_target(seg_run, char_clip):
    m = instance_mask_iou(seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    assert m["frames"] > 40
    assert m["mean_iou"] >= 0.85, m
    assert m["recall"] >= 0.9 and m["precision"] >= 0.9, m


def test_outputs_contract(seg_run, char_frames):
    out = seg_run["dir"]
    recs = read_instances(out)
    assert seg_run["result"].outputs["character_count"] == len(recs) > 0
    frames = {json.loads(line)["frame_index"]: json.loads(line)
              for line in (char_frames / "frames.jsonl").read_text().splitlines()}
    for r in recs:
        assert set(r) >= {"file", "source_frame", "bbox", "area", "score", "frame_index", "scene_index", "mask"}
        assert frames[r["frame_index"]]["file"] == r["source_frame"]
        assert frames[r["frame_index"]]["scene_index"] == r["scene_index"]
        crop = np.asarray(Image.open(out / r["file"]))
        mask = np.asarray(Image.open(out / r["mask"]))
        assert crop.shape[2] == 4 and crop.shape[:2] == mask.shape
        assert np.array_equal(crop[..., 3] > 0, mask > 0)
        assert int((mask > 0).sum()) == r["area"] >= 200
        x, y, w, h = r["bbox"]
        cx, cy, cw, ch = r["crop_box"]
        assert cx <= x and cy <= y and x + w <= cx + cw and y + h <= cy + ch
        # the crop's colour pixels are the frame's pixels
        frame = np.asarray(Image.open(char_frames / r["source_frame"]).convert("RGB"))
        assert np.array_equal(crop[..., :3], frame[cy:cy + ch, cx:cx + cw])
        assert 0.5 <= r["score"] <= 1.0
    # no leftover temp files
    assert not [p for p in out.rglob("*") if ".part-" in p.name]


def test_scorer_on_exact_ground_truth_masks(tmp_path, char_clip):
    """instance_mask_iou: perfect masks score 1; a dropped one is missed; a bogus one is a false positive."""
    gt = ground_truth.load(char_clip["outputs"]["ground_truth"])
    H, W = gt["video"]["height"], gt["video"]["width"]
    recs = []
    (tmp_path / "masks").mkdir()
    for fr in gt["frames"][100:110]:
        for c in fr["characters"]:
            if c["area"] < 200:
                continue
            x, y, w, h = c["bbox"]
            m = ground_truth.decode_mask(c, H, W)[y:y + h, x:x + w]
            name = f"m{fr['frame']}_{c['id']}.png"
            write_png(tmp_path / "masks" / name, (m * 255).astype(np.uint8))
            recs.append(InstanceRecord(file=name, mask=f"masks/{name}", source_frame=f"frame_{fr['frame']:07d}.png",
                                       frame_index=fr["frame"], scene_index=0, bbox=(x, y, w, h), crop_box=(x, y, w, h),
                                       area=c["area"], score=1.0, frame_size=(W, H)))
    listing = tmp_path / "instances.jsonl"
    write_instances(listing, recs)
    m = instance_mask_iou(listing, char_clip["outputs"]["ground_truth"])
    assert m["mean_iou"] == 1.0 and m["missed"] == 0 and m["false_positives"] == 0 and m["matched"] == len(recs)
    # drop one, add a bogus square in the sky
    bogus = dataclasses.replace(recs[0], mask="masks/bogus.png", crop_box=(0, 0, 20, 20))
    write_png(tmp_path / "masks" / "bogus.png", np.full((20, 20), 255, np.uint8))
    write_instances(listing, recs[1:] + [bogus])
    m = instance_mask_iou(listing, char_clip["outputs"]["ground_truth"])
    assert (m["matched"], m["missed"], m["false_positives"]) == (len(recs) - 1, 1, 1)


@pytest.mark.slow
def test_deterministic_and_item_resume(tmp_path, seg_run, char_frames):
    out = tmp_path / "seg"
    shutil.copytree(seg_run["dir"], out)
    # remove one scene's records and crops: only that scene is recomputed, with identical results
    recs = read_instances(out)
    scene = recs[len(recs) // 2]["scene_index"]
    frames = [json.loads(line) for line in (char_frames / "frames.jsonl").read_text().splitlines()]
    gone = [f for f in frames if f["scene_index"] == scene]
    for f in gone:
        (out / "records" / (Path(f["file"]).stem + ".json")).unlink()
    for r in recs:
        if r["scene_index"] == scene:
            (out / r["file"]).unlink()
    result = run_segmentation(char_frames, out)
    assert result.metrics["segmented"] == len(gone)
    assert result.metrics["resumed"] == len(frames) - len(gone)
    assert (out / "instances.jsonl").read_bytes() == (seg_run["dir"] / "instances.jsonl").read_bytes()
    for r in recs:
        assert (out / r["file"]).read_bytes() == (seg_run["dir"] / r["file"]).read_bytes()
    # the crops measured as they were written and those read back give the measures of a fresh run
    assert (out / "quality.json").read_bytes() == (seg_run["dir"] / "quality.json").read_bytes()
    # so do the masks encoded as they were written and those read back for the COCO file
    coco = out / "annotations.coco.json"
    assert coco.read_bytes() == (seg_run["dir"] / "annotations.coco.json").read_bytes()
    assert len(json.loads(coco.read_text())["annotations"]) == len(recs)
    # a config change invalidates the earlier items
    result = run_segmentation(char_frames, out, min_area=400)
    assert result.metrics["resumed"] == 0
    assert all(r["area"] >= 400 for r in read_instances(out))


def complete_records(out: Path) -> list[Path]:
    return [p for p in (out / "records").glob("*.json") if ".part-" not in p.name]


@pytest.mark.slow
def test_resume_after_kill(tmp_path, seg_run, char_frames):
    out = tmp_path / "seg"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from pipeline_tasks.stages.segmentation import SegmentationExecutor\n"
            f"config = {{'input_dir': {str(char_frames)!r}, 'output_dir': {str(out)!r}}}\n"
            "SegmentationExecutor('seg', config).execute({})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "records").is_dir() and complete_records(out):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "instances.jsonl").exists()
    done_before = len(complete_records(out))
    assert done_before >= 1
    result = run_segmentation(char_frames, out)
    assert result.metrics["resumed"] >= done_before
    assert result.metrics["segmented"] + result.metrics["resumed"] == result.outputs["frame_count"]
    assert (out / "instances.jsonl").read_bytes() == (seg_run["dir"] / "instances.jsonl").read_bytes()


def test_whole_foreground_when_not_extracting(tmp_path, char_frames):
    frames = [json.loads(line) for line in (char_frames / "frames.jsonl").read_text().splitlines()]
    scene = [f for f in frames if f["scene_index"] == 3]
    sub = tmp_path / "frames"
    sub.mkdir()
    for f in scene:
        shutil.copy(char_frames / f["file"], sub / f["file"])
    (sub / "frames.jsonl").write_text("".join(json.dumps(f) + "\n" for f in scene))
    result = run_segmentation(sub, tmp_path / "one", extract_characters=False)
    recs = read_instances(tmp_path / "one")
    assert len({r["frame_index"] for r in recs}) == len(recs) == result.outputs["character_count"]
    split = run_segmentation(sub, tmp_path / "many")
    assert split.outputs["character_count"] > len(recs)



def test_parts_within_group_distance_are_one_instance():
    """The soft map thresholded: parts closer than `group_px` are one instance (their own pixels,
    not the gap), farther ones their own, specks under `min_area` dropped; parts on the frame's
    edges keep their whole box."""
    from pipeline_tasks.stages.characters.backend_base import Prediction
    from pipeline_tasks.stages.characters.instances import split_instances
    fg = np.zeros((100, 160), np.float32)
    fg[10:40, 0:20] = 0.9          # on the left edge
    fg[10:40, 24:40] = 0.7         # 4 pixels to its right
    fg[70:100, 120:160] = 0.8      # the bottom right corner
    fg[95:97, 0:3] = 0.9           # a speck
    fg[50, 50] = 0.4               # under the threshold
    pred = Prediction(foreground=fg)

    def split(group_px):
        return [(i.bbox, i.area, round(i.score, 6), i.mask) for i in
                split_instances(pred, alpha_threshold=0.5, min_area=20, group_px=group_px)]
    grouped = split(3)
    assert [g[:3] for g in grouped] == [([0, 10, 40, 30], 1080, round((600 * 0.9 + 480 * 0.7) / 1080, 6)),
                                        ([120, 70, 40, 30], 1200, 0.8)]
    assert np.array_equal(grouped[0][3], (fg >= 0.5) & (np.arange(160) < 40)[None, :] & (np.arange(100) < 50)[:, None])
    assert np.array_equal(grouped[1][3], fg == np.float32(0.8))
    apart = split(1)
    assert [a[:2] for a in apart] == [([0, 10, 20, 30], 600), ([24, 10, 16, 30], 480), ([120, 70, 40, 30], 1200)]
    assert [a[:2] for a in split(0)] == [a[:2] for a in apart]

# -- ONNX (rembg-style) backend with a tiny model built here ------------------------------------------

def make_onnx(path: Path, channels: int = 3, size: int = 64) -> Path:
    """A 1x1 convolution + sigmoid that lights up red pixels, in rembg's [1, 3, H, W] layout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.zeros((1, channels, 1, 1), np.float32)
    w[0, 0] = 4.0
    if channels == 3:
        w[0, 2] = -4.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input.1", "w", "b"], ["logits"]), helper.make_node("Sigmoid", ["logits"], ["d0"])],
        "redness",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, size, size])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(1, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def square_frames(d: Path, boxes) -> Path:
    for i, (x, y, w, h) in enumerate(boxes):
        img = np.zeros((120, 160, 3), np.uint8)
        img[..., 2] = 255
        img[y:y + h, x:x + w] = (255, 0, 0)
        write_png(d / f"frame_{i:07d}.png", img)
    return d


def test_onnx_backend_runs_the_model(tmp_path):
    model = make_onnx(tmp_path / "u2net.onnx")
    boxes = [(40, 30, 50, 40), (10, 60, 30, 30), (100, 10, 40, 70)]
    frames = square_frames(tmp_path / "frames", boxes)
    result = run_segmentation(frames, tmp_path / "out", model="u2net", weights=str(model), padding=2)
    recs = read_instances(tmp_path / "out")
    assert result.outputs["character_count"] == 3
    for r, (x, y, w, h) in zip(recs, boxes):
        bx, by, bw, bh = r["bbox"]
        inter = max(0, min(bx + bw, x + w) - max(bx, x)) * max(0, min(by + bh, y + h) - max(by, y))
        assert inter / (bw * bh + w * h - inter) > 0.85, (r["bbox"], (x, y, w, h))
    # the isnet normalisation path runs too
    result = run_segmentation(frames, tmp_path / "isnet", model="isnet", weights=str(model))
    assert result.outputs["character_count"] == 3


def test_onnx_wrong_input_shape(tmp_path):
    model = make_onnx(tmp_path / "gray.onnx", channels=1)
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    with pytest.raises(StageInputError) as err:
        run_segmentation(frames, tmp_path / "out", model="u2net", weights=str(model))
    assert "has shape [1, 1, 64, 64]" in str(err.value) and "[N, 3, H, W]" in str(err.value)


def test_onnx_corrupt_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    with pytest.raises(ModelWeightsError) as err:
        run_segmentation(frames, tmp_path / "out", model="isnet", weights=str(bad))
    assert "cannot load ONNX model" in str(err.value) and str(bad) in str(err.value)


# -- SAM backend with a tiny segment-anything model built here ----------------------------------------

@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from segment_anything.build_sam import _build_sam
    torch.manual_seed(0)
    sam = _build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.mark.slow
def test_sam_backend_loads_and_segments(tmp_path, tiny_sam):
    import torch

    from pipeline_tasks.stages.characters.sam_backend import architecture
    arch = architecture(torch.load(tiny_sam, weights_only=True))
    assert arch == {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2,
                    "encoder_global_attn_indexes": [1]}
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    result = run_segmentation(frames, tmp_path / "auto", model="sam", weights=str(tiny_sam), sam_points_per_side=2,
                              sam_pred_iou_thresh=0.0, sam_stability_thresh=0.0, min_area=1, device="cpu")
    recs = read_instances(tmp_path / "auto")
    assert result.outputs["character_count"] == len(recs) >= 1
    for r in recs:
        mask = np.asarray(Image.open(tmp_path / "auto" / r["mask"]))
        assert int((mask > 0).sum()) == r["area"] >= 1


@pytest.mark.slow
def test_sam_box_prompts_from_background_model(tmp_path, tiny_sam, char_frames):
    frames = [json.loads(line) for line in (char_frames / "frames.jsonl").read_text().splitlines()]
    scene = [f for f in frames if f["scene_index"] == 3][:3]
    sub = tmp_path / "frames"
    sub.mkdir()
    for f in scene:
        shutil.copy(char_frames / f["file"], sub / f["file"])
    (sub / "frames.jsonl").write_text("".join(json.dumps(f) + "\n" for f in scene))
    # the boxes SAM is prompted with: the background model's instances of the same frames (the
    # proposer reads no context frames from the video)
    proposals = run_segmentation(sub, tmp_path / "proposals", video_context=False)
    props = read_instances(tmp_path / "proposals")
    assert proposals.outputs["character_count"] >= len(scene)
    run_segmentation(sub, tmp_path / "boxes", model="sam", weights=str(tiny_sam), sam_mode="boxes",
                     device="cpu")
    recs = read_instances(tmp_path / "boxes")
    # one SAM mask per proposed box (a random-weight model's masks are arbitrary, but never more)
    assert 1 <= len(recs) <= len(props)
    assert {r["frame_index"] for r in recs} <= {f["frame_index"] for f in scene}


def test_sam_bad_checkpoint(tmp_path):
    pytest.importorskip("torch")
    import torch
    bad = tmp_path / "notsam.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    frames = square_frames(tmp_path / "frames", [(40, 30, 50, 40)])
    with pytest.raises(ModelWeightsError) as err:
        run_segmentation(frames, tmp_path / "out", model="sam", weights=str(bad))
    assert "cannot load a segment-anything checkpoint" in str(err.value) and "segment-anything" in str(err.value)


# -- bad inputs ---------------------------------------------------------------------------------------

def test_empty_input_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageInputError) as err:
        run_segmentation(tmp_path / "empty", tmp_path / "out")
    assert "contains no images" in str(err.value) and str(tmp_path / "empty") in str(err.value)


def test_missing_input_dir(tmp_path):
    with pytest.raises(StageInputError) as err:
        run_segmentation(tmp_path / "nope", tmp_path / "out")
    assert "input directory does not exist" in str(err.value)


def test_unreadable_image(tmp_path):
    d = square_frames(tmp_path / "frames", [(40, 30, 50, 40)] * 3)
    (d / "frame_0000001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(StageInputError) as err:
        run_segmentation(d, tmp_path / "out")
    assert "cannot read image" in str(err.value) and "frame_0000001.png" in str(err.value)


@pytest.mark.parametrize("model,default", [("sam", "sam-vit-b"), ("sam2", "sam2.1-hiera-tiny"),
                                           ("isnet", "isnet-anime"), ("u2net", "u2net")])
def test_missing_weights(tmp_path, model, default):
    missing = tmp_path / "models" / f"{model}.bin"
    stage_cfg = {"input_dir": str(tmp_path), "output_dir": str(tmp_path / "out"), "model": model,
                 "weights": str(missing)}
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    with pytest.raises(ModelWeightsError) as err:
        SegmentationExecutor("seg", stage_cfg).validate_config()
    assert str(missing) in str(err.value) and default in str(err.value)
    # no weights: the backend's default catalogue entry, which the (empty) model cache lacks
    with pytest.raises(ModelWeightsError) as err:
        SegmentationExecutor("seg", {**stage_cfg, "weights": None}).validate_config()
    assert f"fetch it with `pipeline-tasks models fetch {default}`" in str(err.value)


def test_weights_with_background_model_rejected(tmp_path):
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    with pytest.raises(StageConfigError) as err:
        SegmentationExecutor("seg", {"input_dir": "x", "output_dir": "y", "weights": "w.onnx"}).validate_config()
    assert err.value.key == "weights"


def test_single_frame_scenes_fall_back_to_grabcut(tmp_path):
    """A folder of images without frames.jsonl: each image is its own scene, too few frames for a
    background model, so the border-seeded GrabCut fallback segments it (and says so)."""
    boxes = [(40, 30, 50, 40), (90, 50, 40, 50)]
    frames = square_frames(tmp_path / "frames", boxes)
    result = run_segmentation(frames, tmp_path / "out")
    assert result.metrics["frames_without_background_model"] == 2
    recs = read_instances(tmp_path / "out")
    assert len(recs) == 2
    for r, (x, y, w, h) in zip(recs, boxes):
        assert r["area"] == pytest.approx(w * h, rel=0.1)
        bx, by, bw, bh = r["bbox"]
        assert abs(bx - x) <= 2 and abs(by - y) <= 2 and abs(bw - w) <= 3 and abs(bh - h) <= 3


def test_progress_events_and_cancel(tmp_path, char_frames):
    from pipeline_tasks.errors import StageCancelled
    from pipeline_tasks.executor import StageContext
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    from pipeline_tasks.state.events import STAGE_PROGRESS, EventBus
    frames = [json.loads(line) for line in (char_frames / "frames.jsonl").read_text().splitlines()]
    scene = [f for f in frames if f["scene_index"] == 1]
    sub = tmp_path / "frames"
    sub.mkdir()
    for f in scene:
        shutil.copy(char_frames / f["file"], sub / f["file"])
    (sub / "frames.jsonl").write_text("".join(json.dumps(f) + "\n" for f in scene))
    bus = EventBus()
    seen = []
    bus.subscribe(STAGE_PROGRESS, seen.append)
    stage = SegmentationExecutor("seg", {"input_dir": str(sub), "output_dir": str(tmp_path / "o")},
                              StageContext("seg", bus=bus, progress_interval=0.0))
    stage.execute({})
    assert seen[-1]["done"] == seen[-1]["total"] == len(scene) and seen[-1]["unit"] == "images"
    assert [e["done"] for e in seen] == sorted(e["done"] for e in seen)
    cancel = tmp_path / "cancel"
    cancel.write_text("")
    stage = SegmentationExecutor("seg", {"input_dir": str(sub), "output_dir": str(tmp_path / "c")},
                              StageContext("seg", cancel_file=cancel))
    with pytest.raises(StageCancelled):
        stage.execute({})
    assert not (tmp_path / "c" / "instances.jsonl").exists()


# -- masks for annotation tools -----------------------------------------------------------------------

def test_coco_annotations_load_in_pycocotools_and_match_the_masks(seg_run, char_frames):
    from pycocotools.coco import COCO

    out = seg_run["dir"]
    coco = COCO(str(seg_run["result"].outputs["coco_json"]))
    recs = read_instances(out)
    frames = [json.loads(line) for line in (char_frames / "frames.jsonl").read_text().splitlines()]
    assert [img["file_name"] for img in coco.dataset["images"]] == [f["file"] for f in frames]
    assert coco.getCatIds(catNms=["character"]) == [1]
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(recs) > 0
    for ann, r in zip(anns, recs):
        image = coco.loadImgs(ann["image_id"])[0]
        assert image["file_name"] == r["source_frame"]
        with Image.open(char_frames / image["file_name"]) as im:
            assert (image["width"], image["height"]) == im.size
        decoded = coco.annToMask(ann)            # the RLE decoded by pycocotools, frame-sized
        x, y, w, h = r["crop_box"]
        expected = np.zeros_like(decoded)
        expected[y:y + h, x:x + w] = np.asarray(Image.open(out / r["mask"])) > 127
        assert np.array_equal(decoded, expected)
        assert ann["area"] == r["area"] == int(decoded.sum())
        assert ann["bbox"] == r["bbox"] and ann["iscrowd"] == 0

# -- the default chain on a moving-camera cartoon ------------------------------------------------------

def test_default_chain_reads_scene_context_from_the_source_video(tmp_path, cartoon_clip):
    """frame_extraction with its defaults keeps one frame a scene; segmentation with its defaults
    reads the scenes' other frames from the video frames.jsonl names (pans, zooms, flashes), so no
    frame falls back to GrabCut, and most instances are true characters. Without the video the same
    frames all fall back, and few instances are."""
    from pipeline_tasks.stages.characters.metrics import box_match
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    frames = tmp_path / "frames"
    FrameExtractionExecutor("frames", {"input_video": cartoon_clip["outputs"]["video"],
                                    "output_dir": str(frames)}).execute({})
    gt = cartoon_clip["outputs"]["ground_truth"]
    with_video = run_segmentation(frames, tmp_path / "seg")
    assert with_video.metrics["frames_without_background_model"] == 0
    assert with_video.metrics["context_frames_read"] >= 8 * with_video.outputs["frame_count"]
    m = box_match(tmp_path / "seg" / "instances.jsonl", gt)
    assert m["instance_match"] >= 0.7 and m["character_recall"] >= 0.7, m
    without = run_segmentation(frames, tmp_path / "seg_frames_only", video_context=False)
    assert without.metrics["frames_without_background_model"] == without.outputs["frame_count"]
    assert box_match(tmp_path / "seg_frames_only" / "instances.jsonl", gt)["instance_match"] < 0.3


def test_hybrid_frames_of_the_zooming_clip_are_true_characters(tmp_path, cartoon_clip):
    """`hybrid` frame extraction keeps frames all through each shot, zooming ones included; with
    the video's context, most of their instances are true characters (box IoU >= 0.5)."""
    from pipeline_tasks.stages.characters.metrics import box_match
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    frames = tmp_path / "frames"
    FrameExtractionExecutor("frames", {"input_video": cartoon_clip["outputs"]["video"], "output_dir": str(frames),
                                       "mode": "hybrid"}).execute({})
    result = run_segmentation(frames, tmp_path / "seg")
    assert result.metrics["frames_without_background_model"] == 0
    m = box_match(tmp_path / "seg" / "instances.jsonl", cartoon_clip["outputs"]["ground_truth"])
    assert m["instance_match"] >= 0.75 and m["character_recall"] >= 0.6, m


def true_camera(scene: dict, frame: int, ref: int, size: tuple[int, int], video_width: int) -> np.ndarray:
    """The 2x3 map from frame `frame`'s pixels to frame `ref`'s (both of `scene`, at `size`), from
    the ground truth's pan speed and zoom: the renderer shifts the view by `pan_speed` background
    pixels a frame, then zooms by `zoom` about the frame centre."""
    w, h = size
    z0, z1 = scene["zoom"]
    length = max(1, scene["end_frame"] - scene["start_frame"] - 1)

    def zoom(f: int) -> float:
        return z0 + (z1 - z0) * min(max(f - scene["start_frame"], 0), length) / length

    pan = scene["pan_speed"] * w / video_width
    s = zoom(ref) / zoom(frame)
    c = np.array([w / 2, h / 2])
    t = c - s * c + zoom(ref) * np.array([pan * (frame - ref), 0.0])
    return np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])


def test_registration_follows_zooming_cameras(cartoon_clip):
    """Context frames of the clip's zooming shots (with pans) are placed where the true camera puts
    them: frames are registered to an anchor frame, not chained frame to frame, so the error of a
    zoom does not build up along the shot. The bound is the mean corner error over the shots."""
    import cv2

    from pipeline_tasks.stages.characters.registration import chain
    from pipeline_tasks.stages.characters.video_context import VideoContext
    gt = json.loads(Path(cartoon_clip["outputs"]["ground_truth"]).read_text())
    size = (320, 180)
    context = VideoContext(cartoon_clip["outputs"]["video"])
    errors = []
    zooming = [s for s in gt["scenes"] if s["zoom"][0] != s["zoom"][1]]
    assert zooming
    try:
        for scene in zooming:
            frames = context.scene_frames(scene["start_frame"], scene["end_frame"], 24, size)
            grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for _, f, _ in frames]
            maps, good = chain(grays)
            assert sum(good) >= 0.8 * len(good)
            corners = np.array([[0, 0], [size[0], 0], [0, size[1]], [size[0], size[1]]], float)
            for (index, _, _), m, ok in zip(frames, maps, good):
                truth = true_camera(scene, index, frames[0][0], size, gt["video"]["width"])
                if ok:
                    placed, true = corners @ m[:, :2].T + m[:, 2], corners @ truth[:, :2].T + truth[:, 2]
                    errors.append(np.abs(placed - true).max())
    finally:
        context.close()
    assert float(np.mean(errors)) < 8.0, (np.mean(errors), np.max(errors))


def corner_error(m: np.ndarray, truth: np.ndarray, size: tuple[int, int]) -> float:
    corners = np.array([[0, 0], [size[0], 0], [0, size[1]], [size[0], size[1]]], float)
    return float(np.abs(corners @ m[:, :2].T + m[:, 2] - (corners @ truth[:, :2].T + truth[:, 2])).max())


def test_context_frames_are_the_decoded_frames_scaled_by_area(cartoon_clip):
    """Each context frame is its decoded frame converted to RGB and scaled to the size asked for
    (swscale, area), whatever size the scenes before it asked for: the scaler kept for all the
    frames gives what a scaler of the frame's own gives."""
    import av

    from pipeline_tasks.stages.characters.video_context import VideoContext
    gt = json.loads(Path(cartoon_clip["outputs"]["ground_truth"]).read_text())
    scenes = [(s["start_frame"], s["end_frame"]) for s in gt["scenes"]][:3]
    sizes = [(160, 90), (96, 54), (160, 90)]
    context = VideoContext(cartoon_clip["outputs"]["video"])
    try:
        got = {index: rgb for (start, end), size in zip(scenes, sizes)
               for index, rgb, _ in context.scene_frames(start, end, 6, size)}
    finally:
        context.close()
    assert len(got) >= 12
    with av.open(cartoon_clip["outputs"]["video"]) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for frame in container.decode(stream):
            index = int(round(float(frame.pts * stream.time_base) * fps))
            if index in got:
                size = next(sz for (start, end), sz in zip(scenes, sizes) if start <= index < end)
                want = frame.reformat(width=size[0], height=size[1], format="rgb24",
                                      interpolation="AREA").to_ndarray()
                assert np.array_equal(got.pop(index), want), index
            if not got:
                break
    assert not got

def test_motion_vectors_place_context_frames_where_the_true_camera_does(cartoon_clip):
    """The encoder's motion vectors, chained over a scene's decoded frames, place the context
    frames of the clip's panning and zooming shots within a pixel of the true camera (mean corner
    error), relative to the first frame of their segment; most frames are placed."""
    from pipeline_tasks.stages.characters.registration import compose, inverse
    from pipeline_tasks.stages.characters.video_context import VideoContext
    gt = json.loads(Path(cartoon_clip["outputs"]["ground_truth"]).read_text())
    size = (320, 180)
    context = VideoContext(cartoon_clip["outputs"]["video"])
    errors, placed, frames_seen = [], 0, 0
    moving = [s for s in gt["scenes"] if s["zoom"][0] != s["zoom"][1] or s["pan_speed"]]
    assert len(moving) >= 3
    try:
        for scene in gt["scenes"]:
            frames = context.scene_frames(scene["start_frame"], scene["end_frame"], 24, size)
            placed += sum(p is not None for _, _, p in frames)
            if scene not in moving:
                continue
            first: dict[int, tuple[int, np.ndarray]] = {}
            for index, _, placement in frames:
                frames_seen += 1
                if placement is None:
                    continue
                segment, m = placement
                first.setdefault(segment, (index, m))
                start, m0 = first[segment]
                truth = true_camera(scene, index, start, size, gt["video"]["width"])
                errors.append(corner_error(compose(inverse(m0), m), truth, size))
    finally:
        context.close()
    assert context.stats.placed == placed
    assert len(errors) >= 0.8 * frames_seen, (len(errors), frames_seen)
    assert float(np.mean(errors)) < 1.0, (np.mean(errors), np.max(errors))


def test_registration_keeps_checked_motion_vector_placements(cartoon_clip, monkeypatch):
    """Given the vectors' placements, registration searches the image (shift search, ORB) for
    only a few frames, and places the frames of the zooming shots at least as close to the true
    camera as the image search alone does."""
    import cv2

    from pipeline_tasks.stages.characters import registration
    from pipeline_tasks.stages.characters.motion_vectors import fill_between
    from pipeline_tasks.stages.characters.video_context import VideoContext
    gt = json.loads(Path(cartoon_clip["outputs"]["ground_truth"]).read_text())
    size = (320, 180)
    searched = []
    search = registration.translation
    monkeypatch.setattr(registration, "translation", lambda *a, **k: searched.append(1) or search(*a, **k))
    context = VideoContext(cartoon_clip["outputs"]["video"])
    errors: dict[str, list[float]] = {"image": [], "vectors": []}
    searches, registered = {}, 0
    try:
        for scene in gt["scenes"]:
            frames = context.scene_frames(scene["start_frame"], scene["end_frame"], 24, size)
            if scene["zoom"][0] == scene["zoom"][1]:
                continue
            grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for _, f, _ in frames]
            placements = fill_between([i for i, _, _ in frames], [p for _, _, p in frames])
            registered += len(frames) - 1
            for name, kwargs in (("image", {}), ("vectors", {"placements": placements})):
                searched.clear()
                maps, good = registration.chain(grays, **kwargs)
                searches[name] = searches.get(name, 0) + len(searched)
                errors[name] += [corner_error(m, true_camera(scene, i, frames[0][0], size, gt["video"]["width"]), size)
                                 for (i, _, _), m, ok in zip(frames, maps, good) if ok]
    finally:
        context.close()
    assert searches["image"] == registered
    assert searches["vectors"] <= 0.25 * registered, searches
    assert np.mean(errors["vectors"]) <= np.mean(errors["image"]), {k: np.mean(v) for k, v in errors.items()}


def test_wrong_motion_vectors_do_not_misplace_frames(cartoon_clip):
    """Placements that contradict the image (every third frame's shifted by 6 pixels, as vectors
    pointing at another reference would) are caught by the image check (a still or steadily moving
    camera, or the image search, explains those frames better): the frames land within a pixel (mean
    corner error) of where the image search alone puts them."""
    import cv2

    from pipeline_tasks.stages.characters import registration
    from pipeline_tasks.stages.characters.motion_vectors import fill_between
    from pipeline_tasks.stages.characters.video_context import VideoContext
    gt = json.loads(Path(cartoon_clip["outputs"]["ground_truth"]).read_text())
    size = (320, 180)
    context = VideoContext(cartoon_clip["outputs"]["video"])
    errors: dict[str, list[float]] = {"image": [], "wrong vectors": []}
    try:
        for scene in gt["scenes"]:
            frames = context.scene_frames(scene["start_frame"], scene["end_frame"], 24, size)
            if not scene["pan_speed"] and scene["zoom"][0] == scene["zoom"][1]:
                continue
            grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for _, f, _ in frames]
            placements = fill_between([i for i, _, _ in frames], [p for _, _, p in frames])
            wrong = [p if p is None or j % 3 else (p[0], p[1] + np.array([[0, 0, 6.0], [0, 0, 0]]))
                     for j, p in enumerate(placements)]
            for name, kwargs in (("image", {}), ("wrong vectors", {"placements": wrong})):
                maps, good = registration.chain(grays, **kwargs)
                errors[name] += [corner_error(m, true_camera(scene, i, frames[0][0], size, gt["video"]["width"]), size)
                                 for (i, _, _), m, ok in zip(frames, maps, good) if ok]
    finally:
        context.close()
    assert len(errors["wrong vectors"]) >= 0.9 * len(errors["image"])
    assert np.mean(errors["wrong vectors"]) <= np.mean(errors["image"]) + 1.0, \
        {k: np.mean(v) for k, v in errors.items()}


def test_steady_motion_fills_frames_between_placed_ones():
    """A frame the decoder did not place, between two placed frames of one segment, gets the
    motion interpolated by frame index; across segments, or at the ends, it stays unplaced."""
    from pipeline_tasks.stages.characters.motion_vectors import fill_between
    a = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    b = np.array([[1.2, 0, 40.0], [0, 1.2, -8.0]])
    filled = fill_between([10, 13, 14, 20, 22, 30], [(0, a), None, (0, b), None, (1, a), None])
    assert filled[1][0] == 0 and np.allclose(filled[1][1], 0.25 * a + 0.75 * b)
    assert filled[3] is None and filled[5] is None
    assert filled[0][1] is a and filled[4][1] is a


# -- scenes modelled in parallel -----------------------------------------------------------------------

def test_scenes_in_parallel_give_the_outputs_of_one_process(tmp_path, cartoon_clip):
    """Two worker threads modelling the scenes (context frames from the video) write exactly what
    one thread doing the scenes in turn writes: the same instances, crops and masks."""
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    frames = tmp_path / "frames"
    FrameExtractionExecutor("frames", {"input_video": cartoon_clip["outputs"]["video"], "output_dir": str(frames),
                                       "mode": "hybrid"}).execute({})
    serial = run_segmentation(frames, tmp_path / "serial", workers=1)
    parallel = run_segmentation(frames, tmp_path / "parallel", workers=2)
    assert "scene_workers" not in serial.metrics and parallel.metrics["scene_workers"] == 2
    assert parallel.metrics["context_frames_read"] == serial.metrics["context_frames_read"] > 0
    text = (tmp_path / "serial" / "instances.jsonl").read_bytes()
    assert text and (tmp_path / "parallel" / "instances.jsonl").read_bytes() == text
    recs = read_instances(tmp_path / "serial")
    assert len({r["scene_index"] for r in recs}) >= 4
    for r in recs:
        for key in ("file", "mask"):
            assert (tmp_path / "parallel" / r[key]).read_bytes() == (tmp_path / "serial" / r[key]).read_bytes()


def test_scene_workers_hold_their_cores_and_honour_the_stage_resources(tmp_path, char_frames):
    """The background model declares a core a worker; a stage given `resources: {cpu: 1}` models
    its scenes in one thread, whatever `workers` says."""
    from pipeline_tasks.executor import StageContext
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    config = {"input_dir": str(char_frames), "output_dir": str(tmp_path / "one"), "workers": 3}
    assert SegmentationExecutor("seg", config).default_resources() == {"cpu": 3}
    assert SegmentationExecutor("seg", {**config, "workers": 0}).default_resources()["cpu"] == \
        min(4, len(os.sched_getaffinity(0)))
    held = SegmentationExecutor("seg", config, StageContext("seg", resources={"cpu": 1}))
    assert "scene_workers" not in held.execute({}).metrics
    free = SegmentationExecutor("seg", {**config, "output_dir": str(tmp_path / "three")})
    assert free.execute({}).metrics["scene_workers"] == 3
    assert (tmp_path / "one" / "instances.jsonl").read_bytes() == (tmp_path / "three" / "instances.jsonl").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_scene_model_runs_opencv_on_one_thread(tmp_path, char_frames, monkeypatch, workers):
    """In the stage's main thread (workers: 1) and in its worker threads the scenes are modelled
    with OpenCV on one thread (a core a scene); OpenCV's thread count is given back afterwards."""
    import cv2

    seen = []
    model = BackgroundModelBackend.predict_scene_with_context

    def watched(self, *args):
        seen.append(cv2.getNumThreads())
        return model(self, *args)

    monkeypatch.setattr(BackgroundModelBackend, "predict_scene_with_context", watched)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        run_segmentation(char_frames, tmp_path / "seg", workers=workers)
        assert seen and set(seen) == {1}
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)


class _FailingBackend(BackgroundModelBackend):
    """A background model that fails on its second scene and counts the scenes it starts."""
    started: list[int] = []

    def predict_scene_with_context(self, images, indices, context):
        self.started.append(indices[0])
        if len(self.started) == 2:
            raise StageInputError("scene two is unreadable")
        return super().predict_scene_with_context(images, indices, context)


def test_a_scene_that_fails_in_a_worker_fails_the_stage_with_its_error(tmp_path, char_frames, monkeypatch):
    """A scene model that raises in a worker thread fails the stage with that error (not another
    one about the worker), the scenes not yet started are not modelled, and nothing hangs."""
    from pipeline_tasks.stages.segmentation import SegmentationExecutor
    monkeypatch.setattr(_FailingBackend, "started", [])
    monkeypatch.setattr(SegmentationExecutor, "_backend", lambda self: _FailingBackend())
    with pytest.raises(StageInputError, match="scene two is unreadable"):
        run_segmentation(char_frames, tmp_path / "seg", workers=2)
    scenes = len({json.loads(line)["scene_index"] for line in
                  (char_frames / "frames.jsonl").read_text().splitlines()})
    assert len(_FailingBackend.started) < scenes


def house_shot(frames: int = 40, w: int = 200, h: int = 120):
    """(rgb frames, true masks) of a shot in which a character (pink dress, skin head, dark green
    limbs) walks slowly in front of a green house, the house wider than the character's body but
    never seen away from it, and its colour nowhere else in the shot."""
    import cv2
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, h)[:, None, None]
    bg = (np.array([230, 110, 200]) * (1 - t) + np.array([160, 60, 140]) * t) * np.ones((1, w, 1))
    bg = np.clip(bg + rng.normal(0, 2, (h, w, 1)), 0, 255).astype(np.uint8)
    bg[90:] = (125, 105, 60)
    bg[50:90, 80:120] = (35, 183, 83)
    images, truths = [], []
    for k in range(frames):
        img, mask = bg.copy(), np.zeros((h, w), np.uint8)
        cx = int(round(84 + 32 * k / (frames - 1)))
        for a, col in ((img, (216, 54, 189)), (mask, 255)):
            cv2.fillPoly(a, [np.array([[cx, 58], [cx - 12, 96], [cx + 12, 96]])], col)
        for a, col in ((img, (45, 114, 57)), (mask, 255)):
            cv2.line(a, (cx - 4, 66), (cx - 20, 80 + k % 4), col, 3)
            cv2.line(a, (cx + 4, 66), (cx + 20, 60 - k % 3), col, 3)
            cv2.rectangle(a, (cx - 6, 96), (cx - 3, 112), col, -1)
            cv2.rectangle(a, (cx + 3, 96), (cx + 6, 112), col, -1)
        for a, col in ((img, (247, 172, 160)), (mask, 255)):
            cv2.circle(a, (cx, 50), 10, col, -1)
        images.append(img)
        truths.append(mask > 0)
    return images, truths


def test_background_object_behind_a_character_all_shot_long_stays_background():
    """The house is always inside the character's box, so its colour is never learnt as the
    background's; the colour model must not take it for the character's (it did: every mask
    carried the house, 36-44 % of its pixels)."""
    from pipeline_tasks.stages.characters.background_model import BackgroundModelBackend
    images, truths = house_shot()
    kept = list(range(0, 40, 8))
    context = [(i, im, None) for i, im in enumerate(images) if i not in kept]
    preds = BackgroundModelBackend().predict_scene_with_context([images[i] for i in kept], kept, context)
    for i, pred in zip(kept, preds):
        mask, truth = pred.foreground >= 0.5, truths[i]
        iou = (mask & truth).sum() / (mask | truth).sum()
        outside = (mask & ~truth).sum() / mask.sum()
        assert iou >= 0.9 and outside <= 0.05, (i, iou, outside)


def test_background_regions_that_stay_put_are_measured_on_each_instance():
    """The regions of a mask that keep their place on the background while the character moves are
    reported with the prediction (`static`) and measured per instance (`static_share`): told to keep
    them (`static_regions: keep`), the house is in every mask and makes a tenth of it or more (the
    `static_region` flag's threshold); by default they are made background and nothing is left."""
    from pipeline_tasks.stages.characters import quality
    from pipeline_tasks.stages.characters.instances import split_instances, static_share
    images, truths = house_shot()
    kept = list(range(0, 40, 8))
    context = [(i, im, None) for i, im in enumerate(images) if i not in kept]
    for mode, carried in (("keep", True), ("drop", False)):
        preds = BackgroundModelBackend(static_regions=mode).predict_scene_with_context(
            [images[i] for i in kept], kept, context)
        for i, pred in zip(kept, preds):
            inst = max(split_instances(pred, alpha_threshold=0.5, min_area=50), key=lambda x: x.area)
            share = static_share(inst, pred.static)
            assert (share >= quality.MAX_STATIC_SHARE) == carried, (mode, i, share)
            if carried:       # what is measured static is the house, not the character
                assert (pred.static & truths[i]).sum() <= 0.05 * pred.static.sum(), (i, share)


@pytest.mark.slow
def test_background_pieces_by_a_character_are_not_in_its_masks(tmp_path):
    """The demo's third shot: the camera pans while a character with dark green limbs walks in
    front of a green house with a dark green roof, her head over the house all shot long. The
    colour step took the band of the roof inside her box for hers (its colour is her limbs'), and
    the static-region step missed it, for the roof's outline lies just outside her mask: 100 to 660
    pixels of roof above her head in 6 of the shot's 11 kept frames (up to a tenth of the mask).
    None may be left."""
    import cv2

    from pipeline_tasks.stages.characters.video_context import VideoContext
    from pipeline_tasks.stages.synthetic_video import SyntheticVideoExecutor
    SyntheticVideoExecutor("video", {"output_dir": str(tmp_path), "duration": 24, "fps": 24, "width": 640,
                                     "height": 360, "num_scenes": 8, "num_characters": 4, "seed": 7}).execute({})
    gt = ground_truth.load(tmp_path / "ground_truth.json")
    shot = [f for f in gt["frames"] if f["scene"] == 2]
    start, end = shot[0]["frame"], shot[-1]["frame"] + 1
    kept = list(range(start + 6, end, 6))             # the demo's frames of the shot (4 a second)
    import av
    with av.open(str(tmp_path / "video.mp4")) as container:
        frames = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in kept}
    context = VideoContext(tmp_path / "video.mp4")
    backend = BackgroundModelBackend()
    ctx = context.scene_frames(start, end, 24, backend.work_size(*context.frame_size))
    context.close()
    preds = backend.predict_scene_with_context([frames[i] for i in kept], kept, ctx)
    truths = {f["frame"]: f for f in shot}
    for i, pred in zip(kept, preds):
        truth = np.zeros(pred.foreground.shape, bool)
        for c in truths[i]["characters"]:
            truth |= ground_truth.decode_mask(c, *truth.shape)
        mask = pred.foreground >= 0.5
        beyond = mask & ~(cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
        top = np.flatnonzero(truth.any(axis=1))[0]
        assert beyond[:top].sum() <= 0.005 * mask.sum(), (i, beyond[:top].sum(), mask.sum())
