"""Identities a person can name and keep: clusters keyed by fingerprint across reruns and episodes,
names.yaml for folders and captions, and `pipeline-tasks clusters`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from character_fixtures import run_clustering
from dataset_fixtures import crop_image

from pipeline_tasks.errors import StageConfigError, StageInputError
from pipeline_tasks.stages.training_data_prep import TrainingDataPrepExecutor


def write_crops(folder: Path, counts: dict[int, int], start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for character, n in counts.items():
        for i in range(start, start + n):
            crop_image(character, i, size=(48, 96)).save(folder / f"c{character}_{i:03d}.png")


def identity_of(out: Path) -> dict[int, set[str]]:
    """character -> the identities its clustered crops got (the character is in the crop's file
    name); noise has none ("" when all of a character's crops are noise)."""
    found: dict[int, set[str]] = {}
    for line in (out / "clusters.jsonl").read_text().splitlines():
        r = json.loads(line)
        found.setdefault(int(Path(r["file"]).name[1]), set())
        if r.get("identity"):
            found[int(Path(r["file"]).name[1])].add(r["identity"])
    return {k: v or {""} for k, v in found.items()}


def numbers_of(out: Path) -> dict[str, int]:
    return {r["identity"]: r["cluster"] for r in map(json.loads, (out / "clusters.jsonl").read_text().splitlines())
            if r["cluster"] != -1}


def test_a_rerun_with_more_crops_keeps_every_identity_although_sizes_change(tmp_path):
    crops, out = tmp_path / "crops", tmp_path / "clusters"
    write_crops(crops, {0: 12, 1: 9, 2: 6})
    run_clustering(crops, out, min_cluster_size=4)
    first = identity_of(out)
    assert all(len(ids) == 1 and "" not in ids for ids in first.values()) and len(set.union(*first.values())) == 3
    before = numbers_of(out)
    assert sorted((out / "contact_sheets").iterdir()) == sorted(
        out / "contact_sheets" / f"cluster_{next(iter(ids))}.png" for ids in first.values())
    # more footage: character 2 becomes the largest cluster, so size ranks move; identities stay
    write_crops(crops, {2: 14}, start=100)
    res = run_clustering(crops, out, min_cluster_size=4)
    assert identity_of(out) == first
    after = numbers_of(out)
    assert after != before and after[next(iter(first[2]))] == 0
    assert set(res.outputs["cluster_sizes"]) - {"noise"} == {f"cluster_{next(iter(ids))}" for ids in first.values()}
    assert (out / "identities.npz").is_file() and res.outputs["identities"] == str(out / "identities.npz")


def test_a_new_episode_takes_the_identities_of_an_earlier_one(tmp_path):
    ep1, ep2 = tmp_path / "ep1", tmp_path / "ep2"
    write_crops(ep1 / "crops", {0: 10, 1: 10, 2: 10})
    run_clustering(ep1 / "crops", ep1 / "clusters", min_cluster_size=5)
    known = identity_of(ep1 / "clusters")
    # episode 2: other crops of the same characters; character 2 only 3 times (too few for a cluster)
    write_crops(ep2 / "crops", {0: 8, 1: 8, 2: 3}, start=50)
    alone = run_clustering(ep2 / "crops", ep2 / "alone", min_cluster_size=5)
    assert identity_of(ep2 / "alone")[2] == {""} and alone.outputs["noise_count"] == 3
    res = run_clustering(ep2 / "crops", ep2 / "clusters", min_cluster_size=5,
                         known_identities=str(ep1 / "clusters" / "identities.npz"))
    assert identity_of(ep2 / "clusters") == known
    assert res.outputs["noise_count"] == 0 and res.metrics["reassigned"] == 3
    # identities of another embedder configuration cannot name these clusters
    with pytest.raises(StageInputError, match="another embedder configuration"):
        run_clustering(ep2 / "crops", ep2 / "other", min_cluster_size=5, layout_weight=1.0,
                       known_identities=str(ep1 / "clusters" / "identities.npz"))


def run_prep(clusters_dir, output_dir, **config):
    stage = TrainingDataPrepExecutor("prep", {"input_dir": str(clusters_dir), "output_dir": str(output_dir), **config})
    stage.validate_config()
    return stage.execute({})


def test_names_yaml_names_folders_and_captions_and_leaves_excluded_identities_out(tmp_path):
    crops, out = tmp_path / "crops", tmp_path / "clusters"
    write_crops(crops, {0: 8, 1: 8, 2: 8})
    run_clustering(crops, out, min_cluster_size=4)
    ids = {c: next(iter(v)) for c, v in identity_of(out).items()}
    names = tmp_path / "names.yaml"
    names.write_text(f"names:\n  cluster_{ids[0]}: heroine\n  {ids[1]}: sidekick\nexclude: [cluster_{ids[2]}]\n")
    res = run_prep(out, tmp_path / "ds", names=str(names), resolution=128, target_size=16, dedup_threshold=-1,
                   trigger_word="tok")
    assert sorted(res.outputs["concepts"]) == ["heroine", "sidekick"]
    assert res.outputs["concepts"]["heroine"]["identity"] == ids[0]
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if p.is_dir()) == ["10_heroine", "10_sidekick"]
    texts = [json.loads(line)["text"] for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert len(texts) == 16 and all(t.split(", ")[1] in ("heroine", "sidekick") for t in texts)
    report = json.loads((tmp_path / "ds" / "quality.json").read_text())
    assert report["excluded"] == {"excluded": 8} and report["clusters_left_out"] == {f"cluster_{ids[2]}": "excluded"}
    names.write_text("names: [heroine]\n")
    with pytest.raises(StageConfigError, match="'names' must map fingerprints to non-empty names"):
        run_prep(out, tmp_path / "ds2", names=str(names))


def test_the_clusters_command_shows_fingerprints_names_and_contact_sheets(ws):
    write_crops(ws.root / "crops", {0: 8, 1: 8})
    ws.write("names.yaml", "names: {}\n")
    ws.write("p.yaml", """
pipeline: {name: naming}
stages:
  - id: cluster
    type: clustering
    config: {input_dir: crops, output_dir: out/clusters, min_cluster_size: 4}
  - id: prep
    type: training_data_prep
    depends_on: [cluster]
    config: {input_dir: "{cluster.output_dir}", output_dir: out/ds, names: names.yaml, resolution: 128}
""")
    early = ws.cli("clusters", "p.yaml")
    assert early.returncode != 0 and "run the pipeline first" in early.stderr and "Traceback" not in early.stderr
    ws.cli("run", "p.yaml", "--no-progress", check=True)
    ids = {c: next(iter(v)) for c, v in identity_of(ws.root / "out/clusters").items()}
    ws.write("names.yaml", f"names: {{cluster_{ids[0]}: heroine}}\n")
    shown = ws.cli("clusters", "p.yaml", check=True).stdout
    line = next(ln for ln in shown.splitlines() if f"cluster_{ids[0]}" in ln)
    assert "8 crops" in line and "heroine" in line and f"contact_sheets/cluster_{ids[0]}.png" in line
    assert "(unnamed)" in next(ln for ln in shown.splitlines() if f"cluster_{ids[1]}" in ln)
    ws.cli("clusters", "p.yaml", "--html", "sheets.html", check=True)
    html = (ws.root / "sheets.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and f'data-cluster="cluster_{ids[0]}"' in html
    # a name change reruns only the dataset, which now uses it
    again = ws.cli("run", "p.yaml", "--no-progress", check=True).stdout
    assert "-- cluster (up to date)" in again and ".  prep" in again
    assert (ws.root / "out/ds/10_heroine").is_dir()
