"""A stage owns only what it wrote: the files a user keeps in an output folder survive every run.

Each stage prunes what an earlier run of it wrote and this run did not (stale frames, clusters
that disappeared, concept folders renamed); these tests put a user's files, folders and links
beside the outputs, run the stages (twice, the second time with another config so that pruning
happens) and check that they are all still there, byte for byte, and that the stages still clean
up after themselves. The last tests check the prune helper itself against a hostile record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import crop_image, make_clustered_crops
from PIL import Image

from pipeline_tasks.errors import StageInputError
from pipeline_tasks.executor import RECORD_NAME, OutputFolder
from pipeline_tasks.stages.clustering import ClusteringExecutor
from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
from pipeline_tasks.stages.segmentation import SegmentationExecutor
from pipeline_tasks.stages.training_data_prep import TrainingDataPrepExecutor
from pipeline_tasks.stages.transcription import TranscriptionExecutor


def run(cls, stage_id: str, **config):
    stage = cls(stage_id, config)
    stage.validate_config()
    return stage.execute({})


def plant(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """A user's files under `root` (relative name -> content)."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def assert_intact(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        assert path.is_file(), f"the user's {name} was removed"
        assert path.read_bytes() == data, f"the user's {name} was overwritten"


# -- frame_extraction ---------------------------------------------------------------------------------

def test_frame_extraction_keeps_a_users_files_named_like_frames(cut_clip, tmp_path):
    out = tmp_path / "frames"
    mine = plant(out, {"frame_notes.txt": b"my notes", "frame_cover.png": b"not a frame", "frames/x.txt": b"x"})
    video = cut_clip["outputs"]["video"]
    first = run(FrameExtractionExecutor, "frames", input_video=video, output_dir=str(out), frames_per_scene=2)
    assert_intact(out, mine)
    # another config: the frames of the first run are not valid any more and are removed
    second = run(FrameExtractionExecutor, "frames", input_video=video, output_dir=str(out), quality="low")
    assert_intact(out, mine)
    written = {json.loads(line)["file"] for line in (out / "frames.jsonl").read_text().splitlines()}
    assert len(written) == second.outputs["frame_count"] < first.outputs["frame_count"]
    assert {p.name for p in out.glob("frame_0*")} == written       # the stage's own stale frames are gone


def test_frame_extraction_never_writes_over_a_users_file(cut_clip, tmp_path):
    out = tmp_path / "frames"
    mine = plant(out, {"frame_0000000.png": b"my picture"})       # the first frame interval mode takes
    with pytest.raises(StageInputError, match="frame_0000000.png"):
        run(FrameExtractionExecutor, "frames", input_video=cut_clip["outputs"]["video"], output_dir=str(out),
            mode="interval", interval=2.0)
    assert_intact(out, mine)


def test_a_link_in_the_output_folder_is_neither_followed_nor_removed(cut_clip, tmp_path):
    precious = plant(tmp_path / "elsewhere", {"precious.png": b"keep me"})
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_link.png").symlink_to(tmp_path / "elsewhere" / "precious.png")
    video = cut_clip["outputs"]["video"]
    run(FrameExtractionExecutor, "frames", input_video=video, output_dir=str(out))
    run(FrameExtractionExecutor, "frames", input_video=video, output_dir=str(out), frames_per_scene=2)
    assert (out / "frame_link.png").is_symlink()
    assert_intact(tmp_path / "elsewhere", precious)


# -- training_data_prep -------------------------------------------------------------------------------

def test_training_data_prep_keeps_a_users_folders_named_like_concepts(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 6, 1: 4})
    out = tmp_path / "dataset"
    mine = plant(out, {"2023_holiday/beach.jpg": b"jpeg", "10_character_0/notes.txt": b"notes", "old.toml": b"t"})
    config = {"input_dir": str(fx["clusters_dir"]), "output_dir": str(out), "resolution": 64}
    run(TrainingDataPrepExecutor, "prep", **config, target_size=10)
    assert_intact(out, mine)
    # fewer images: the repeats change, so the concept folders are renamed and the old ones pruned
    res = run(TrainingDataPrepExecutor, "prep", **config, target_size=4, base_repeats=3)
    assert_intact(out, mine)
    made = {c["folder"] for c in res.outputs["concepts"].values()}
    assert sorted(d.name for d in out.iterdir() if d.is_dir()) == sorted(made | {"2023_holiday", "10_character_0"})
    assert sorted(p.name for p in (out / "10_character_0").iterdir()) == ["notes.txt"]


# -- clustering ---------------------------------------------------------------------------------------

def write_crops(folder: Path, identities: dict[int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for cluster, n in identities.items():
        for i in range(n):
            crop_image(cluster, i, size=(48, 96)).save(folder / f"c{cluster}_{i:02d}.png")


def test_clustering_leaves_folders_it_did_not_create(tmp_path):
    crops, out = tmp_path / "crops", tmp_path / "clusters"
    write_crops(crops, {0: 6, 1: 6, 2: 6})
    mine = plant(out, {"cluster_notes/readme.txt": b"mine", "contact_sheets/mine.png": b"png",
                       "noise/keep.txt": b"keep", "cluster_000/extra.txt": b"extra"})
    (tmp_path / "elsewhere").mkdir()
    outside = plant(tmp_path / "elsewhere", {"a.png": b"a"})
    (out / "cluster_777").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    config = {"input_dir": str(crops), "output_dir": str(out), "min_cluster_size": 3}
    first = run(ClusteringExecutor, "clu", **config)
    assert first.outputs["cluster_count"] == 3
    assert_intact(out, mine)
    # one identity leaves the input: its cluster folder and contact sheet are pruned, nothing else
    listing = [json.loads(line) for line in (out / "clusters.jsonl").read_text().splitlines()]
    (gone,) = {f"cluster_{r['identity']}" for r in listing if r["file"].startswith("c2_")}
    kept = sorted({f"cluster_{r['identity']}.png" for r in listing if not r["file"].startswith("c2_")})
    for p in crops.glob("c2_*.png"):
        p.unlink()
    second = run(ClusteringExecutor, "clu", **config)
    assert second.outputs["cluster_count"] == 2
    assert_intact(out, mine)
    assert (out / "cluster_777").is_symlink()
    assert_intact(tmp_path / "elsewhere", outside)
    assert not (out / gone).exists()
    assert sorted(p.name for p in (out / "contact_sheets").iterdir()) == [*kept, "mine.png"]


# -- segmentation and transcription: a user's subfolder and files beside the items ----------------------

def test_segmentation_keeps_a_users_files_in_its_subfolders(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        img = np.full((48, 64, 3), 255, np.uint8)
        img[10:40, 8 + 4 * i:24 + 4 * i] = (200, 30, 30)
        Image.fromarray(img).save(frames / f"frame_{i:07d}.png")
    out = tmp_path / "seg"
    mine = plant(out, {"characters/readme.txt": b"mine", "records/old.json": b"{}", "notes/a.txt": b"a"})
    config = {"input_dir": str(frames), "output_dir": str(out), "min_area": 20}
    run(SegmentationExecutor, "seg", **config)
    assert_intact(out, mine)
    (frames / "frame_0000003.png").unlink()
    run(SegmentationExecutor, "seg", **config, padding=2)
    assert_intact(out, mine)
    assert not list((out / "records").glob("frame_0000003*"))


def test_transcription_keeps_a_users_files_among_its_chunks(tmp_path):
    from audio_fixtures import silent_wav
    wav = silent_wav(tmp_path / "silence.wav", seconds=12.0)
    out = tmp_path / "asr"
    mine = plant(out, {"chunks/chunk_notes.txt": b"mine", "chunks/chunk_00009.json": b"{\"mine\": 1}"})
    first = run(TranscriptionExecutor, "asr", input=str(wav), output_dir=str(out), chunk_seconds=5)
    assert_intact(out, mine)
    short = silent_wav(tmp_path / "silence.wav", seconds=6.0)
    second = run(TranscriptionExecutor, "asr", input=str(short), output_dir=str(out), chunk_seconds=5)
    assert_intact(out, mine)
    assert first.metrics["chunks"] > second.metrics["chunks"]
    theirs = {f"chunk_{i:05d}.json" for i in range(second.metrics["chunks"])}
    assert {p.name for p in (out / "chunks").iterdir()} == theirs | {"chunk_notes.txt", "chunk_00009.json"}


# -- the prune helper ----------------------------------------------------------------------------------

def open_folder(path: Path, resume=None) -> OutputFolder:
    return OutputFolder(path, stage_id="s", stage_type="t", version="1", resume=resume)


def test_prune_removes_only_recorded_regular_files_inside_the_folder(tmp_path):
    out = tmp_path / "out"
    folder = open_folder(out)
    for name in ("a.txt", "sub/b.txt", "link.txt", "pipe", "dir/c.txt"):
        folder.claim(name).write_bytes(b"stage")
    folder.finish()
    # the user swaps outputs for things of their own, and someone edits the record
    outside = plant(tmp_path, {"outside.txt": b"outside", "target.txt": b"target"})
    (out / "link.txt").unlink()
    (out / "link.txt").symlink_to(tmp_path / "target.txt")
    (out / "pipe").unlink()
    os.mkfifo(out / "pipe")
    (out / "dir" / "c.txt").unlink()
    (out / "dir").rmdir()
    (out / "dir").symlink_to(tmp_path, target_is_directory=True)    # dir/outside.txt resolves outside
    with open(out / RECORD_NAME, "a", encoding="utf-8") as fh:
        for name in ("../outside.txt", str(tmp_path / "outside.txt"), "dir/outside.txt", "sub/../../outside.txt"):
            fh.write(json.dumps({"file": name}) + "\n")
    mine = plant(out, {"sub/mine.txt": b"mine"})
    folder = open_folder(out)
    removed = folder.finish()                   # this run writes nothing: prune everything it may
    assert sorted(removed) == ["a.txt", "sub/b.txt"]
    assert_intact(tmp_path, outside)
    assert_intact(out, mine)
    assert (out / "link.txt").is_symlink() and (out / "pipe").exists() and (out / "dir").is_symlink()


def test_a_changed_resume_state_removes_only_the_stages_files(tmp_path):
    out = tmp_path / "out"
    folder = open_folder(out, resume={"quality": "high"})
    folder.claim("items", "1.png").write_bytes(b"1")
    folder.finish()
    mine = plant(out, {"items/mine.png": b"mine"})
    folder = open_folder(out, resume={"quality": "high"})
    assert folder.wrote_before("items/1.png") and not folder.wrote_before("items/mine.png")
    folder = open_folder(out, resume={"quality": "low"})
    assert not (out / "items" / "1.png").exists() and not folder.previous_files
    assert_intact(out, mine)


def test_leftover_temporary_files_are_swept_only_beside_the_stages_files(tmp_path):
    out = tmp_path / "out"
    folder = open_folder(out)
    folder.claim("frame_1.png")         # recorded, then the run is killed while writing it
    mine = plant(out, {"notes.part-1-2.txt": b"a user's file with a temp-like name"})
    (out / "frame_1.part-4242-0.png").write_bytes(b"half a frame")
    del folder
    open_folder(out)
    assert not (out / "frame_1.part-4242-0.png").exists()
    assert_intact(out, mine)


def test_a_record_lists_what_the_stage_may_have_written_before_it_writes(tmp_path):
    out = tmp_path / "out"
    folder = open_folder(out)
    folder.claim("sub", "a.txt")
    # nothing written yet, the run not finished: a crash now still leaves the claim on record
    lines = [json.loads(line) for line in (out / RECORD_NAME).read_text().splitlines()]
    assert {"file": "sub/a.txt"} in lines and {"dir": "sub"} in lines
