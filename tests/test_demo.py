"""The demo pipeline (configs/demo.yaml) end to end on a shorter video, and its rerun rules."""
from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO_ROOT

from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator, PipelineState

pytestmark = pytest.mark.slow


def demo_config(**changes) -> dict:
    """configs/demo.yaml with a shorter video and the given {stage_id: {key: value}} changes."""
    data = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    stages = {s["id"]: s for s in data["stages"]}
    stages["make_video"]["config"].update(duration=12, num_scenes=5)
    for stage_id, values in changes.items():
        stages[stage_id]["config"].update(values)
    return data


def run(ws, **changes):
    path = ws.write("demo.yaml", yaml.safe_dump(demo_config(**changes), sort_keys=False))
    pipeline = PipelineBuilder().load_from_yaml(path)
    result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)
    assert result.status == PipelineState.COMPLETED, result.error_message
    return result


def test_demo_end_to_end_and_rerun_rules(ws):
    stages = demo_config()["stages"]
    stage_ids = [s["id"] for s in stages]
    first = run(ws)
    assert sorted(first.executed) == sorted(stage_ids)
    order = {stage_id: n for n, stage_id in enumerate(first.executed)}   # independent stages in any order
    assert all(order[up] < order[s["id"]] for s in stages for up in s.get("depends_on", []))
    dataset = ws.root / "work/demo/dataset"
    rows = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    assert rows and all((dataset / r["file_name"]).exists() and r["text"] for r in rows)
    assert first.stage_result("dataset").outputs["dataset_size"] == len(rows)

    again = run(ws)
    assert again.executed == [] and sorted(again.up_to_date) == sorted(stage_ids)

    report = ws.root / "work/demo/report/report.html"
    html = report.read_text()
    assert "<svg" in html and "data:image/" in html and all(s in html for s in stage_ids)
    metrics = first.stage_result("evaluate").outputs
    assert metrics["scene_f1"] >= 0.98 and metrics["cluster_ari"] >= 0.9, metrics
    # what reached the dataset is scored too, and the report shows it
    assert metrics["dataset_crops"] == len(rows) and 0 <= metrics["dataset_bad"] <= len(rows)
    assert 'data-score="dataset"' in html and 'data-score="masks"' in html
    # crops of several characters are said, flagged, and never in the dataset captioned solo
    scores = json.loads((ws.root / "work/demo/evaluation/metrics.json").read_text())["clusters"]
    assert scores["multi_flagged"] >= 0.8 * scores["multi_crops"] and scores["multi_flagged_wrongly"] == 0, scores
    assert scores["solo_purity"] <= scores["purity"]
    flagged = {r["file"] for r in map(json.loads, (ws.root / "work/demo/clusters/clusters.jsonl").open())
               if "multi" in r.get("flags", [])}
    picks = [json.loads(line) for line in (dataset / "selection.jsonl").read_text().splitlines()]
    assert not [p for p in picks if p["key"] in flagged]
    assert "quality_summary" in first.stage_result("segment").outputs and 'id="quality"' in html

    smaller = run(ws, dataset={"target_size": 20})
    assert smaller.executed == ["dataset", "evaluate", "report"]      # evaluate scores the dataset

    reclustered = run(ws, dataset={"target_size": 20}, cluster={"min_cluster_size": 4})
    assert reclustered.executed[0] == "cluster"
    assert set(reclustered.executed) <= {"cluster", "dataset", "evaluate", "report"}
    before, after = first.stage_result("cluster").outputs, reclustered.stage_result("cluster").outputs
    # what follows clustering reruns exactly when clustering's output changed (early cutoff otherwise)
    assert ("dataset" in reclustered.executed) == (before != after)
    assert ("evaluate" in reclustered.executed) == (before != after)
