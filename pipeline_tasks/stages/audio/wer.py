"""Word error rate with case and punctuation normalised away (Levenshtein over words)."""
from __future__ import annotations

import re
import unicodedata

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
            "7": "seven", "8": "eight", "9": "nine", "10": "ten", "mr": "mister", "mrs": "missus",
            "dr": "doctor"}


def normalise(text: str) -> list[str]:
    """Lower case, no punctuation (apostrophes inside words kept), hyphens split, small numbers and
    Mr/Mrs/Dr spelled out."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return [_NUMBERS.get(w, w) for w in words if w]


def edit_counts(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the cheapest alignment."""
    # dp[j] = (cost, subs, dels, ins)
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            same = ref[i - 1] == hyp[j - 1]
            c, s, d, n = prev[j - 1]
            best = (c + (not same), s + (not same), d, n)
            c, s, d, n = prev[j]
            if c + 1 < best[0]:
                best = (c + 1, s, d + 1, n)
            c, s, d, n = cur[j - 1]
            if c + 1 < best[0]:
                best = (c + 1, s, d, n + 1)
            cur.append(best)
        prev = cur
    _, s, d, n = prev[-1]
    return s, d, n


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise(reference), normalise(hypothesis)
    s, d, n = edit_counts(ref, hyp)
    return (s + d + n) / max(len(ref), 1)


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Errors over all references divided by all reference words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalise(reference), normalise(hypothesis)
        errors += sum(edit_counts(ref, hyp))
        words += len(ref)
    return errors / max(words, 1)
