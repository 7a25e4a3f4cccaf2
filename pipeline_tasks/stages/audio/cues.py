"""Subtitle cue layout: from timed words to readable cues.

Rules (all from `CueRules`): at most `max_lines` lines of at most `max_chars` characters; at most
`max_cps` characters per second where timing allows; cue duration in [min_duration, max_duration];
a new cue at every pause of `pause_split` seconds or more; when a cue is full, the break goes after
the last punctuation mark in its second half if there is one; cues never overlap (`min_gap` apart).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .transcript import Segment, Word

PUNCT_END = (".", "!", "?", "…")
PUNCT_ANY = PUNCT_END + (",", ";", ":", "—", "–")


@dataclass
class CueRules:
    max_chars: int = 42
    max_lines: int = 2
    max_cps: float = 17.0
    min_duration: float = 1.0
    max_duration: float = 7.0
    pause_split: float = 0.6
    min_gap: float = 0.04


@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]
    words: list[Word] = field(default_factory=list, repr=False)

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "lines": self.lines,
                "word_start": self.words[0].start if self.words else None,
                "word_end": self.words[-1].end if self.words else None}


def words_of(segments: list[Segment]) -> list[tuple[Word, bool]]:
    """Every word with a flag: does a segment end after it. Segments without word timings get words
    spread over the segment in proportion to their length."""
    out: list[tuple[Word, bool]] = []
    for seg in segments:
        words = [w for w in seg.words if w.word.strip()]
        if not words:
            tokens = seg.text.split()
            total = sum(len(t) + 1 for t in tokens) or 1
            t, span = seg.start, max(seg.end - seg.start, 0.0)
            for tok in tokens:
                d = span * (len(tok) + 1) / total
                words.append(Word(round(t, 3), round(t + d, 3), tok))
                t += d
        for i, w in enumerate(words):
            out.append((Word(w.start, w.end, w.word.strip(), w.probability), i == len(words) - 1))
    return out


def wrap(text_words: list[str], max_chars: int, max_lines: int) -> list[str] | None:
    """Split words into at most max_lines lines of at most max_chars, balanced; None if impossible."""
    text = " ".join(text_words)
    if len(text) <= max_chars or max_lines == 1:
        return [text] if len(text) <= max_chars else None
    best: tuple[float, list[str]] | None = None
    for cut in range(1, len(text_words)):
        first = " ".join(text_words[:cut])
        if len(first) > max_chars:
            break
        rest = wrap(text_words[cut:], max_chars, max_lines - 1)
        if rest is None:
            continue
        lines = [first] + rest
        # prefer balanced lines, and a break after punctuation
        score = max(len(line) for line in lines) - (3 if first.endswith(PUNCT_ANY) else 0)
        if best is None or score < best[0]:
            best = (score, lines)
    return best[1] if best else None


def phrases(items: list[tuple[Word, bool]], rules: CueRules) -> list[list[Word]]:
    """Runs of words between hard breaks: a pause of `pause_split`, a sentence end, a segment end."""
    out: list[list[Word]] = []
    current: list[Word] = []
    for word, seg_end in items:
        if current:
            pause = word.start - current[-1].end
            if pause >= rules.pause_split or current[-1].word.endswith(PUNCT_END):
                out.append(current)
                current = []
        current.append(word)
        if seg_end:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def split_phrase(words: list[Word], rules: CueRules) -> list[list[Word]]:
    """The fewest cues that hold `words` within the rules; among those, the most even split,
    with a bonus for breaks after punctuation and at longer pauses (dynamic programming)."""
    n = len(words)
    capacity = rules.max_chars * rules.max_lines
    texts = [w.word for w in words]

    def fits(i: int, j: int) -> bool:
        if j - i == 1:
            return True            # a single over-long word gets a cue of its own (a counted violation)
        if sum(len(t) for t in texts[i:j]) + (j - i - 1) > capacity:
            return False
        if words[j - 1].end - words[i].start > rules.max_duration:
            return False
        return wrap(texts[i:j], rules.max_chars, rules.max_lines) is not None

    def penalty(i: int, j: int) -> float:
        length = sum(len(t) for t in texts[i:j]) + (j - i - 1)
        cost = float((capacity - length) ** 2)
        if j < n:
            if texts[j - 1].endswith(PUNCT_ANY):
                cost -= (0.4 * capacity) ** 2
            cost -= min(words[j].start - words[j - 1].end, 1.0) * (0.5 * capacity) ** 2
        return cost

    best: list[tuple[int, float, int]] = [(0, 0.0, -1)] + [(10 ** 9, 0.0, -1)] * n
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            if best[i][0] >= 10 ** 9:
                continue
            if not fits(i, j):
                if j - i > 1 and sum(len(t) for t in texts[i:j]) > capacity:
                    break          # longer spans only get longer
                continue
            cand = (best[i][0] + 1, best[i][1] + penalty(i, j), i)
            if cand[:2] < best[j][:2]:
                best[j] = cand
    cuts, j = [], n
    while j > 0:
        i = best[j][2]
        cuts.append((i, j))
        j = i
    return [words[i:j] for i, j in reversed(cuts)]


def group_words(items: list[tuple[Word, bool]], rules: CueRules) -> list[list[Word]]:
    return [cue for phrase in phrases(items, rules) for cue in split_phrase(phrase, rules)]


def build_cues(segments: list[Segment], rules: CueRules) -> list[Cue]:
    groups = group_words(words_of(segments), rules)
    cues: list[Cue] = []
    for words in groups:
        lines = wrap([w.word for w in words], rules.max_chars, rules.max_lines) or [" ".join(w.word for w in words)]
        cues.append(Cue(words[0].start, words[-1].end, lines, words))
    # timing: stretch to min duration and to the CPS limit, never into the next cue, never past max
    for i, cue in enumerate(cues):
        chars = len(cue.text)
        wanted = max(rules.min_duration, chars / rules.max_cps)
        limit = cues[i + 1].start - rules.min_gap if i + 1 < len(cues) else cue.start + rules.max_duration
        end = max(cue.end, min(cue.start + wanted, limit, cue.start + rules.max_duration))
        # whole milliseconds, rounded so that stretching for CPS never lands a hair above the limit
        cue.end = math.ceil(round(end * 1000, 6)) / 1000 if end < limit else math.floor(round(end * 1000, 6)) / 1000
        cue.start = round(cue.start, 3)
    # make sure nothing overlaps (word timings from some backends touch or overlap)
    for prev, cue in zip(cues, cues[1:]):
        if prev.end > cue.start - rules.min_gap:
            prev.end = round(max(prev.start + 0.01, cue.start - rules.min_gap), 3)
    return cues


def quality(cues: list[Cue], rules: CueRules) -> dict:
    """Share of cues within each limit, and overlap count."""
    n = len(cues) or 1

    def cps(c: Cue) -> float:
        return len(c.text) / max(c.end - c.start, 1e-6)

    within_lines = sum(len(c.lines) <= rules.max_lines and all(len(text) <= rules.max_chars for text in c.lines)
                       for c in cues)
    within_cps = sum(cps(c) <= rules.max_cps + 1e-6 for c in cues)
    within_duration = sum(rules.min_duration - 1e-6 <= c.end - c.start <= rules.max_duration + 1e-6 for c in cues)
    overlaps = sum(a.end > b.start for a, b in zip(cues, cues[1:]))
    return {"cues": len(cues), "within_line_limits": round(within_lines / n, 4),
            "within_cps": round(within_cps / n, 4), "within_duration": round(within_duration / n, 4),
            "overlaps": overlaps}
