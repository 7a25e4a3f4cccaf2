"""The clustering measurement the benchmarks share: the clustering stage timed on a segmentation
output with its default settings (or the given ones), and identity scores against the synthetic
ground truth.

- `timed_clustering`: seconds, crops, crops/s, clusters, noise, the min_cluster_size used, the
  cluster verdicts and the worker's peak memory.
- `box_identity_scores`: each instance takes the identity of the true character its box matches
  (IoU >= 0.5, one-to-one per frame: `metrics.box_match`); the identity ARI is over the matched
  instances that are clustered, the noise share is the share of matched instances called noise.
- `mask_identity_scores`: `metrics.clustering_scores` (identity by mask overlap; ARI, purity,
  noise, and what those leave out).
"""
from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_clustering(src: Path, out: Path, **config) -> dict[str, Any]:
    from pipeline_tasks.stages.clustering import ClusteringExecutor
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = ClusteringExecutor("clu", {"input_dir": str(src), "output_dir": str(out), **config}).execute({})
    sec = time.perf_counter() - t0
    crops = r.outputs["crop_count"]
    return {"seconds": sec, "crops": crops, "crops_per_s": crops / sec, "clusters": r.outputs["cluster_count"],
            "noise": r.outputs["noise_count"], "noise_share_all": r.outputs["noise_count"] / max(1, crops),
            "min_cluster_size": r.metrics["min_cluster_size"], "verdicts": r.outputs["cluster_verdicts"],
            "quality": r.outputs["quality_summary"], "rss_mb": rss_mb()}


def box_identity_scores(clusters_jsonl: Path, instances_jsonl: Path, ground_truth: Path) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    from pipeline_tasks.stages.characters.formats import read_clusters
    from pipeline_tasks.stages.characters.metrics import box_match
    identity = box_match(instances_jsonl, ground_truth)["identity"]
    clusters = {c.file: c.cluster for c in read_clusters(clusters_jsonl)}
    items = [(identity[f], clusters[f]) for f in identity if f in clusters]
    kept = [(t, c) for t, c in items if c != -1]
    ari = adjusted_rand_score([t for t, _ in kept], [c for _, c in kept]) if kept else 0.0
    return {"identity_ari": ari, "noise_share": (len(items) - len(kept)) / len(items) if items else 0.0,
            "scored": len(items)}


def mask_identity_scores(clusters_jsonl: Path, instances_jsonl: Path, ground_truth: Path) -> dict[str, Any]:
    from pipeline_tasks.stages.characters.metrics import clustering_scores
    return clustering_scores(clusters_jsonl, instances_jsonl, ground_truth)
