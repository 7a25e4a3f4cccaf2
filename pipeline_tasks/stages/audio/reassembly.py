"""Translate whole sentences that span several cues, then put the translation back onto the cues.

Cues are grouped into sentences (consecutive cues until one ends with . ! ? or a pause of
`max_gap` seconds, at most `max_cues` cues); each sentence is translated as one text; its words
are shared out over the sentence's cues in proportion to each cue's source length. Timing is kept.
"""
from __future__ import annotations

from .cues import PUNCT_END, Cue, wrap


def sentence_groups(cues: list[Cue], *, max_gap: float = 1.0, max_cues: int = 4) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, cue in enumerate(cues):
        if groups:
            last = cues[groups[-1][-1]]
            if (not last.text.rstrip().endswith(PUNCT_END) and cue.start - last.end < max_gap
                    and len(groups[-1]) < max_cues):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def distribute(words: list[str], weights: list[int]) -> list[list[str]]:
    """Split `words` into len(weights) consecutive runs sized in proportion to `weights`; every run
    gets at least one word while there are enough, otherwise the first runs get one each."""
    n, m = len(weights), len(words)
    if m < n:
        return [[w] for w in words] + [[] for _ in range(n - m)]
    total = sum(weights) or n
    bounds, acc = [0], 0
    for k, w in enumerate(weights[:-1], 1):
        acc += w
        cut = round(m * acc / total)
        cut = max(cut, bounds[-1] + 1)          # at least one word in this run
        cut = min(cut, m - (n - k))             # and one left for each later run
        bounds.append(cut)
    bounds.append(m)
    return [words[a:b] for a, b in zip(bounds, bounds[1:])]


def layout(words: list[str], max_chars: int, max_lines: int) -> list[str]:
    """Lines for a translated cue: within the limits if possible, otherwise the fewest extra lines."""
    if not words:
        return [""]
    for lines in range(max_lines, max_lines + 4):
        result = wrap(words, max_chars, lines)
        if result:
            return result
    return [" ".join(words)]


def reassemble(cues: list[Cue], translations: list[str], groups: list[list[int]], max_chars: int,
               max_lines: int) -> list[Cue]:
    """Translated cues with the source timing. When a sentence's translation has fewer words than
    it has cues, a cue left without words lends its time to its neighbour in the same sentence; a
    sentence translated to nothing is dropped."""
    out: list[Cue] = []
    for group, text in zip(groups, translations):
        runs = distribute(text.split(), [max(len(cues[i].text), 1) for i in group])
        placed: list[Cue] = []
        pending_start = None
        for i, run in zip(group, runs):
            if not run:
                if placed:
                    placed[-1].end = cues[i].end
                elif pending_start is None:
                    pending_start = cues[i].start
                continue
            start = pending_start if pending_start is not None else cues[i].start
            pending_start = None
            placed.append(Cue(start, cues[i].end, layout(run, max_chars, max_lines)))
        out.extend(placed)
    return out
