"""Subtitle cue layout: from timed words to readable cues.

Rules (all from `CueRules`): at most `max_lines` lines of at most `max_chars` characters; at most
`max_cps` characters per second where timing allows; cue duration in [min_duration, max_duration];
a new cue at every pause of `pause_split` seconds or more; when a cue is full, the break goes after
the last punctuation mark in its second half if there is one; cues never overlap (`min_gap` apart).
"""
from __future__ import annotations

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


def _fits(words: list[Word], rules: CueRules) -> bool:
    return (wrap([w.word for w in words], rules.max_chars, rules.max_lines) is not None
            and words[-1].end - words[0].start <= rules.max_duration)


def group_words(items: list[tuple[Word, bool]], rules: CueRules) -> list[list[Word]]:
    groups: list[list[Word]] = []
    current: list[Word] = []
    for word, _seg_end in items:
        if current:
            pause = word.start - current[-1].end
            ends_sentence = current[-1].word.endswith(PUNCT_END)
            if pause >= rules.pause_split or (ends_sentence and pause > rules.min_gap):
                groups.append(current)
                current = []
            elif not _fits(current + [word], rules):
                # full: break after the last punctuation in the second half, if any
                cut = len(current)
                for i in range(len(current) - 1, len(current) // 2 - 1, -1):
                    if current[i].word.endswith(PUNCT_ANY):
                        cut = i + 1
                        break
                groups.append(current[:cut])
                current = current[cut:]
        current.append(word)
        if len(current) == 1 and not _fits(current, rules):
            groups.append(current)   # a single over-long word: its own cue (counted as a violation)
            current = []
    if current:
        groups.append(current)
    return groups


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
        cue.end = round(end, 3)
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

    within_lines = sum(len(c.lines) <= rules.max_lines and all(len(l) <= rules.max_chars for l in c.lines)
                       for c in cues)
    within_cps = sum(cps(c) <= rules.max_cps + 1e-6 for c in cues)
    within_duration = sum(rules.min_duration - 1e-6 <= c.end - c.start <= rules.max_duration + 1e-6 for c in cues)
    overlaps = sum(a.end > b.start for a, b in zip(cues, cues[1:]))
    return {"cues": len(cues), "within_line_limits": round(within_lines / n, 4),
            "within_cps": round(within_cps / n, 4), "within_duration": round(within_duration / n, 4),
            "overlaps": overlaps}
