"""Quality gates: crop flags (segmentation), cluster verdicts (clustering), the dataset's gates
(training_data_prep), quality.json of each stage and the summary in the CLI's last lines."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from character_fixtures import run_clustering
from dataset_fixtures import crop_image, make_clustered_crops
from PIL import Image

from pipeline_tasks.errors import StageInputError
from pipeline_tasks.stages.characters import quality
from pipeline_tasks.stages.characters.formats import InstanceRecord, read_clusters
from pipeline_tasks.stages.training_data_prep import TrainingDataPrepExecutor

FRAME = (320, 180)


def figure(cluster: int, index: int, size=(40, 90)) -> np.ndarray:
    return np.asarray(crop_image(cluster, index, size=size))


def place(frame_rgba: np.ndarray, crop: np.ndarray, x: int, y: int) -> None:
    h, w = crop.shape[:2]
    region = frame_rgba[y:y + h, x:x + w]
    opaque = crop[..., 3:4] >= 128
    region[...] = np.where(opaque, crop, region)


def write_instance(seg: Path, name: str, canvas: np.ndarray, frame_index: int, scene_index: int = 0) -> InstanceRecord:
    """An instance record and crop file for the opaque part of a frame-sized RGBA canvas."""
    m = canvas[..., 3] >= 128
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    x, y, w, h = int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
    x0, y0 = max(0, x - 4), max(0, y - 4)
    x1, y1 = min(FRAME[0], x + w + 4), min(FRAME[1], y + h + 4)
    crop = canvas[y0:y1, x0:x1]
    (seg / "characters").mkdir(parents=True, exist_ok=True)
    Image.fromarray(crop, "RGBA").save(seg / "characters" / name)
    return InstanceRecord(file=f"characters/{name}", mask=f"masks/{name}", source_frame=f"f{frame_index}.png",
                          frame_index=frame_index, scene_index=scene_index, bbox=(x, y, w, h),
                          crop_box=(x0, y0, x1 - x0, y1 - y0), area=int(m.sum()), score=1.0, frame_size=FRAME)


def canvas() -> np.ndarray:
    return np.zeros((FRAME[1], FRAME[0], 4), np.uint8)


def test_crop_flags_say_what_is_wrong_with_each_crop(tmp_path):
    seg = tmp_path / "seg"
    cases = {}
    c = canvas()
    place(c, figure(0, 0), 100, 40)
    cases["whole"] = c
    c = canvas()
    place(c, figure(0, 1), 100, 40)
    place(c, figure(1, 1), 146, 40)                       # two characters, 6 px apart: one instance
    cases["pair"] = c
    c = canvas()
    place(c, figure(2, 4), 100, 40)
    place(c, figure(3, 4), 125, 40)                       # two characters overlapping: one piece, two palettes
    cases["overlap"] = c
    c = canvas()
    place(c, figure(2, 2)[:, 15:], 0, 40)                 # its left part outside the frame
    cases["cut"] = c
    c = canvas()
    c[100:106, 20:300] = (90, 140, 200, 255)              # a strip of sky
    cases["strip"] = c
    c = canvas()
    c[40:130, 100:140] = (3, 3, 3, 255)                   # a black blob
    cases["black"] = c
    c = canvas()
    place(c, figure(3, 3, size=(10, 20)), 150, 80)        # a speck
    cases["speck"] = c
    records = [write_instance(seg, f"{name}.png", c, i) for i, (name, c) in enumerate(cases.items())]
    busy = np.repeat((np.indices(FRAME[::-1]).sum(axis=0) % 64 * 3).astype(np.uint8)[..., None], 3, axis=2)
    flagged, report = quality.assess_instances(seg, records, lambda r: busy, quality.CropThresholds())
    flags = {Path(r.file).stem: r.flags for r in flagged}
    assert flags == {"whole": (), "pair": ("multi",), "overlap": ("multi",), "cut": ("border",),
                     "strip": ("fragment", "blank"), "black": ("blank",), "speck": ("small",)}
    assert report["flagged"] == 6 and report["flags"] == {"small": 1, "border": 1, "fragment": 1, "multi": 2,
                                                          "blank": 2}
    assert report["summary"] == "6 of 7 crops flagged (small 1, border 1, fragment 1, multi 2, blank 2)"
    # a blank frame (a fade to black) flags a large instance found in it; small ones speak for themselves
    c = canvas()
    place(c, figure(1, 5, size=(160, 176)), 80, 2)
    big = write_instance(seg, "big.png", c, 9)
    dark = lambda r: np.zeros((*FRAME[::-1], 3), np.uint8)      # noqa: E731
    flagged, report = quality.assess_instances(seg, [records[0], big], dark, quality.CropThresholds())
    assert [r.flags for r in flagged] == [(), ("blank",)] and report["blank_frames"] == [9]
    flagged, report = quality.assess_instances(seg, [big], lambda r: busy, quality.CropThresholds())
    assert flagged[0].flags == () and report["blank_frames"] == []


def test_segmentation_flags_its_instances_and_writes_quality_json(seg_run, char_clip):
    from pipeline_tasks.stages.characters.metrics import instance_truth
    out = seg_run["dir"]
    records = [InstanceRecord.from_dict(r) for r in read_instances_json(out)]
    report = json.loads((out / "quality.json").read_text())
    assert report["crop_count"] == len(records) and len(report["by_crop"]) == len(records)
    assert {c["file"]: tuple(c["flags"]) for c in report["by_crop"]} == {r.file: r.flags for r in records}
    assert seg_run["result"].outputs["quality_summary"] == report["summary"]
    truth = instance_truth(out / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    # a crop of one whole character is not called several characters, nor blank
    singles = [r for r in records if truth[r.file][1] == "single"]
    assert singles and not [r.file for r in singles if {"multi", "blank"} & set(r.flags)]


# a short cartoon whose characters walk into each other: many frames of two touching or overlapping
OVERLAP_CLIP = {"width": 320, "height": 180, "fps": 24, "duration": 6.0, "num_scenes": 2, "num_characters": 3,
                "seed": 4, "transition": "cut"}


def test_characters_touching_or_overlapping_are_flagged_multi_and_single_ones_are_not(tmp_path_factory, tmp_path):
    from character_fixtures import FRAMES_CONFIG, run_segmentation
    from video_fixtures import render_clip

    from pipeline_tasks.stages.characters.formats import read_instances
    from pipeline_tasks.stages.characters.metrics import instance_truth
    from pipeline_tasks.stages.frame_extraction import FrameExtractionExecutor
    clip = render_clip(tmp_path_factory, "overlap", OVERLAP_CLIP)
    frames, seg = tmp_path / "frames", tmp_path / "seg"
    FrameExtractionExecutor("frames", {"input_video": clip["outputs"]["video"], "output_dir": str(frames),
                                       **FRAMES_CONFIG}).execute({})
    run_segmentation(frames, seg)
    truth = instance_truth(seg / "instances.jsonl", clip["outputs"]["ground_truth"])
    records = read_instances(seg / "instances.jsonl")
    pairs = [r for r in records if truth[r.file][1] == "multi"]
    singles = [r for r in records if truth[r.file][1] == "single"]
    assert len(pairs) >= 8 and len(singles) >= 8
    # most pairs are one piece (touching or overlapping): their pieces alone do not tell
    measures = {c["file"]: c["measures"] for c in json.loads((seg / "quality.json").read_text())["by_crop"]}
    one_piece = [r for r in pairs if measures[r.file]["second_part"] < quality.CropThresholds.multi_part_share]
    assert len(one_piece) >= len(pairs) / 2
    assert sum("multi" in r.flags for r in pairs) >= 0.75 * len(pairs)      # the pieces rule alone: 2 of 14
    assert not [r.file for r in singles if "multi" in r.flags]
    # flags come from the written crops: a resumed run flags alike
    before = (seg / "instances.jsonl").read_text()
    assert run_segmentation(frames, seg).metrics["resumed"] == len(list(frames.glob("*.png")))
    assert (seg / "instances.jsonl").read_text() == before


def sprite(character, height: int, facing: int = 1, mouth: bool = False) -> np.ndarray:
    """A synthetic cartoon character (video/render.py) as an RGBA image, alpha its mask."""
    from pipeline_tasks.stages.video.render import render_sprite
    sp = render_sprite(character, height, facing, mouth, False)
    return np.dstack([sp.rgb, sp.mask.astype(np.uint8) * 255])


def stand(canvas_rgba: np.ndarray, rgba: np.ndarray, x: int, bottom: int) -> None:
    place(canvas_rgba, rgba, x, bottom - rgba.shape[0])


def test_a_character_in_front_of_another_is_flagged_multi_by_the_characters_seen_alone(tmp_path):
    """One character standing in front of another is one piece whose left and right hold the same
    colours: neither the pieces rule nor `palette_split` sees two. Its colours are those of two
    characters seen whole, alone, in other crops of the run: `known_pair`. Characters of every body
    and head shape and palette, each seen alone in a few poses, or once, are not flagged."""
    from pipeline_tasks.stages.video.render import make_characters
    seg = tmp_path / "seg"
    cast = make_characters(7, np.random.default_rng(3))
    records, singles, pairs = [], {}, {}
    for k, ch in enumerate(cast[:6]):                     # 4 body shapes, 3 head shapes, 6 palettes
        for j, (height, facing, mouth) in enumerate(((100, 1, False), (110, -1, True), (95, 1, True))):
            c = canvas()
            stand(c, sprite(ch, height, facing, mouth), 100 + 20 * j, 170)
            records.append(write_instance(seg, f"single_{k}_{j}.png", c, len(records)))
            singles[records[-1].file] = k
    c = canvas()
    stand(c, sprite(cast[6], 105), 120, 170)              # seen once: nothing to compare it with
    records.append(write_instance(seg, "once.png", c, len(records)))
    for back, front in ((2, 3), (4, 5), (1, 4)):
        for dx in (-18, 0, 14):                            # its head beside, right behind, beside
            c = canvas()
            b, f = sprite(cast[back], 120), sprite(cast[front], 100, mouth=True)
            stand(c, b, 120, 160)
            stand(c, f, 120 + (b.shape[1] - f.shape[1]) // 2 + dx, 172)     # nearer: lower in the frame
            records.append(write_instance(seg, f"pair_{back}{front}_{dx}.png", c, len(records)))
            pairs[records[-1].file] = {back, front}
    busy = np.random.default_rng(0).integers(0, 255, (*FRAME[::-1], 3), dtype=np.uint8)
    flagged, report = quality.assess_instances(seg, records, lambda r: busy, quality.CropThresholds())
    flags = {r.file: r.flags for r in flagged}
    by_crop = {c["file"]: c for c in report["by_crop"]}
    assert {f: flags[f] for f in pairs} == {f: ("multi",) for f in pairs}
    assert not [f for f in [*singles, "characters/once.png"] if flags[f]]
    for f, who in pairs.items():                           # the two characters it holds, each seen alone
        assert {singles[p] for p in by_crop[f]["known_pair_of"]} == who
    # right behind: one piece, the same colours left and right; the earlier rules do not tell
    behind = [by_crop[f]["measures"] for f in pairs if f.endswith("_0.png")]
    assert all(m["second_part"] < quality.CropThresholds.multi_part_share
               and m["palette_split"] < quality.CropThresholds.multi_palette_split for m in behind)
    assert all(m["known_pair"] >= quality.CropThresholds.multi_known_pair for m in behind)
    assert max(by_crop[f]["measures"]["known_pair"] for f in singles) < 0.5 * quality.CropThresholds.multi_known_pair


def test_a_character_cut_by_the_frame_is_judged_by_its_whole_views(tmp_path):
    """Real crops, flagged by the segmentation's crop gates: a character seen whole in two scenes
    and cut by the frame edge in more than half of its crops (entering and leaving in pans) is
    `ok`; the same crops with every whole view from one shot, and strips and blobs on the frame
    edge with no whole crop, are `junk`."""
    from pipeline_tasks.stages.characters import cluster_quality
    from pipeline_tasks.stages.characters.embedders import ColourEmbedder
    seg, built = tmp_path / "seg", []                     # (name, canvas, scene, cluster)
    for k in range(4):                                    # character 0 whole: two scenes
        c = canvas()
        place(c, figure(0, k), 60 + 40 * k, 40)
        built.append((f"whole{k}", c, k % 2, 0))
    for k in range(5):                                    # character 0 cut by the left or right edge
        c, crop = canvas(), figure(0, 10 + k)
        if k % 2:
            place(c, crop[:, :32], FRAME[0] - 32, 40 + 5 * k)
        else:
            place(c, crop[:, 6 + k:], 0, 40 + 5 * k)
        built.append((f"cut{k}", c, k % 2, 0))
    for k in range(4):                                    # debris on the frame edge
        c = canvas()
        if k % 2:
            c[30 + 20 * k:36 + 20 * k, 0:300] = (90, 140, 200, 255)          # a strip of sky
        else:
            c[0:60 + 10 * k, 0:50] = (3 + k, 3, 3, 255)                      # a dark corner
        built.append((f"debris{k}", c, k % 2, 1))
    records = [write_instance(seg, f"{name}.png", c, i, scene) for i, (name, c, scene, _) in enumerate(built)]
    busy = np.repeat((np.indices(FRAME[::-1]).sum(axis=0) % 64 * 3).astype(np.uint8)[..., None], 3, axis=2)
    flagged, _ = quality.assess_instances(seg, records, lambda r: busy, quality.CropThresholds())
    flags = [r.flags for r in flagged]
    assert [f for f, (name, *_) in zip(flags, built) if name.startswith("cut")] == [("border",)] * 5
    assert all(not f for f, (name, *_) in zip(flags, built) if name.startswith("whole"))
    assert all(f and set(f) <= {"border", "fragment", "blank", "small"}
               for f, (name, *_) in zip(flags, built) if name.startswith("debris"))
    crops = [np.asarray(Image.open(seg / r.file).convert("RGBA")) for r in flagged]
    X, hists = ColourEmbedder().embed_batch(crops), cluster_quality.colour_histograms(crops)
    labels = np.array([cluster for *_, cluster in built])
    names = {0: "character", 1: "debris"}
    scenes = [r.scene_index for r in flagged]
    _, report = cluster_quality.assess_clusters(X, labels, hists, flags, names, scenes=scenes)
    character = report["character"]
    assert character["flags"] == {"border": 5} and character["flagged_share"] > 0.5
    assert character["whole"] == 4 and character["whole_scenes"] == 2
    assert character["verdict"] == "ok", character
    debris = report["debris"]
    assert debris["whole"] == 0 and debris["verdict"] == "junk" and "flagged crops" in debris["reasons"]
    # every whole view from one shot: near-copies of one view, the border crops count again
    _, report = cluster_quality.assess_clusters(X, labels, hists, flags, names, scenes=[0] * len(flags))
    assert report["character"]["whole_scenes"] == 1 and report["character"]["verdict"] == "junk"
    assert report["character"]["reasons"] == ["flagged crops"]
    # fewer whole crops than the floor: junk
    strict = cluster_quality.ClusterThresholds(min_whole=5)
    _, report = cluster_quality.assess_clusters(X, labels, hists, flags, names, strict, scenes=scenes)
    assert report["character"]["verdict"] == "junk"


def read_instances_json(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines() if line.strip()]


def pair_crops(root: Path, n_single: int = 12, n_pairs: int = 12) -> Path:
    """A segmentation-like folder: crops of characters 0 and 1 alone, and of the two side by side."""
    seg = root / "seg"
    (seg / "characters").mkdir(parents=True)
    records = []
    for i in range(n_single * 2 + n_pairs):
        if i < 2 * n_single:
            crop, name = figure(i % 2, i), f"c{i % 2}_{i:02d}.png"
        else:
            a, b = figure(0, i), figure(1, i)
            crop = np.zeros((90, 84, 4), np.uint8)
            crop[:, :40], crop[:, 44:] = a, b
            name = f"pair_{i:02d}.png"
        Image.fromarray(crop, "RGBA").save(seg / "characters" / name)
        h, w = crop.shape[:2]
        records.append({"file": f"characters/{name}", "mask": f"masks/{name}", "source_frame": f"f{i}.png",
                        "frame_index": i, "scene_index": 0, "bbox": [100, 40, w, h], "crop_box": [100, 40, w, h],
                        "area": int((crop[..., 3] >= 128).sum()), "score": 1.0, "frame_size": [320, 180]})
    (seg / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return seg


def test_a_cluster_of_pairs_is_called_multi_and_kept_out_of_the_dataset(tmp_path):
    seg = pair_crops(tmp_path)
    res = run_clustering(seg, tmp_path / "clu", min_cluster_size=5)
    report = json.loads((tmp_path / "clu" / "quality.json").read_text())
    recs = read_clusters(tmp_path / "clu" / "clusters.jsonl")
    by_kind: dict[str, set[str]] = {}
    for r in recs:
        by_kind.setdefault(Path(r.file).name.split("_")[0], set()).add(f"cluster_{r.identity}" if r.identity else "")
    assert all(len(v) == 1 and "" not in v for v in by_kind.values()), by_kind
    pair_cluster = next(iter(by_kind["pair"]))
    singles = sorted(next(iter(by_kind[k])) for k in ("c0", "c1"))
    assert report["clusters"][pair_cluster]["verdict"] == "multi"
    assert sorted(report["clusters"][pair_cluster]["mixture_of"]) == singles
    assert all(report["clusters"][c]["verdict"] == "ok" and report["clusters"][c]["cohesion"] > 0.9 for c in singles)
    assert all(("multi" in r.flags) == Path(r.file).name.startswith("pair") for r in recs)
    assert res.outputs["cluster_verdicts"][pair_cluster] == "multi"
    assert res.outputs["quality_summary"] == "3 cluster(s), 1 multi; 12 of 36 crops flagged"
    # the dataset leaves the pairs out; told to keep them, it never captions them solo
    out = run_prep(tmp_path / "clu", tmp_path / "ds", resolution=128, target_size=30, dedup_threshold=-1)
    assert out.outputs["dataset_size"] == 24
    gates = json.loads((tmp_path / "ds" / "quality.json").read_text())
    assert gates["excluded"] == {"multi_cluster": 12} and gates["clusters_left_out"] == {pair_cluster: "multi"}
    out = run_prep(tmp_path / "clu", tmp_path / "ds2", resolution=128, target_size=36, dedup_threshold=-1,
                   include_junk=True, exclude_flags=[])
    rows = [json.loads(line) for line in (tmp_path / "ds2" / "metadata.jsonl").read_text().splitlines()]
    sources = {json.loads(line)["file_name"]: json.loads(line)["key"]
               for line in (tmp_path / "ds2" / "selection.jsonl").read_text().splitlines()}
    assert len(rows) == 36
    for row in rows:
        pair = Path(sources[row["file_name"]]).name.startswith("pair")
        assert ("solo" in row["text"].split(", ")) != pair, row


def run_prep(clusters_dir, output_dir, **config):
    stage = TrainingDataPrepExecutor("prep", {"input_dir": str(clusters_dir), "output_dir": str(output_dir), **config})
    stage.validate_config()
    return stage.execute({})


def flag_crops(fx, flagged: dict[str, list[str]]) -> None:
    """Give crops of a dataset fixture quality flags, as clustering writes them."""
    listing = fx["clusters_dir"] / "clusters.jsonl"
    records = [json.loads(line) for line in listing.read_text().splitlines()]
    for r in records:
        if Path(r["file"]).name in flagged:
            r["flags"] = flagged[Path(r["file"]).name]
    listing.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_dataset_of_mostly_junk_fails_by_default_and_warn_builds_the_rest(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 6, 1: 4})
    names = [Path(r["file"]).name for r in fx["records"]]
    flag_crops(fx, {n: ["fragment"] for n in names[:4]} | {n: ["border", "small"] for n in names[6:9]})
    with pytest.raises(StageInputError, match=r"mostly junk: 7 of 10 crops fail the quality gates .*border 3, "
                                              r"fragment 4.*on_low_quality: warn"):
        run_prep(fx["clusters_dir"], tmp_path / "ds", resolution=128)
    res = run_prep(fx["clusters_dir"], tmp_path / "ds", resolution=128, on_low_quality="warn", min_cluster_size=1)
    assert res.outputs["dataset_size"] == 3
    assert res.outputs["quality_summary"] == "3 of 10 crops usable; left out: border 3, fragment 4"
    report = json.loads((tmp_path / "ds" / "quality.json").read_text())
    assert report["mostly_junk"] is True and report["left_out"] == 7
    # a few flagged crops are no reason to fail
    flag_crops(fx, {n: [] for n in names[:4]})
    assert run_prep(fx["clusters_dir"], tmp_path / "ds3", resolution=128).outputs["dataset_size"] == 7


def test_crops_are_never_upscaled_beyond_max_upscale(tmp_path):
    fx = make_clustered_crops(tmp_path, {0: 6})
    heights = {Path(r["file"]).name: Image.open(fx["seg_dir"] / r["file"]).height for r in fx["records"]}
    res = run_prep(fx["clusters_dir"], tmp_path / "ds", resolution=256, max_upscale=2.0, on_low_quality="warn",
                   min_cluster_size=1, dedup_threshold=-1)
    report = json.loads((tmp_path / "ds" / "quality.json").read_text())
    small = sum(1 for h in heights.values() if 256 / h > 2.0)
    assert small and report["excluded"] == {"low_resolution": small}
    assert res.outputs["dataset_size"] == 6 - small and report["max_upscale_used"] <= 2.0
    with pytest.raises(StageInputError, match="no crop passes the quality gates"):
        run_prep(fx["clusters_dir"], tmp_path / "ds2", resolution=1024, on_low_quality="warn")


def test_the_cli_says_each_stages_quality_in_its_last_lines(ws):
    ws.write("p.yaml", """
pipeline: {name: q}
stages:
  - id: crops
    type: custom
    config: {callable: "dataset_fixtures:crops_stage", output_dir: out/crops, args: {sizes: {0: 6, 1: 5}, noise: 2}}
  - id: prep
    type: training_data_prep
    depends_on: [crops]
    config: {input_dir: "{crops.output_dir}/clu", output_dir: out/dataset, target_size: 8, resolution: 96}
""")
    done = ws.cli("run", "p.yaml", "--no-progress", check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "quality: prep: 11 of 11 crops usable" and lines[-1].startswith("completed:")
    again = ws.cli("run", "p.yaml", "--no-progress", check=True)      # up to date: said again
    assert "quality: prep: 11 of 11 crops usable" in again.stdout.splitlines()[-2]


def test_a_cluster_of_unrelated_crops_is_junk_by_its_cohesion(seg_run, clu_run, char_clip):
    """Real crops of the rendered clip: every cluster the stage finds is cohesive (ok); the same
    crops taken two per character into one cluster have a low cohesion and are called junk."""
    from pipeline_tasks.stages.characters import cluster_quality
    from pipeline_tasks.stages.characters.embedders import ColourEmbedder
    from pipeline_tasks.stages.characters.metrics import instance_truth
    report = json.loads((clu_run["dir"] / "quality.json").read_text())["clusters"]
    real = {n: e for n, e in report.items() if e["verdict"] != "noise"}
    assert real and all(e["cohesion"] >= 0.8 and "low cohesion" not in e.get("reasons", []) for e in real.values())
    truth = instance_truth(seg_run["dir"] / "instances.jsonl", char_clip["outputs"]["ground_truth"])
    picked: dict[int, list[InstanceRecord]] = {}
    for r in map(InstanceRecord.from_dict, read_instances_json(seg_run["dir"])):
        ident, kind = truth[r.file]
        if kind == "single" and not r.flags and len(picked.setdefault(ident, [])) < 8:
            picked[ident].append(r)
    assert len(picked) >= 3
    records = [r for rs in picked.values() for r in rs]
    crops = [np.asarray(Image.open(seg_run["dir"] / r.file).convert("RGBA")) for r in records]
    X = ColourEmbedder().embed_batch(crops)
    own = np.array([ident for ident, rs in picked.items() for _ in rs])
    mixed = np.array([k for rs in picked.values() for k in range(len(rs))]) < 2     # two of each character
    hists, flags = cluster_quality.colour_histograms(crops), [()] * len(records)
    # the only cluster found holds two crops of each character, the rest is noise: no crop is
    # a mixture of two clusters, no crop is flagged; its cohesion says it is not one character
    labels = np.where(mixed, 0, -1)
    _, verdicts = cluster_quality.assess_clusters(X, labels, hists, flags, {0: "c", -1: "noise"})
    assert verdicts["c"]["flagged"] == 0 and verdicts["c"]["cohesion"] < 0.8
    assert verdicts["c"]["verdict"] == "junk" and verdicts["c"]["reasons"] == ["low cohesion"]
    # the same crops, one cluster per character: all ok
    _, verdicts = cluster_quality.assess_clusters(X, own, hists, flags, {int(i): f"c{i}" for i in picked})
    assert all(e["verdict"] == "ok" and e["cohesion"] >= 0.8 for e in verdicts.values()), verdicts


def test_segmentation_and_clustering_say_mostly_junk_and_fail_when_told(tmp_path, char_frames, seg_run, clu_run):
    """A segmentation whose crops are mostly flagged (here: every crop under a strict size floor)
    and a clustering whose clusters are mostly junk (every one under a strict cohesion floor):
    warned by default, said in quality.json and the summary; `on_low_quality: fail` stops the stage
    with its files written."""
    from character_fixtures import run_segmentation
    strict = {"quality": {"min_side": 100_000}}
    with pytest.raises(StageInputError, match=r"the crops are mostly junk \(\d+ of \d+ crops flagged \(small \d+"):
        run_segmentation(char_frames, tmp_path / "seg", on_low_quality="fail", **strict)
    assert json.loads((tmp_path / "seg" / "quality.json").read_text())["mostly_junk"] is True
    res = run_segmentation(char_frames, tmp_path / "seg", **strict)
    report = json.loads((tmp_path / "seg" / "quality.json").read_text())
    assert report["mostly_junk"] is True and report["on_low_quality"] == "warn"
    assert res.outputs["quality_summary"].endswith("; mostly junk (on_low_quality: warn)")
    assert report["flagged"] == report["crop_count"] == res.outputs["character_count"] > 0
    # the default floors on the same frames: not mostly junk
    default = json.loads((seg_run["dir"] / "quality.json").read_text())
    assert default["mostly_junk"] is False and "mostly junk" not in default["summary"]

    with pytest.raises(StageInputError, match=r"the clusters are mostly junk \(\d+ cluster\(s\), \d+ junk"):
        run_clustering(seg_run["dir"], tmp_path / "clu", min_cohesion=1.0, on_low_quality="fail")
    assert (tmp_path / "clu" / "contact_sheets").is_dir()
    res = run_clustering(seg_run["dir"], tmp_path / "clu", min_cohesion=1.0)
    report = json.loads((tmp_path / "clu" / "quality.json").read_text())
    assert report["mostly_junk"] is True and report["on_low_quality"] == "warn"
    assert all(e["reasons"] == ["low cohesion"] for e in report["clusters"].values() if e["verdict"] == "junk")
    assert res.outputs["quality_summary"].endswith("; mostly junk (on_low_quality: warn)")
    # the report's Quality section says it, and why each cluster is junk
    from pipeline_tasks.report import quality_section
    from pipeline_tasks.report.collect import StageView
    html = quality_section.render([StageView(id="cluster", outputs=res.outputs)])
    assert "mostly junk (on_low_quality: warn)" in html and "junk (low cohesion)" in html
    assert json.loads((clu_run["dir"] / "quality.json").read_text())["mostly_junk"] is False


def test_a_crop_carrying_background_is_flagged_static_region_and_left_out_of_the_dataset(tmp_path):
    """A crop whose mask lies a tenth or more in regions that stay put on the background
    (`static_share`, measured by the segmentation) is flagged `static_region`: counted, summed up,
    and left out of a dataset by default; a crop measured clean, or not measured, is not flagged."""
    from dataclasses import replace
    seg = tmp_path / "seg"
    records = []
    for n, share in enumerate((0.3, 0.02, None)):
        c = canvas()
        place(c, figure(n, 0), 40 + 90 * n, 40)
        records.append(replace(write_instance(seg, f"c{n}.png", c, n), static_share=share))
    again = [InstanceRecord.from_dict(r.to_dict()) for r in records]        # instances.jsonl keeps the measure
    assert [r.static_share for r in again] == [0.3, 0.02, None]
    busy = np.repeat((np.indices(FRAME[::-1]).sum(axis=0) % 64 * 3).astype(np.uint8)[..., None], 3, axis=2)
    flagged, report = quality.assess_instances(seg, again, lambda r: busy, quality.CropThresholds())
    assert [r.flags for r in flagged] == [("static_region",), (), ()]
    assert report["flags"] == {"static_region": 1} and report["summary"] == "1 of 3 crops flagged (static_region 1)"
    assert [c["measures"].get("static_share") for c in report["by_crop"]] == [0.3, 0.02, None]
    assert quality.assess_instances(seg, again, lambda r: busy, quality.CropThresholds(max_static_share=0.5)
                                    )[1]["flagged"] == 0
    # a dataset leaves such crops out, as it does any flagged crop
    fx = make_clustered_crops(tmp_path, {0: 6, 1: 4})
    flag_crops(fx, {Path(fx["records"][0]["file"]).name: ["static_region"]})
    res = run_prep(fx["clusters_dir"], tmp_path / "ds", resolution=128, min_cluster_size=1)
    assert res.outputs["dataset_size"] == 9
    assert res.outputs["quality_summary"] == "9 of 10 crops usable; left out: static region 1"
