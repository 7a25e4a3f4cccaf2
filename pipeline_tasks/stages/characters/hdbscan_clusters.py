"""HDBSCAN over embeddings, with clusters of one look merged, deterministic cluster numbering and
optional noise reassignment."""
from __future__ import annotations

import numpy as np


def cluster_embeddings(X: np.ndarray, *, min_cluster_size: int, min_samples: int | None = None,
                       epsilon: float = 0.0, method: str = "eom", reassign_noise: bool = False,
                       reassign_similarity: float = 0.9, merge_similarity: float = 1.0,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, reassigned). Clusters whose centroids (of the unit embeddings) are at
    least `merge_similarity` cosine-similar are merged (`merge_similar`). Clusters are numbered by
    size (largest first), ties by the first member's index, so the same input always gives the same
    numbers. With
    `reassign_noise`, a noise point joins the cluster whose centroid is most cosine-similar, if that
    similarity is at least `reassign_similarity`; its probability is then that similarity times the
    cluster's median membership probability."""
    from sklearn.cluster import HDBSCAN
    n = len(X)
    reassigned = np.zeros(n, bool)
    if n < max(2, min_cluster_size):
        return np.full(n, -1, int), np.zeros(n), reassigned
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                    cluster_selection_epsilon=epsilon, cluster_selection_method=method, copy=True)
    try:
        raw = model.fit_predict(X)
    except TypeError:
        # scikit-learn 1.9's epsilon search fails under NumPy 2.4 ("only 0-dimensional arrays ...");
        # cluster without epsilon, then merge clusters closer than epsilon ourselves
        if epsilon <= 0:
            raise
        model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                        cluster_selection_method=method, copy=True)
        raw = merge_within_epsilon(X, model.fit_predict(X), epsilon)
    probs = np.asarray(model.probabilities_, dtype=float).copy()
    if merge_similarity < 1.0:
        raw = merge_similar(X, raw, merge_similarity)
    ids = [c for c in np.unique(raw) if c != -1]
    order = sorted(ids, key=lambda c: (-int((raw == c).sum()), int(np.flatnonzero(raw == c)[0])))
    remap = {c: i for i, c in enumerate(order)}
    labels = np.array([remap.get(int(c), -1) for c in raw], int)
    if reassign_noise and order and (labels == -1).any():
        unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        cents = np.stack([unit[labels == k].mean(axis=0) for k in range(len(order))])
        cents /= np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
        for i in np.flatnonzero(labels == -1):
            sims = cents @ unit[i]
            k = int(np.argmax(sims))
            if sims[k] >= reassign_similarity:
                labels[i] = k
                probs[i] = float(sims[k]) * float(np.median(probs[labels == k]))
                reassigned[i] = True
    probs[labels == -1] = 0.0
    return labels, probs, reassigned


def merge_within_epsilon(X: np.ndarray, labels: np.ndarray, epsilon: float) -> np.ndarray:
    """Union clusters whose closest members are less than `epsilon` apart (single linkage), the
    effect of HDBSCAN's cluster_selection_epsilon on flat clusters."""
    ids = [int(c) for c in np.unique(labels) if c != -1]
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
             if np.sqrt(((X[labels == a][:, None, :] - X[labels == b][None, :, :]) ** 2).sum(-1)).min() < epsilon]
    return _union(labels, ids, pairs)


def merge_similar(X: np.ndarray, labels: np.ndarray, similarity: float) -> np.ndarray:
    """Union clusters whose centroids (means of the unit-length embeddings, normalised) have a
    cosine similarity of at least `similarity`: a small min_cluster_size splits one character seen
    in two poses or lights into two clusters of nearly the same colours."""
    ids = [int(c) for c in np.unique(labels) if c != -1]
    if len(ids) < 2:
        return labels
    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    cents = np.stack([unit[labels == c].mean(axis=0) for c in ids])
    cents /= np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    sims = cents @ cents.T
    pairs = [(a, ids[j]) for i, a in enumerate(ids) for j in range(i + 1, len(ids)) if sims[i, j] >= similarity]
    return _union(labels, ids, pairs)


def _union(labels: np.ndarray, ids: list[int], pairs: list[tuple[int, int]]) -> np.ndarray:
    """`labels` with the clusters of each pair (and so every chain of pairs) made one."""
    parent = {c: c for c in ids}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c
    for a, b in pairs:
        parent[find(b)] = find(a)
    return np.array([find(int(c)) if c != -1 else -1 for c in labels], int)
