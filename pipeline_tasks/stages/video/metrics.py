"""Scoring of detected scene cuts against ground truth."""
from __future__ import annotations

from collections.abc import Iterable


def scene_cut_metrics(predicted_cuts: Iterable[int], true_cuts: Iterable[int], tolerance: int = 1) -> dict:
    """Precision, recall and F1 of `predicted_cuts` against `true_cuts` (frame numbers).

    A prediction matches a true cut when they are at most `tolerance` frames apart; each true cut
    matches at most one prediction (a maximum matching). With no predictions precision is 1.0, with no
    true cuts recall is 1.0; F1 is 0 unless both
    sides agree (so empty against empty scores 1.0).
    """
    pred = sorted({int(p) for p in predicted_cuts})
    true = sorted({int(t) for t in true_cuts})
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    # Sweep: every true cut (ascending) takes the earliest unmatched prediction inside its window.
    # The windows all have the same width, so this gives a maximum matching.
    matches = []
    used_p: set[int] = set()
    used_t: set[int] = set()
    j = 0
    for t in true:
        while j < len(pred) and pred[j] < t - tolerance:
            j += 1
        if j < len(pred) and pred[j] <= t + tolerance:
            matches.append((pred[j], t))
            used_p.add(pred[j])
            used_t.add(t)
            j += 1
    tp = len(matches)
    fp = len(pred) - tp
    fn = len(true) - tp
    precision = tp / len(pred) if pred else 1.0     # no prediction: nothing predicted wrongly
    recall = tp / len(true) if true else 1.0         # no true cut: nothing to miss
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "true_positives": tp,
            "false_positives": fp, "false_negatives": fn, "tolerance": tolerance,
            "matches": sorted(matches),
            "missed": [t for t in true if t not in used_t], "spurious": [p for p in pred if p not in used_p]}
