"""Short works: poems and song lyrics (a work's ``kind: poem | lyrics``).

GEMA v. OpenAI (LG München I, 11 Nov 2025) turned on nine song lyrics of some 100-300 words,
asked for by title, by chorus and verse by verse. casekit's prose defaults do not fit such a
work: a 40-word span is a third of a song, and a chorus sung four times would count four times.
For a short work casekit therefore:

- keeps its lines and stanzas (the text is quoted exactly, line breaks included);
- counts a repeated refrain once: every line of at least REFRAIN_MIN_WORDS words that repeats an
  earlier line (a chorus sung again, a refrain closing each stanza) is left out of the counted
  words after its first occurrence, so coverage and exhibits see it once (its first occurrence);
- makes coverage, the share of the work reproduced, the headline measure;
- scales the reporting threshold with the work: ``min(case threshold, max(CHANCE_FLOOR_WORDS,
  ceil(SHARE_OF_WORK x counted words)))`` (the rule: :func:`short_min_span`);
- measures a chance baseline for the work (casekit.analysis.chance): how long the runs it shares
  with the case's other texts are, and how often control attempts reach its threshold.

Sources of the rule: CHANCE_FLOOR_WORDS = 12 is where chance matches between unrelated texts
vanish (measurement.md section 2: 3e-4..7e-3 of 5-word windows of unrelated novels match, at
most 1e-4 at 8 words, none at 12 or more; the longest chance match between whole novels is 6-10
words); SHARE_OF_WORK = 1/10 asks for a recognisable passage of the work, a verse or a chorus
(GEMA turned on such parts, not on whole songs only). The per-work chance baseline printed in the
report checks the floor against the case's own texts.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from casekit.normalize import intersecting, tokenize

log = logging.getLogger(__name__)

KINDS = ("prose", "poem", "lyrics")
SHORT_KINDS = ("poem", "lyrics")
#: A line shorter than this (counted words) is not treated as a refrain when it repeats.
REFRAIN_MIN_WORDS = 3
#: No chance match between unrelated texts reaches 12 words (measurement.md section 2).
CHANCE_FLOOR_WORDS = 12
#: A short work's span threshold is this share of its counted words (refrain once)...
SHARE_OF_WORK = 0.10
REFRAIN_REASON = "repeated refrain line, counted at its first occurrence only"

_LINE_RE = re.compile(r"[^\n]+")
_STANZA_RE = re.compile(r"\S(?:.|\n(?![ \t\r]*\n))*", re.MULTILINE)


def is_short(kind: str) -> bool:
    return kind in SHORT_KINDS


def lines(raw: str) -> list[tuple[int, int]]:
    """Raw ``[start, end)`` of every non-blank line (trailing whitespace trimmed)."""
    out = []
    for m in _LINE_RE.finditer(raw):
        s, e = m.start(), m.end()
        text = raw[s:e]
        if not text.strip():
            continue
        s += len(text) - len(text.lstrip())
        e -= len(text) - len(text.rstrip())
        out.append((s, e))
    return out


def stanzas(raw: str) -> list[tuple[int, int]]:
    """Raw ``[start, end)`` of every stanza: runs of non-blank lines between blank lines."""
    out = []
    for m in _STANZA_RE.finditer(raw):
        s, e = m.start(), m.end()
        e -= len(raw[s:e]) - len(raw[s:e].rstrip())
        out.append((s, e))
    return out


def refrain_repeats(raw: str, profile: str, exclude: Sequence[tuple[int, int]] = (),
                    ) -> list[tuple[int, int]]:
    """Raw ranges of the lines that repeat an earlier line (same counted words under
    ``profile``, at least REFRAIN_MIN_WORDS of them): the repeats of a refrain or chorus."""
    spans = lines(raw)
    if exclude and spans:
        import numpy as np

        hit = intersecting(np.array([s for s, _ in spans]), np.array([e for _, e in spans]),
                           exclude)
        spans = [sp for sp, h in zip(spans, hit.tolist(), strict=True) if not h]
    seen: set[tuple[str, ...]] = set()
    out = []
    for s, e in spans:
        words = tuple(tokenize(raw[s:e], profile).words)
        if len(words) < REFRAIN_MIN_WORDS:
            continue
        if words in seen:
            out.append((s, e))
        else:
            seen.add(words)
    return out


def short_min_span(case_min_span: int, counted: int, floor: int = CHANCE_FLOOR_WORDS) -> int:
    """A short work's reporting threshold: a tenth of its counted words (refrain once), never
    below the chance floor and never above the case's threshold."""
    return min(case_min_span, max(floor, math.ceil(SHARE_OF_WORK * counted)))


def rule_text(case_min_span: int, counted: int, floor: int, unit: str, result: int) -> str:
    """The rule of :func:`short_min_span` with this work's numbers, for the report."""
    return (f"short work: reporting threshold min(case {case_min_span}, max({floor}, "
            f"{SHARE_OF_WORK:.0%} of {counted:,} counted {unit})) = {result} {unit}; a repeated "
            f"refrain counts once; {floor} {unit} is where chance matches between unrelated "
            "texts vanish (measurement.md section 2)")
