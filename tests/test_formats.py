"""The files stages hand each other, each with one reader and one writer: frames.jsonl and
scenes.csv (video), instances.jsonl and clusters.jsonl (characters), metadata.jsonl (dataset).
Round trips, the exact bytes the writers produce, and a bad line named by file and line number,
through the readers and through the stages that consume them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_tasks.errors import StageInputError
from pipeline_tasks.stages.characters.formats import (
    ClusterRecord,
    InstanceRecord,
    read_clusters,
    read_instances,
    write_clusters,
    write_instances,
)
from pipeline_tasks.stages.dataset.formats import MetadataRow, read_metadata, write_metadata
from pipeline_tasks.stages.video.formats import (
    FrameRecord,
    SceneRow,
    read_frames,
    read_scenes,
    write_frames,
    write_scenes,
)

FRAMES = [FrameRecord("frame_0000003.png", 3, 0, 0.12, "scene"),
          FrameRecord("frame_0000040.png", 40, 1, 1.6, "interval"),
          FrameRecord("/abs/elsewhere.jpg", 41)]                      # a hand-made listing's minimum
INSTANCES = [InstanceRecord("characters/frame_0000003_00.png", "masks/frame_0000003_00.png", "frame_0000003.png",
                            3, 0, (10, 20, 30, 40), (2, 12, 46, 56), 900, 0.8731, (320, 180)),
             InstanceRecord("characters/b.png", "masks/b.png", "b.png", 4, 1, (0, 0, 1, 1), (0, 0, 9, 9), 1, 1.0)]
CLUSTERS = [ClusterRecord("characters/a.png", 0, 0.97), ClusterRecord("characters/b.png", -1, 0.0),
            ClusterRecord("characters/c.png", 1, 0.5, reassigned=True)]


def bad_line(read, path: Path, lines: list[str | bytes]) -> StageInputError:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    with pytest.raises(StageInputError) as err:
        read(path, stage="consumer")
    return err.value


# -- frames.jsonl ------------------------------------------------------------------------------------
def test_frames_round_trip_and_bytes(tmp_path):
    path = tmp_path / "frames.jsonl"
    text = write_frames(path, FRAMES)
    assert path.read_text() == text
    assert read_frames(path) == FRAMES
    first = json.loads(text.splitlines()[0])
    assert first == {"file": "frame_0000003.png", "frame_index": 3, "pts_time": 0.12, "scene_index": 0,
                     "source": "scene"}
    assert list(first) == sorted(first)                                   # keys sorted: stable bytes
    assert json.loads(text.splitlines()[2]) == {"file": "/abs/elsewhere.jpg", "frame_index": 41, "scene_index": 0}


@pytest.mark.parametrize("line, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "a JSON object was expected, not [1, 2]"),
    ('{"file": "a.png"}', "missing field 'frame_index'"),
    ('{"file": "a.png", "frame_index": "3"}', "field 'frame_index' must be an integer, not \"3\""),
    ('{"file": "a.png", "frame_index": true}', "field 'frame_index' must be an integer, not true"),
    ('{"file": 7, "frame_index": 3}', "field 'file' must be a string, not 7"),
    ('{"file": "a.png", "frame_index": 3, "pts_time": "late"}', "field 'pts_time' must be a number"),
    (b'{"file": "\xff.png", "frame_index": 3}', "not UTF-8 text"),
])
def test_frames_bad_line_is_named(tmp_path, line, reason):
    path = tmp_path / "frames.jsonl"
    good = json.dumps(FRAMES[0].to_dict())
    err = bad_line(read_frames, path, [good, "", line])
    assert (err.path, err.line, err.stage) == (str(path), 3, "consumer")
    assert str(err).startswith(f"{path}:3: stage 'consumer': not a frame record: ")
    assert reason in str(err) and str(err).endswith("(rerun frame_extraction)")


def test_a_missing_listing_is_named(tmp_path):
    with pytest.raises(StageInputError, match=r"frames.jsonl not found \(rerun frame_extraction\)"):
        read_frames(tmp_path / "frames.jsonl")
    with pytest.raises(StageInputError, match=r"scenes.csv not found"):
        read_scenes(tmp_path / "scenes.csv")
    with pytest.raises(StageInputError, match=r"clusters.jsonl not found \(rerun clustering\)"):
        read_clusters(tmp_path / "clusters.jsonl")


# -- scenes.csv --------------------------------------------------------------------------------------
def test_scenes_round_trip_and_bytes(tmp_path):
    path = tmp_path / "scenes.csv"
    rows = [SceneRow(0, 0, 30, 0.0, 1.2), SceneRow(1, 30, 180, 1.2, 7.2)]
    text = write_scenes(path, rows)
    assert text == path.read_text() == ("scene_index,start_frame,end_frame,start_time,end_time\n"
                                        "0,0,30,0.000000,1.200000\n1,30,180,1.200000,7.200000\n")
    assert read_scenes(path) == rows
    assert write_scenes(tmp_path / "again.csv", read_scenes(path)) == text


def test_scenes_bad_header_and_row_are_named(tmp_path):
    path = tmp_path / "scenes.csv"
    path.write_text("scene,start\n0,0\n")
    with pytest.raises(StageInputError) as err:
        read_scenes(path)
    assert err.value.line == 1 and "header must be scene_index,start_frame" in str(err.value)
    path.write_text("scene_index,start_frame,end_frame,start_time,end_time\n0,0,30,0.0,1.2\n\n1,thirty,180,1.2,7.2\n")
    with pytest.raises(StageInputError) as err:
        read_scenes(path, stage="eval")
    assert str(err.value) == (f"{path}:4: stage 'eval': not a scene row: start_frame must be an integer, not "
                              "'thirty' (rerun frame_extraction)")
    path.write_text("scene_index,start_frame,end_frame,start_time,end_time\n0,0,30\n")
    with pytest.raises(StageInputError, match="3 columns instead of 5"):
        read_scenes(path)


# -- instances.jsonl and clusters.jsonl --------------------------------------------------------------
def test_instances_round_trip_and_bytes(tmp_path):
    path = tmp_path / "instances.jsonl"
    text = write_instances(path, INSTANCES)
    assert read_instances(path) == INSTANCES
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["bbox"] == [10, 20, 30, 40] and first["frame_size"] == [320, 180]
    assert "frame_size" not in second                      # optional: a listing without it still reads
    assert list(first) == sorted(first)


def test_instances_bad_line_is_named(tmp_path):
    bad = dict(INSTANCES[0].to_dict(), bbox=[1, 2, 3])
    err = bad_line(read_instances, tmp_path / "instances.jsonl", [json.dumps(INSTANCES[1].to_dict()), json.dumps(bad)])
    assert err.line == 2 and "not a character instance record: field 'bbox' must be a list of 4 integers" in str(err)
    assert str(err).endswith("(rerun segmentation)")


def test_clusters_round_trip_and_bytes(tmp_path):
    path = tmp_path / "clusters.jsonl"
    text = write_clusters(path, CLUSTERS)
    assert read_clusters(path) == CLUSTERS
    assert text.splitlines() == ['{"cluster": 0, "file": "characters/a.png", "probability": 0.97}',
                                 '{"cluster": -1, "file": "characters/b.png", "probability": 0.0}',
                                 '{"cluster": 1, "file": "characters/c.png", "probability": 0.5, "reassigned": true}']


def test_clusters_bad_line_is_named(tmp_path):
    err = bad_line(read_clusters, tmp_path / "clusters.jsonl",
                   [json.dumps(CLUSTERS[0].to_dict()), '{"file": "x.png", "cluster": "noise", "probability": 0}'])
    assert err.line == 2 and "not a cluster record: field 'cluster' must be an integer, not \"noise\"" in str(err)


# -- metadata.jsonl ----------------------------------------------------------------------------------
def test_metadata_round_trip_sorted_and_utf8(tmp_path):
    path = tmp_path / "metadata.jsonl"
    rows = [MetadataRow("10_bob/b.png", "bob, scene 2"), MetadataRow("10_alice/a.png", "Zoë\u2028two lines")]
    text = write_metadata(path, rows)
    assert read_metadata(path) == sorted(rows, key=lambda r: r.file_name)
    assert "Zoë\u2028" in path.read_text(encoding="utf-8") and text.count("\n") == 2     # one record a line
    assert text.split("\n")[0] == '{"file_name": "10_alice/a.png", "text": "Zoë\u2028two lines"}'


def test_metadata_bad_line_is_named(tmp_path):
    err = bad_line(read_metadata, tmp_path / "metadata.jsonl", ['{"file_name": "a.png"}'])
    assert err.line == 1 and "not a dataset metadata record: missing field 'text'" in str(err)


# -- the consumers read through them -----------------------------------------------------------------
def test_consumers_name_the_bad_line(tmp_path):
    from pipeline_tasks.stages.characters.frames_input import list_frames
    from pipeline_tasks.stages.clustering import ClusteringExecutor
    from pipeline_tasks.stages.dataset.candidates import load_candidates
    from pipeline_tasks.stages.evaluate import EvaluateExecutor

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frames.jsonl").write_text('{"file": "a.png", "frame_index": 0}\n{"file": "b.png"}\n')
    with pytest.raises(StageInputError, match=r"frames.jsonl:2: stage 'seg': not a frame record"):
        list_frames(frames, stage="seg")

    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "instances.jsonl").write_text(json.dumps(INSTANCES[0].to_dict()) + "\n{}\n")
    stage = ClusteringExecutor("clu", {"input_dir": str(seg), "output_dir": str(tmp_path / "clu")})
    with pytest.raises(StageInputError, match=r"instances.jsonl:2: stage 'clu': not a character instance record"):
        stage.execute({})

    clu = tmp_path / "clu"
    clu.mkdir()
    (clu / "clusters.jsonl").write_text('{"file": "a.png", "cluster": 1.5, "probability": 1}\n')
    with pytest.raises(StageInputError, match=r"clusters.jsonl:1: stage 'prep': not a cluster record: field "
                                              r"'cluster' must be an integer, not 1.5"):
        load_candidates(clu, stage="prep")

    (frames / "scenes.csv").write_text("scene_index,start_frame,end_frame,start_time,end_time\n0,zero,1,0,1\n")
    gt = tmp_path / "ground_truth.json"
    gt.write_text(json.dumps({"cut_frames": []}))
    stage = EvaluateExecutor("eval", {"ground_truth": str(gt), "output_dir": str(tmp_path / "eval"),
                                   "frames_dir": str(frames)})
    with pytest.raises(StageInputError, match=r"scenes.csv:2: stage 'eval': not a scene row"):
        stage.execute({})


def test_the_report_skips_a_damaged_listing(tmp_path):
    """The HTML report shows what it can: a listing with a bad line gives no pictures, not a crash."""
    from PIL import Image

    from pipeline_tasks.report.media import dataset_samples, sample_frames

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "frame_0000003.png")
    write_frames(tmp_path / "frames.jsonl", FRAMES[:1])
    (pic,) = sample_frames({"frames_jsonl": str(tmp_path / "frames.jsonl")}, 4)
    assert pic.caption == "frame 3 · scene 0"
    (tmp_path / "frames.jsonl").write_text("{broken\n")
    assert sample_frames({"frames_jsonl": str(tmp_path / "frames.jsonl")}, 4) == []
    (tmp_path / "10_a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "10_a" / "x.png")
    write_metadata(tmp_path / "metadata.jsonl", [MetadataRow("10_a/x.png", "a caption")])
    samples = dataset_samples({"metadata_jsonl": str(tmp_path / "metadata.jsonl")}, 3)
    assert [p.caption for p in samples] == ["a caption"]
