"""clustering of the segmentation's crops: the ARI target against the true identities, outputs,
determinism, resume, noise reassignment, face features and bad inputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from character_fixtures import run_clustering, write_png
from PIL import Image

from pipeline_tasks.errors import ModelWeightsError, StageConfigError, StageInputError
from pipeline_tasks.stages.characters.hdbscan_clusters import cluster_embeddings, merge_within_epsilon
from pipeline_tasks.stages.characters.metrics import clustering_scores


def read_clusters(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "clusters.jsonl").read_text().splitlines()]


def test_meets_ari_target(clu_run, seg_run, char_clip):
    s = clustering_scores(clu_run["dir"] / "clusters.jsonl", seg_run["dir"] / "instances.jsonl",
                          char_clip["outputs"]["ground_truth"])
    assert s["labelled"] >= 80
    assert s["ari"] >= 0.9, s
    assert s["noise_fraction"] <= 0.15, s
    assert s["purity"] >= 0.95, s


def test_outputs_contract(clu_run, seg_run):
    out, res = clu_run["dir"], clu_run["result"]
    recs = read_clusters(out)
    instances = [json.loads(line) for line in (seg_run["dir"] / "instances.jsonl").read_text().splitlines()]
    assert [r["file"] for r in recs] == [i["file"] for i in instances]
    sizes = res.outputs["cluster_sizes"]
    assert sum(sizes.values()) == len(recs)
    assert res.outputs["cluster_count"] == len({r["cluster"] for r in recs if r["cluster"] != -1}) >= 2
    for r in recs:
        folder = "noise" if r["cluster"] == -1 else f"cluster_{r['identity']}"
        copied = out / folder / Path(r["file"]).name
        assert copied.read_bytes() == (seg_run["dir"] / r["file"]).read_bytes()
        assert (r["probability"] == 0) == (r["cluster"] == -1) or 0 < r["probability"] <= 1
    for name, n in sizes.items():
        assert len(list((out / name).iterdir())) == n
        if name != "noise":
            sheet = Image.open(out / "contact_sheets" / f"{name}.png")
            cols = min(8, n)
            assert sheet.size == (cols * 96, ((min(n, 64) + cols - 1) // cols) * 96)
    # clusters are numbered by size (their folders are named by identity)
    numbers = {f"cluster_{r['identity']}": r["cluster"] for r in recs if r["cluster"] != -1}
    ordered = [sizes[k] for k in sorted(numbers, key=numbers.get)]
    assert ordered == sorted(ordered, reverse=True) and sorted(numbers.values()) == list(range(len(numbers)))


def test_characters_folder_as_input(tmp_path, clu_run, seg_run):
    """`input_dir: "{segment.output_dir}/characters"` (the design's form): the crops alone, without
    instances.jsonl, cluster as the segmentation folder does."""
    res = run_clustering(seg_run["dir"] / "characters", tmp_path / "out")
    by_name = {Path(r["file"]).name: r["cluster"] for r in read_clusters(tmp_path / "out")}
    reference = {Path(r["file"]).name: r["cluster"] for r in read_clusters(clu_run["dir"])}
    assert res.outputs["crop_count"] == clu_run["result"].outputs["crop_count"] == len(by_name)
    assert by_name == reference


def test_deterministic_and_resumes(tmp_path, clu_run, seg_run):
    out = tmp_path / "clu"
    first = run_clustering(seg_run["dir"], out)
    assert first.metrics["embedded"] == first.outputs["crop_count"]
    assert (out / "clusters.jsonl").read_bytes() == (clu_run["dir"] / "clusters.jsonl").read_bytes()
    again = run_clustering(seg_run["dir"], out)
    assert again.metrics["embedded"] == 0 and again.metrics["resumed"] == first.outputs["crop_count"]
    assert (out / "clusters.jsonl").read_bytes() == (clu_run["dir"] / "clusters.jsonl").read_bytes()
    # a different min_cluster_size reuses the embeddings but re-clusters; stale folders go away
    big = run_clustering(seg_run["dir"], out, min_cluster_size=200)
    assert big.metrics["embedded"] == 0
    assert big.outputs["cluster_count"] == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["contact_sheets", "noise"]


def test_two_clean_runs_write_identical_bytes(tmp_path, clu_run, seg_run):
    """The same crops written at another time (a re-segmentation: same bytes, new mtimes) cluster
    into byte-identical outputs, embedding cache included; and the cache still resumes them."""
    import os

    from pipeline_tasks.engine.manifest import scan_files

    again = tmp_path / "seg"
    shutil.copytree(seg_run["dir"], again)
    for p in again.rglob("*"):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns + 10**12, st.st_mtime_ns + 10**12))
    run_clustering(again, tmp_path / "clu")
    assert scan_files(tmp_path / "clu") == scan_files(clu_run["dir"])
    resumed = run_clustering(seg_run["dir"], tmp_path / "clu")
    assert resumed.metrics["embedded"] == 0 and scan_files(tmp_path / "clu") == scan_files(clu_run["dir"])


def test_embedding_cache_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    import time

    from pipeline_tasks.stages.characters import embedding_cache
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = embedding_cache.encode("fp", ["a", "b", "c"], vectors)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)       # 2033: any other zip time
    assert embedding_cache.encode("fp", ["a", "b", "c"], vectors) == first
    path = tmp_path / "embeddings.npz"
    assert embedding_cache.save(path, "fp", ["a", "b", "c"], vectors) is True
    assert embedding_cache.save(path, "fp", ["a", "b", "c"], vectors) is False      # same bytes: not rewritten
    loaded = embedding_cache.load(path, "fp")
    assert list(loaded) == ["a", "b", "c"] and np.array_equal(loaded["b"], vectors[1])
    assert embedding_cache.load(path, "other settings") == {}
    path.write_bytes(b"not a zip")
    assert embedding_cache.load(path, "fp") == {}


def test_cluster_embeddings_numbering_and_noise_reassignment():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 5], 0.05, (30, 3))
    b = rng.normal([5, 0, 0], 0.05, (12, 3))
    stray = np.array([[0.5, 0.5, 15.0]])         # far from cluster a (noise), but pointing the same way
    X = np.vstack([b, a, stray]).astype(np.float32)
    labels, probs, re = cluster_embeddings(X, min_cluster_size=5)
    assert set(labels[:12]) == {1} and set(labels[12:42]) == {0}      # the larger cluster is 0
    assert labels[42] == -1 and probs[42] == 0 and not re.any()
    labels, probs, re = cluster_embeddings(X, min_cluster_size=5, reassign_noise=True, reassign_similarity=0.95)
    assert labels[42] == 0 and re[42] and 0 < probs[42] <= 1 and re.sum() == 1
    # the same input always gives the same output
    again = cluster_embeddings(X, min_cluster_size=5, reassign_noise=True, reassign_similarity=0.95)
    assert np.array_equal(again[0], labels) and np.array_equal(again[1], probs)


def test_epsilon_merges_close_clusters():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 0.01, (10, 2)), rng.normal([0.3, 0], 0.01, (10, 2)),
                   rng.normal([5, 5], 0.01, (10, 2))])
    labels = np.repeat([0, 1, 2], 10)
    merged = merge_within_epsilon(X, labels, 0.5)
    assert len(set(merged[:20])) == 1 and merged[25] != merged[0]
    labels, _, _ = cluster_embeddings(X.astype(np.float32), min_cluster_size=5, epsilon=0.5)
    assert len(set(labels[:20])) == 1 and labels[25] != labels[0] and -1 not in labels


def test_scores_definition(tmp_path, seg_run, char_clip):
    """clustering_scores on a hand-made clustering: one identity split in two lowers ARI but not purity."""
    from pipeline_tasks.stages.characters.metrics import identity_labels
    truth = identity_labels(seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    files = sorted(f for f, t in truth.items() if t is not None)
    perfect = [{"file": f, "cluster": truth[f], "probability": 1.0} for f in files]
    path = tmp_path / "clusters.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in perfect))
    s = clustering_scores(path, seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    assert s["ari"] == 1.0 and s["purity"] == 1.0 and s["noise_fraction"] == 0
    split = [dict(r, cluster=(10 if r["cluster"] == 0 and i % 2 else r["cluster"])) for i, r in enumerate(perfect)]
    split[0]["cluster"] = -1
    path.write_text("".join(json.dumps(r) + "\n" for r in split))
    s = clustering_scores(path, seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    from sklearn.metrics import adjusted_rand_score
    kept = split[1:]                      # the noise point is left out of the ARI
    expected = adjusted_rand_score([truth[r["file"]] for r in kept], [r["cluster"] for r in kept])
    assert s["ari"] == pytest.approx(expected) and s["ari"] < 0.99
    assert s["purity"] == 1.0 and s["noise_fraction"] == pytest.approx(1 / len(files))
    assert s["ari_noise_as_singletons"] < s["ari"]


def test_face_features_animeface(tmp_path, seg_run, char_clip):
    out = tmp_path / "faces"
    res = run_clustering(seg_run["dir"], out, use_face_detection=True, face_detector="animeface")
    assert res.metrics["faces_found"] is not None
    s = clustering_scores(out / "clusters.jsonl", seg_run["dir"] / "instances.jsonl",
                          char_clip["outputs"]["ground_truth"])
    assert s["ari"] >= 0.9 and s["noise_fraction"] <= 0.15, s
    with np.load(out / "embeddings.npz") as z:       # base embedding + 65 face features
        assert z["vectors"].shape[1] == 256 + 128 + 65


@pytest.mark.slow
def test_face_features_mtcnn(tmp_path, seg_run):
    pytest.importorskip("facenet_pytorch")
    crops = tmp_path / "crops"
    crops.mkdir()
    for p in sorted((seg_run["dir"] / "characters").iterdir())[:8]:
        shutil.copy(p, crops / p.name)
    res = run_clustering(crops, tmp_path / "out", use_face_detection=True, face_detector="mtcnn", min_cluster_size=2)
    assert res.metrics["faces_found"] is not None and res.metrics["embedded"] == 8
    with np.load(tmp_path / "out" / "embeddings.npz") as z:
        assert z["vectors"].shape == (8, 256 + 128 + 65)


def test_face_region_feature():
    from pipeline_tasks.stages.characters.faces import FEATURE_SIZE, face_region_feature
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    left, right = face_region_feature(img, (0, 0, 20, 40)), face_region_feature(img, (20, 0, 40, 40))
    assert left.shape == (FEATURE_SIZE,) and left[-1] == 1.0
    assert np.isclose(np.linalg.norm(left[:-1]), 1.0) and float(left[:-1] @ right[:-1]) == 0.0


# -- bad inputs ---------------------------------------------------------------------------------------

def test_image_without_alpha(tmp_path):
    d = tmp_path / "crops"
    write_png(d / "a.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(StageInputError) as err:
        run_clustering(d, tmp_path / "out")
    assert "image has no alpha channel" in str(err.value) and "a.png" in str(err.value)


def test_empty_input_dir(tmp_path):
    (tmp_path / "crops").mkdir()
    with pytest.raises(StageInputError) as err:
        run_clustering(tmp_path / "crops", tmp_path / "out")
    assert "no character crops to cluster" in str(err.value)
    with pytest.raises(StageInputError) as err:
        run_clustering(tmp_path / "missing", tmp_path / "out")
    assert "input directory does not exist" in str(err.value)


def test_unreadable_crop(tmp_path):
    d = tmp_path / "crops"
    write_png(d / "a.png", np.zeros((20, 20, 4), np.uint8))
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(StageInputError) as err:
        run_clustering(d, tmp_path / "out")
    assert "cannot read image" in str(err.value) and "b.png" in str(err.value)


def test_missing_embedder_weights(tmp_path):
    from pipeline_tasks.stages.clustering import ClusteringExecutor
    cfg = {"input_dir": "x", "output_dir": "y", "embedder": "facenet"}
    # no weights: the default catalogue entry, which the (empty) model cache lacks
    with pytest.raises(ModelWeightsError) as err:
        ClusteringExecutor("clu", cfg).validate_config()
    assert err.value.key == "embedder_weights"
    assert "fetch it with `pipeline-tasks models fetch facenet-vggface2`" in str(err.value)
    missing = tmp_path / "20180402-114759-vggface2.pt"
    with pytest.raises(ModelWeightsError) as err:
        ClusteringExecutor("clu", {**cfg, "embedder_weights": str(missing)}).validate_config()
    assert str(missing) in str(err.value) and "facenet-vggface2" in str(err.value)
    with pytest.raises(StageConfigError) as err:
        ClusteringExecutor("clu", {**cfg, "embedder": "colour", "embedder_weights": str(missing)}).validate_config()
    assert err.value.key == "embedder_weights"


def test_validate_names_the_face_detector_package(monkeypatch):
    from pipeline_tasks.stages.clustering import ClusteringExecutor
    from pipeline_tasks.weights import packages
    real = packages.installed
    monkeypatch.setattr(packages, "installed", lambda module: module != "facenet_pytorch" and real(module))
    cfg = {"input_dir": "x", "output_dir": "y", "use_face_detection": True, "face_detector": "mtcnn"}
    with pytest.raises(StageConfigError) as err:
        ClusteringExecutor("clu", cfg).validate_config()
    assert "face_detector 'mtcnn' needs the Python package facenet-pytorch" in str(err.value)
    assert err.value.key == "face_detector"
    ClusteringExecutor("clu", {**cfg, "face_detector": "animeface"}).validate_config()


def test_facenet_embedder_with_saved_weights(tmp_path, seg_run, char_clip):
    torch = pytest.importorskip("torch")
    facenet = pytest.importorskip("facenet_pytorch")
    torch.manual_seed(0)
    weights = tmp_path / "inception_resnet_v1.pt"
    torch.save(facenet.InceptionResnetV1(pretrained=None).state_dict(), weights)
    crops = tmp_path / "crops"
    crops.mkdir()
    for p in sorted((seg_run["dir"] / "characters").iterdir())[:12]:
        shutil.copy(p, crops / p.name)
    res = run_clustering(crops, tmp_path / "out", embedder="facenet", embedder_weights=str(weights),
                         min_cluster_size=3)
    assert res.outputs["crop_count"] == 12 and res.metrics["embedded"] == 12
    with np.load(tmp_path / "out" / "embeddings.npz") as z:
        assert z["vectors"].shape == (12, 512)
        assert np.allclose(np.linalg.norm(z["vectors"], axis=1), 1.0, atol=1e-4)   # facenet L2-normalises


# -- through the engine ---------------------------------------------------------------------------

PIPELINE = """
pipeline:
  name: characters
  version: "1.0"
stages:
  - id: make_video
    type: synthetic_video
    config: {output_dir: work/video, duration: 6, fps: 24, width: 256, height: 144, num_scenes: 3,
             num_characters: 3, seed: 11}
  - id: extract_frames
    type: frame_extraction
    depends_on: [make_video]
    config: {input_video: "{make_video.output_dir}/video.mp4", output_dir: work/frames, mode: hybrid,
             interval: 0.25, dedup_threshold: -1}
  - id: segment
    type: segmentation
    depends_on: [extract_frames]
    config: {input_dir: "{extract_frames.output_dir}", output_dir: work/segments, model: background,
             alpha_threshold: 0.5, extract_characters: true}
  - id: cluster
    type: clustering
    depends_on: [segment]
    config: {input_dir: "{segment.output_dir}", output_dir: work/clusters, min_cluster_size: 5,
             use_face_detection: false}
"""


@pytest.mark.slow
def test_pipeline_through_the_engine(ws):
    from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator
    config = ws.write("characters.yaml", PIPELINE)
    orchestrator = PipelineOrchestrator(OrchestratorConfig(show_progress=False))
    result = orchestrator.execute_pipeline(PipelineBuilder().load_from_yaml(config))
    assert result.success, result.error_message
    work = ws.root / "work"
    seg = json.loads((work / "segments" / ".stage.json").read_text())
    clu = json.loads((work / "clusters" / ".stage.json").read_text())
    assert seg["outputs"]["character_count"] > 0
    assert sum(clu["outputs"]["cluster_sizes"].values()) == seg["outputs"]["character_count"]
    s = clustering_scores(work / "clusters" / "clusters.jsonl", work / "segments" / "instances.jsonl",
                          work / "video" / "ground_truth.json")
    assert s["labelled"] > 0 and s["purity"] >= 0.9, s
    again = orchestrator.execute_pipeline(PipelineBuilder().load_from_yaml(config))
    assert again.success and again.executed == []


@pytest.mark.slow
def test_mtcnn_finds_the_heroine_in_sintel(tmp_path):
    """Real faces: MTCNN (weights shipped in facenet-pytorch) on Sintel frames; the clustering stage
    gets face features for crops that contain one."""
    pytest.importorskip("facenet_pytorch")
    import av
    from conftest import SHARED_DATA

    from pipeline_tasks.stages.characters.faces import FaceFeatures
    video = SHARED_DATA / "sintel_clip_26s" / "sintel_clip_26s.mp4"
    with av.open(str(video)) as c:
        frames = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 50 == 0}
    faces = FaceFeatures("mtcnn")
    found = {i: faces.detect(img) for i, img in frames.items()}
    assert sum(b is not None for b in found.values()) >= 4
    # frame 450: a close-up of the heroine, her face inside x 300..520, y 60..320 (checked by eye)
    x0, y0, x1, y1 = found[450]
    assert 300 <= x0 < x1 <= 520 and 60 <= y0 < y1 <= 320
    crops = tmp_path / "crops"
    for i in (100, 450, 600):
        rgba = np.dstack([frames[i], np.full(frames[i].shape[:2], 255, np.uint8)])
        write_png(crops / f"sintel_{i:04d}.png", rgba)
    write_png(crops / "flat.png", np.full((120, 120, 4), 255, np.uint8))
    res = run_clustering(crops, tmp_path / "out", use_face_detection=True, face_detector="mtcnn", min_cluster_size=2)
    assert res.metrics["faces_found"] == 3
    with np.load(tmp_path / "out" / "embeddings.npz") as z:
        flags = z["vectors"][:, -1]
    assert flags.tolist() == [0.0, 1.0, 1.0, 1.0]        # flat.png sorts first and has no face


def test_gathered_input_folders_keep_same_named_crops_apart(tmp_path):
    """A list of input folders (a gather over items): crops named alike in two items are recorded
    and copied under their item's label, and training_data_prep finds each one back."""
    from pipeline_tasks.stages.clustering import ClusteringExecutor
    from pipeline_tasks.stages.dataset.candidates import load_candidates
    rng = np.random.default_rng(0)
    folders = []
    for item in ("ep01", "ep02"):
        d = tmp_path / "characters" / item
        for colour, name in (((220, 30, 30), "r"), ((30, 30, 220), "b")):
            for i in range(4):
                crop = np.zeros((24, 16, 4), np.uint8)
                crop[..., :3] = np.clip(np.array(colour) + rng.integers(-8, 8, 3), 0, 255)
                crop[2:22, 2:14, 3] = 255
                write_png(d / f"{name}{i}.png", crop)
        folders.append(str(d))
    config = {"input_dir": folders, "output_dir": str(tmp_path / "out"), "min_cluster_size": 3}
    stage = ClusteringExecutor("clu", config)
    stage.validate_config()
    result = stage.execute({})
    records = read_clusters(tmp_path / "out")
    assert len(records) == 16 and {r["item"] for r in records} == {"ep01", "ep02"}
    assert {r["file"] for r in records} >= {"ep01/r0.png", "ep02/r0.png"}
    copies = sorted(p.name for p in (tmp_path / "out").glob("cluster_*/*.png"))
    assert len(copies) == 16 and "ep01_r0.png" in copies and "ep02_r0.png" in copies
    assert result.outputs["crop_count"] == 16
    candidates = load_candidates(tmp_path / "out")
    assert len({c.path for c in candidates}) == 16
    assert {c.item for c in candidates} == {"ep01", "ep02"}


def test_a_short_video_with_a_few_crops_a_character_forms_one_cluster_each(tmp_path, seg_run, char_clip):
    """Default settings on 5 clean crops of each character (a short video): one cluster per
    character. A fixed min_cluster_size of 10 would call them all noise."""
    from pipeline_tasks.stages.characters.formats import read_instances
    from pipeline_tasks.stages.characters.metrics import instance_truth
    truth = instance_truth(seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    crops, picked = tmp_path / "crops", {}
    crops.mkdir()
    for r in read_instances(seg_run["dir"] / "instances.jsonl"):
        ident, kind = truth[r.file]
        if kind == "single" and not r.flags and len(picked.setdefault(ident, [])) < 5:
            picked[ident].append(r.file)
            shutil.copyfile(seg_run["dir"] / r.file, crops / f"c{ident}_{Path(r.file).name}")
    assert len(picked) >= 3 and all(len(v) == 5 for v in picked.values()), picked
    res = run_clustering(crops, tmp_path / "out")
    recs = read_clusters(tmp_path / "out")
    assert res.metrics["min_cluster_size"] == 3
    by_character: dict[str, set[int]] = {}
    for r in recs:
        by_character.setdefault(r["file"].split("_")[0], set()).add(r["cluster"])
    assert all(len(c) == 1 and -1 not in c for c in by_character.values()), by_character
    assert res.outputs["cluster_count"] == len(picked)
    # told a min_cluster_size, the stage uses it
    assert run_clustering(crops, tmp_path / "fixed", min_cluster_size=10).metrics["min_cluster_size"] == 10


def test_clusters_of_one_look_merge():
    """Two HDBSCAN clusters with nearly the same centroid (one character in two poses) become one;
    two characters stay apart."""
    from pipeline_tasks.stages.characters.hdbscan_clusters import merge_similar
    rng = np.random.default_rng(0)
    a, b = np.abs(rng.normal(size=16)), np.abs(rng.normal(size=16))
    c = a + 0.3 * np.abs(rng.normal(size=16))                  # a in another pose
    X = np.stack([a, c, b])
    assert float((a / np.linalg.norm(a)) @ (c / np.linalg.norm(c))) > 0.9
    merged = merge_similar(X, np.array([0, 1, 2]), 0.82)
    assert merged[0] == merged[1] != merged[2]
    assert list(merge_similar(X, np.array([0, 1, -1]), 0.999)) == [0, 1, -1]
