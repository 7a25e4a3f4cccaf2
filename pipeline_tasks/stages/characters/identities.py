"""Identities that outlive a clustering run: each cluster is keyed by a fingerprint (`ab12`, its
folder `cluster_ab12`), not by its size rank, so a rerun, or a new episode, keeps
`cluster_ab12 -> heroine`.

- A new cluster's fingerprint is the first 4 hex digits of the SHA-256 of its members' content
  digests (sorted): the same crops give the same fingerprint.
- The clustering stage keeps its identities in `identities.npz`: per identity its fingerprint, up
  to `MAX_EXEMPLARS` exemplar embeddings (its most confident members), their core distances, and
  its reach. A later run reads it (its own earlier run's, and any `known_identities` files).
- **Prediction** (what the hdbscan package's `approximate_predict` does, on stored exemplars rather
  than a pickled model): a crop's core distance is the distance to its `min_samples`-th nearest
  exemplar; its mutual-reachability distance to an exemplar is the largest of the two core
  distances and their distance; the crop belongs to the identity of its nearest exemplar in that
  distance when that distance is within the identity's reach, the longest edge of the minimum
  spanning tree of its exemplars under mutual reachability (the distance at which the cluster
  holds together).
- **Carry-over**: a cluster of this run takes the fingerprint of the earlier identity that most of
  its members are predicted to (at least half); several clusters predicted to one identity become
  one cluster. Noise crops are assigned to a `known_identities` identity they are predicted to (new
  crops joining the identities of earlier episodes); an earlier run's own identities only name
  clusters, so a rerun over the same crops gives the same result.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import StageInputError

REGISTRY = "identities.npz"
MAX_EXEMPLARS = 200


@dataclass
class Registry:
    fingerprints: list[str]
    vectors: np.ndarray          # exemplars, one row each
    owner: np.ndarray            # identity index of each exemplar
    core: np.ndarray             # core distance of each exemplar (among all exemplars)
    reach: np.ndarray            # per identity
    embedder: str                # the embedder configuration the vectors come from

    @property
    def empty(self) -> bool:
        return not self.fingerprints

    @classmethod
    def none(cls, dim: int = 0, embedder: str = "") -> Registry:
        return cls([], np.zeros((0, dim), np.float32), np.zeros(0, int), np.zeros(0), np.zeros(0), embedder)


def fingerprint(member_digests: list[str], taken: set[str]) -> str:
    """4 hex digits of the members' digests, or more when those are taken by another identity."""
    full = hashlib.sha256("\n".join(sorted(member_digests)).encode()).hexdigest()
    for n in range(4, len(full) + 1):
        if full[:n] not in taken:
            return full[:n]
    raise ValueError("fingerprint collision")        # pragma: no cover - 64 hex digits all taken


def _distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
    return np.sqrt(np.maximum(d, 0.0))


def _core(D: np.ndarray, k: int, self_included: bool) -> np.ndarray:
    k = min(k + (1 if self_included else 0), D.shape[1]) - 1
    return np.partition(D, k, axis=1)[:, k] if D.shape[1] else np.zeros(D.shape[0])


def _reach(D: np.ndarray, core: np.ndarray) -> float:
    """The longest edge of the minimum spanning tree under mutual reachability (Prim)."""
    n = len(core)
    if n < 2:
        return float(core[0]) if n else 0.0
    mr = np.maximum(np.maximum(D, core[:, None]), core[None, :])
    inside = np.zeros(n, bool)
    inside[0] = True
    best = mr[0].copy()
    longest = 0.0
    for _ in range(n - 1):
        best[inside] = np.inf
        j = int(np.argmin(best))
        longest = max(longest, float(best[j]))
        inside[j] = True
        best = np.minimum(best, mr[j])
    return longest


def build(X: np.ndarray, labels: np.ndarray, probs: np.ndarray, fingerprints: dict[int, str], *, min_samples: int,
          embedder: str) -> Registry:
    """The registry of this run's clusters (`fingerprints`: cluster -> fingerprint)."""
    fps, rows, owner = [], [], []
    for c, fp in sorted(fingerprints.items(), key=lambda kv: kv[1]):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(-probs[members], kind="stable")][:MAX_EXEMPLARS]
        fps.append(fp)
        rows.append(X[members])
        owner += [len(fps) - 1] * len(members)
    if not fps:
        return Registry.none(X.shape[1] if X.ndim == 2 else 0, embedder)
    V = np.concatenate(rows).astype(np.float32)
    owner_a = np.array(owner, int)
    D = _distances(V, V)
    core = _core(D, min_samples, self_included=True)
    reach = np.array([_reach(D[np.ix_(owner_a == i, owner_a == i)], core[owner_a == i]) for i in range(len(fps))])
    return Registry(fps, V, owner_a, core, reach, embedder)


def predict(reg: Registry, X: np.ndarray, *, min_samples: int) -> np.ndarray:
    """Identity index per row of X (-1: none), by the mutual-reachability rule above."""
    if reg.empty or len(X) == 0:
        return np.full(len(X), -1, int)
    D = _distances(X.astype(np.float64), reg.vectors.astype(np.float64))
    core_x = _core(D, min_samples, self_included=False)
    mr = np.maximum(np.maximum(D, core_x[:, None]), reg.core[None, :])
    nearest = np.argmin(mr, axis=1)
    ident = reg.owner[nearest]
    within = mr[np.arange(len(X)), nearest] <= reg.reach[ident] + 1e-9
    return np.where(within, ident, -1)


def merge(registries: list[Registry]) -> Registry:
    """One registry of several (an identity in two keeps the first one's exemplars)."""
    regs = [r for r in registries if not r.empty]
    if not regs:
        return registries[0] if registries else Registry.none()
    fps, vecs, owner, core, reach = [], [], [], [], []
    for r in regs:
        for i, fp in enumerate(r.fingerprints):
            if fp in fps:
                continue
            fps.append(fp)
            sel = r.owner == i
            vecs.append(r.vectors[sel])
            owner += [len(fps) - 1] * int(sel.sum())
            core.append(r.core[sel])
            reach.append(r.reach[i])
    return Registry(fps, np.concatenate(vecs), np.array(owner, int), np.concatenate(core), np.array(reach),
                    regs[0].embedder)


def save(path: Path, reg: Registry) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, fingerprints=np.array(reg.fingerprints, dtype=str), vectors=reg.vectors, owner=reg.owner,
                 core=reg.core, reach=reg.reach, embedder=np.array(reg.embedder))


def load(path: Path, *, stage: str | None = None) -> Registry:
    """A registry written by `save`; a file that is not one is a StageInputError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Registry([str(f) for f in z["fingerprints"]], z["vectors"].astype(np.float32),
                            z["owner"].astype(int), z["core"].astype(float), z["reach"].astype(float),
                            str(z["embedder"]))
    except FileNotFoundError as exc:
        raise StageInputError("identities file not found; it is a clustering stage's identities.npz",
                              path=path, stage=stage) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise StageInputError(f"not an identities file ({exc}); point known_identities at a clustering stage's "
                              "identities.npz", path=path, stage=stage) from exc


def carry_over(X: np.ndarray, labels: np.ndarray, digests: list[str], own: Registry, known: Registry, *,
               min_samples: int) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    """(labels, cluster -> fingerprint, assigned): clusters named after the earlier identities most of
    their members are predicted to (clusters predicted to one identity merged), new clusters
    fingerprinted from their members, noise crops predicted to a known identity assigned to it.
    Cluster numbers in the result are only provisional: the caller renumbers them."""
    prior = merge([known, own])
    labels = labels.copy()
    guess = predict(prior, X, min_samples=min_samples)
    names: dict[int, str] = {}
    for c in sorted(int(c) for c in set(labels.tolist()) if c != -1):
        members = np.flatnonzero(labels == c)
        votes = np.bincount(guess[members][guess[members] >= 0], minlength=len(prior.fingerprints))
        if votes.size and votes.max() * 2 >= len(members):
            names[c] = prior.fingerprints[int(np.argmax(votes))]
    # clusters that carry one identity become one
    by_fp: dict[str, int] = {}
    for c, fp in sorted(names.items()):
        if fp in by_fp:
            labels[labels == c] = by_fp[fp]
        else:
            by_fp[fp] = c
    names = {c: fp for fp, c in by_fp.items()}
    taken = set(prior.fingerprints) | set(names.values())
    for c in sorted(int(c) for c in set(labels.tolist()) if c != -1):
        if c not in names:
            names[c] = fingerprint([digests[i] for i in np.flatnonzero(labels == c)], taken)
            taken.add(names[c])
    assigned = np.zeros(len(labels), bool)
    if not known.empty:
        noise = np.flatnonzero(labels == -1)
        k_guess = predict(known, X[noise], min_samples=min_samples)
        next_id = max(names, default=-1) + 1
        for i, g in zip(noise, k_guess):
            if g < 0:
                continue
            fp = known.fingerprints[g]
            c = by_fp.get(fp)
            if c is None:
                c = by_fp[fp] = next_id
                names[c] = fp
                next_id += 1
            labels[i] = c
            assigned[i] = True
    return labels, names, assigned
