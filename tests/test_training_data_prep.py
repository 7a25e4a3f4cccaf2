"""training_data_prep on generated RGBA crops laid out like the clustering stage's output."""
from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import pytest
from dataset_fixtures import make_clustered_crops
from PIL import Image

from pipeline_tasks.errors import StageConfigError, StageInputError
from pipeline_tasks.stages.dataset import buckets, dedup, quality, selection
from pipeline_tasks.stages.training_data_prep import TrainingDataPrepExecutor
from pipeline_tasks.stages.video.phash import hamming


def run_prep(clusters_dir, output_dir, **config):
    source = clusters_dir if isinstance(clusters_dir, list) else str(clusters_dir)
    stage = TrainingDataPrepExecutor("prep", {"input_dir": source, "output_dir": str(output_dir), **config})
    stage.validate_config()
    return stage.execute({})


def read_metadata(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines() if line.strip()]


def concept_dirs(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.is_dir())


def test_layout_balance_and_captions(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 8, 1: 5, 2: 2}, noise=3)
    out = tmp_path / "dataset"
    res = run_prep(fx["clusters_dir"], out, instances_jsonl=str(fx["instances_jsonl"]), target_size=8,
                   resolution=128, cluster_names={0: "alice", 1: "bob"}, trigger_word="tok",
                   caption_template="{trigger}, {name}, scene {scene}, frame {frame}")
    assert res.outputs["dataset_size"] == 8
    assert res.outputs["skipped_clusters"] == {"2": 2}
    # kohya folders: <repeats>_<name>, balanced 4 + 4, equal counts -> equal repeats
    assert [d.name for d in concept_dirs(out)] == ["10_alice", "10_bob"]
    for d in concept_dirs(out):
        pngs, txts = sorted(d.glob("*.png")), sorted(d.glob("*.txt"))
        assert len(pngs) == 4 and [p.stem for p in pngs] == [t.stem for t in txts]
        for p in pngs:
            with Image.open(p) as im:
                assert im.size == (128, 128) and im.mode == "RGB"
                assert im.getpixel((0, 0)) == (255, 255, 255)          # white background fill
    # HF imagefolder metadata: every row names an existing image, text == its .txt caption
    rows = read_metadata(out)
    assert len(rows) == 8
    by_instance = {Path(r["file"]).name: r for r in fx["instances"]}
    for row in rows:
        img = out / row["file_name"]
        assert img.is_file()
        assert img.with_suffix(".txt").read_text().strip() == row["text"]
        name = row["file_name"].split("/")[0].split("_", 1)[1]
        assert row["text"].startswith(f"tok, {name}, scene ")
        # the scene / frame in the caption are those of one of that cluster's crops
        scene, frame = (int(part.split()[1]) for part in row["text"].split(", ")[2:4])
        cluster = 0 if name == "alice" else 1
        assert any(i["frame_index"] == frame and i["scene_index"] == scene and f"_c{cluster + 1}_" in n
                   for n, i in by_instance.items())
    # kohya dataset toml, read with the stdlib
    toml = tomllib.loads((out / "dataset.toml").read_text())
    assert toml["general"]["caption_extension"] == ".txt"
    (ds,) = toml["datasets"]
    assert ds["resolution"] == 128 and ds["enable_bucket"] is False
    subsets = {Path(s["image_dir"]).name: s for s in ds["subsets"]}
    assert set(subsets) == {"10_alice", "10_bob"}
    for folder, s in subsets.items():
        assert Path(s["image_dir"]).is_dir() and s["num_repeats"] == int(folder.split("_")[0])
    assert subsets["10_alice"]["class_tokens"] == "tok alice"


def test_dataset_files_read_by_other_tools_and_the_same_in_any_clone(tmp_path, monkeypatch):
    """image_dir relative to the project folder (where the trainer starts), a concept column that
    the Hugging Face `datasets` library loads, and byte-identical files in another clone."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    texts = {}
    for clone in ("clone_a", "clone_b"):
        project = tmp_path / clone
        fx = make_clustered_crops(project, {0: 4, 1: 3}, noise=0)
        monkeypatch.chdir(project)
        run_prep(fx["clusters_dir"].relative_to(project), "data/set", target_size=6, resolution=64,
                 min_cluster_size=1, cluster_names={0: "alice", 1: "bob"}, trigger_word="tok")
        texts[clone] = {name: (project / "data/set" / name).read_bytes()
                        for name in ("dataset.toml", "metadata.jsonl", "selection.jsonl")}
        toml = tomllib.loads(texts[clone]["dataset.toml"].decode())
        dirs = sorted(s["image_dir"] for s in toml["datasets"][0]["subsets"])
        assert dirs == ["data/set/10_alice", "data/set/10_bob"]
        assert all((project / d).is_dir() for d in dirs)
    assert texts["clone_a"] == texts["clone_b"]
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "clone_a/data/set"), split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded.column_names) == {"image", "text", "concept"}
    assert sorted(loaded["concept"]) == ["alice"] * 3 + ["bob"] * 3
    assert all(concept in text for text, concept in zip(loaded["text"], loaded["concept"]))
    assert loaded[0]["image"].size == (64, 64)


def test_ranking_prefers_sharp_crops_and_drops_duplicates(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 8}, blurred={0: 3}, duplicates={0: 3})
    out = tmp_path / "ds"
    res = run_prep(fx["clusters_dir"], out, target_size=5, resolution=64, min_cluster_size=1)
    assert res.metrics["duplicates_removed"] == 3
    assert res.outputs["dataset_size"] == 5
    # the chosen five are the five sharp crops (sharpness measured here, on the crops themselves)
    picks = [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]
    chosen = {Path(p["source"]).name for p in picks}
    assert len(chosen) == 5 and not chosen & fx["blurred"]
    crops = sorted((fx["clusters_dir"] / "cluster_000").glob("*.png"))
    sharp = {p.name: quality.sharpness(quality.load_rgba(p)) for p in crops}
    assert max(sharp[n] for n in fx["blurred"]) < min(sharp[n] for n in chosen)
    assert {p["file_name"] for p in picks} == {r["file_name"] for r in read_metadata(out)}
    # the copies of one crop were dropped: no two picks are near-duplicates of each other
    assert not chosen & fx["duplicates"]
    hashes = [dedup.crop_hash(quality.load_rgba(fx["clusters_dir"] / "cluster_000" / n)) for n in chosen]
    assert all(hamming(a, b) > 4 for i, a in enumerate(hashes) for b in hashes[i + 1:])
    # with room for one more, the best blurred crop comes in: the ranking, not chance, kept them out
    run_prep(fx["clusters_dir"], tmp_path / "ds2", target_size=6, resolution=64, min_cluster_size=1)
    picks2 = [json.loads(line) for line in (tmp_path / "ds2" / "selection.jsonl").read_text().splitlines()]
    extra = {Path(p["source"]).name for p in picks2} - chosen
    assert len(extra) == 1 and extra <= fx["blurred"]


def test_face_presence_outranks_sharpness_when_weighted(tmp_path, monkeypatch):
    """A stand-in detector that 'finds faces' only in the blurred crops: with a heavy face weight those
    are picked, with face ranking off they are not."""
    from pipeline_tasks.stages.dataset import quality as q

    class BlurryFaces:
        def __init__(self, detector, stage=None):
            assert detector == "animeface"

        def __call__(self, rgba):
            return 1.0 if q.sharpness(rgba) < 1000 else 0.0

    monkeypatch.setattr(q, "FacePresence", BlurryFaces)
    fx = make_clustered_crops(tmp_path, {0: 8}, blurred={0: 3})

    def picked(out, **cfg):
        run_prep(fx["clusters_dir"], out, target_size=3, resolution=64, **cfg)
        return {Path(json.loads(line)["source"]).name for line in (out / "selection.jsonl").read_text().splitlines()}

    assert picked(tmp_path / "faces", face_detector="animeface",
                  rank_weights={"face": 5.0, "sharpness": 1.0, "size": 1.0}) == fx["blurred"]
    assert not picked(tmp_path / "plain") & fx["blurred"]


def test_repeats_balance_unequal_concepts_and_shortfall_warns(tmp_path, caplog):
    fx = make_clustered_crops(tmp_path, {0: 9, 1: 3})
    with caplog.at_level(logging.WARNING):
        res = run_prep(fx["clusters_dir"], tmp_path / "ds", target_size=100, resolution=64, dedup_threshold=-1)
    assert res.outputs["dataset_size"] == 12 and res.outputs["shortfall"] == 88
    assert "target_size=100 is larger than the 12 usable crops" in caplog.text
    concepts = res.outputs["concepts"]
    assert concepts["character_0"]["repeats"] == 10 and concepts["character_1"]["repeats"] == 30
    # images x repeats equal per concept
    assert {c["images"] * c["repeats"] for c in concepts.values()} == {90}
    assert sorted(d.name for d in concept_dirs(tmp_path / "ds")) == ["10_character_0", "30_character_1"]


def test_shortfall_error_mode(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 4})
    with pytest.raises(StageInputError, match=r"target_size=50 is larger than the 4 usable crops"):
        run_prep(fx["clusters_dir"], tmp_path / "ds", target_size=50, on_shortfall="error", dedup_threshold=-1,
                 resolution=128)


def test_no_usable_clusters(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 2, 1: 1}, noise=5)
    expected = r"no cluster has at least min_cluster_size=3 crops \(cluster 0: 2, cluster 1: 1\)"
    with pytest.raises(StageInputError, match=expected):
        run_prep(fx["clusters_dir"], tmp_path / "ds")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StageInputError, match="no clusters.jsonl"):
        run_prep(empty, tmp_path / "ds")
    (empty / "clusters.jsonl").write_text("")
    with pytest.raises(StageInputError, match="no cluster has at least"):
        run_prep(empty, tmp_path / "ds")
    with pytest.raises(StageInputError, match="input directory does not exist"):
        run_prep(tmp_path / "nope", tmp_path / "ds")


def test_missing_crop_and_unwritable_output(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 4})
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(StageInputError, match="output directory is not writable") as err:
        run_prep(fx["clusters_dir"], blocker / "ds")
    assert str(blocker / "ds") in str(err.value)
    gone = fx["clusters_dir"] / "cluster_000" / Path(fx["records"][0]["file"]).name
    gone.unlink()
    with pytest.raises(StageInputError, match="is missing; rerun clustering"):
        run_prep(fx["clusters_dir"], tmp_path / "ds")


@pytest.mark.parametrize("style", ["relative", "absolute"])
def test_crop_paths_relative_to_clusters_dir_or_absolute(tmp_path, style):
    fx = make_clustered_crops(tmp_path, {0: 3, 1: 3}, path_style=style)
    res = run_prep(fx["clusters_dir"], tmp_path / "ds", target_size=6, resolution=64)
    assert res.outputs["dataset_size"] == 6


def test_aspect_buckets_and_transparent_background(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 4})
    out = tmp_path / "ds"
    run_prep(fx["clusters_dir"], out, resolution=256, bucket_mode="aspect_buckets", background="transparent",
             target_size=4, max_upscale=8)
    allowed = set(buckets.make_buckets(256, 64))
    crops = {p.name: Image.open(p).size for p in (fx["clusters_dir"] / "cluster_000").glob("*.png")}
    for p in (out / "10_character_0").glob("*.png"):
        with Image.open(p) as im:
            assert im.mode == "RGBA" and im.size in allowed
            assert im.width % 64 == 0 and im.height % 64 == 0 and im.width * im.height <= 256 * 256
            assert im.width < im.height                      # the crops are all portrait
            assert im.getpixel((0, 0))[3] == 0               # transparent fill
    # each image's size is the bucket closest in aspect ratio to one of the crops
    expected = {buckets.pick_bucket(w, h, buckets.make_buckets(256, 64)) for w, h in crops.values()}
    got = {Image.open(p).size for p in (out / "10_character_0").glob("*.png")}
    assert got <= expected and len(got) >= 1
    toml = tomllib.loads((out / "dataset.toml").read_text())
    assert toml["datasets"][0]["enable_bucket"] is True and toml["datasets"][0]["bucket_reso_steps"] == 64


def test_colour_background(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 3})
    out = tmp_path / "ds"
    run_prep(fx["clusters_dir"], out, resolution=64, background="#102030", target_size=3)
    for p in (out / "10_character_0").glob("*.png"):
        assert Image.open(p).getpixel((0, 0)) == (16, 32, 48)


def test_resume_and_changes(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 6, 1: 6})
    out = tmp_path / "ds"
    cfg = {"resolution": 64, "target_size": 8, "dedup_threshold": -1}
    first = run_prep(fx["clusters_dir"], out, **cfg)
    assert first.metrics["written"] == 8
    snapshot = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = run_prep(fx["clusters_dir"], out, **cfg)
    assert again.metrics == {**first.metrics, "written": 0, "reused": 8}
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    # smaller target: fewer images, nothing stale left behind, metadata in step with the files
    smaller = run_prep(fx["clusters_dir"], out, **{**cfg, "target_size": 4})
    assert smaller.metrics["written"] == 0
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert on_disk == sorted(r["file_name"] for r in read_metadata(out)) and len(on_disk) == 4
    # new repeats rename the folders; the images move instead of being remade
    renamed = run_prep(fx["clusters_dir"], out, **{**cfg, "target_size": 4, "base_repeats": 3})
    assert renamed.metrics["written"] == 0 and renamed.metrics["reused"] == 4
    assert [d.name for d in concept_dirs(out)] == ["3_character_0", "3_character_1"]
    # a different resolution remakes them
    assert run_prep(fx["clusters_dir"], out, **{**cfg, "target_size": 4, "resolution": 96}).metrics["written"] == 4


def test_no_captions_mode(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 3})
    out = tmp_path / "ds"
    run_prep(fx["clusters_dir"], out, generate_captions=False, trigger_word="zz", target_size=3, resolution=64)
    assert not list(out.rglob("*.txt"))
    assert {r["text"] for r in read_metadata(out)} == {"zz character_0"}
    run_prep(fx["clusters_dir"], tmp_path / "ds2", generate_captions=False, target_size=3, resolution=64)
    assert {r["text"] for r in read_metadata(tmp_path / "ds2")} == {"character_0"}


def test_default_caption_without_trigger_or_metadata(tmp_path):
    """The default template's 'scene {scene}' part is dropped when no instances.jsonl says the scene;
    no trigger configured means none in the caption."""
    fx = make_clustered_crops(tmp_path, {0: 3})
    out = tmp_path / "ds"
    run_prep(fx["clusters_dir"], out, target_size=3, resolution=64)
    assert {p.read_text() for p in out.rglob("*.txt")} == {"character_0, solo, full body\n"}
    run_prep(fx["clusters_dir"], out, target_size=3, resolution=64, instances_jsonl=str(fx["instances_jsonl"]))
    scenes = {i["scene_index"] for i in fx["instances"]}
    texts = {p.read_text().strip() for p in out.rglob("*.txt")}
    assert texts <= {f"character_0, solo, full body, scene {s}" for s in scenes} and texts


def test_config_errors(tmp_path):
    with pytest.raises(StageConfigError, match=r"unknown caption field \{colour\}"):
        run_prep(tmp_path, tmp_path / "o", caption_template="{trigger} {colour}")
    with pytest.raises(StageConfigError, match="same folder name"):
        run_prep(tmp_path, tmp_path / "o", cluster_names={0: "A b", 1: "a_b"})
    with pytest.raises(StageConfigError, match="keys must be cluster numbers"):
        run_prep(tmp_path, tmp_path / "o", cluster_names={"x": "a"})


def test_schema_rejects_bad_background_through_the_spec(ws):
    from pipeline_tasks import PipelineBuilder
    from pipeline_tasks.errors import SpecError
    spec = {"pipeline": {"name": "p", "version": "1"},
            "stages": [{"id": "prep", "type": "training_data_prep",
                        "config": {"input_dir": "clu", "output_dir": "ds", "background": "purple"}}]}
    with pytest.raises(SpecError, match="background"):
        PipelineBuilder().load_from_dict(spec)


def test_allocation_and_repeats_units():
    assert selection.allocate({0: 10, 1: 2, 2: 5}, 12) == {0: 5, 1: 2, 2: 5}
    assert selection.allocate({0: 10, 1: 10}, 7) in ({0: 4, 1: 3}, {0: 3, 1: 4})
    assert sum(selection.allocate({0: 3, 1: 3}, 100).values()) == 6
    assert selection.balance_repeats({0: 20, 1: 5}, 2) == {0: 2, 1: 8}
    assert selection.percentile_ranks([3.0, 1.0, 2.0, 2.0]) == [1.0, 0.0, 0.5, 0.5]


def test_a_gather_over_several_clustering_outputs_keeps_their_clusters_apart(tmp_path):
    """input_dir as a list (clustering run per item): each item's clusters are concepts of their own,
    named by item; instances_jsonl is paired with input_dir in order."""
    ep1 = make_clustered_crops(tmp_path / "ep1", {0: 5, 1: 4}, noise=2, seed=1)
    ep10 = make_clustered_crops(tmp_path / "ep10", {0: 3, 1: 6}, seed=2)
    out = tmp_path / "dataset"
    res = run_prep([str(ep1["clusters_dir"]), str(ep10["clusters_dir"])], out,
                   instances_jsonl=[str(ep1["instances_jsonl"]), str(ep10["instances_jsonl"])], target_size=12,
                   resolution=64, min_cluster_size=4, cluster_names={"ep10:1": "bob"}, trigger_word="tok",
                   caption_template="{trigger}, {name}, cluster {cluster}, frame {frame}")
    concepts = res.outputs["concepts"]
    assert set(concepts) == {"ep1_character_0", "ep1_character_1", "bob"}
    assert res.outputs["skipped_clusters"] == {"ep10:0": 3}
    assert {n: (c["item"], c["cluster"]) for n, c in concepts.items()} == {
        "ep1_character_0": ("ep1", 0), "ep1_character_1": ("ep1", 1), "bob": ("ep10", 1)}
    assert res.outputs["dataset_size"] == 12 == sum(c["images"] for c in concepts.values())
    picks = [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]
    frames = {item: {Path(i["file"]).name: i["frame_index"] for i in fx["instances"]}
              for item, fx in (("ep1", ep1), ("ep10", ep10))}
    rows = {r["file_name"]: r["text"] for r in read_metadata(out)}
    for p in picks:
        concept = next(c for c in concepts.values() if p["file_name"].startswith(c["folder"] + "/"))
        # every image comes from its own item's folder, with that item's instance metadata in its caption
        assert p["item"] == concept["item"] and p["cluster"] == concept["cluster"]
        assert Path(p["source"]).is_relative_to(tmp_path / p["item"])
        assert f"_{p['item']}_" in p["file_name"]
        frame = frames[p["item"]][Path(p["source"]).name]
        assert rows[p["file_name"]].endswith(f"cluster {p['cluster']}, frame {frame}")
    with pytest.raises(StageConfigError, match="instances_jsonl lists 3 files for 2 input folders"):
        run_prep([str(ep1["clusters_dir"]), str(ep10["clusters_dir"])], tmp_path / "d2",
                 instances_jsonl=[str(ep1["instances_jsonl"])] * 3)
