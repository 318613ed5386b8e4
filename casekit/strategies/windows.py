"""Windows through a work's counted words, shared by the window-based strategies."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from casekit.records import WorkRange
from casekit.works import Work


@dataclass(frozen=True)
class Window:
    start_word: int
    prefix: WorkRange
    suffix: WorkRange
    prefix_text: str
    suffix_text: str


def windows(work: Work, prefix_words: int, suffix_words: int, stride_words: int,
            max_windows: int | None, start_word: int, rng: random.Random) -> Iterator[Window]:
    """Windows of ``prefix_words`` + ``suffix_words`` counted words, every ``stride_words``,
    made one at a time (a whole novel at a stride of one word is some 160,000 windows).

    The texts are quoted from the raw work (so prompts show the text exactly as published). When
    more windows fit than ``max_windows``, a seeded random subset is taken, in work order (the
    sample is drawn over a ``range``, which ``random.sample`` treats exactly as the list of the
    same numbers, so the windows are those a list gave).
    """
    toks = work.tokens
    n = len(toks)
    size = prefix_words + suffix_words
    starts: Sequence[int] = range(start_word, n - size + 1, stride_words)
    if max_windows is not None and len(starts) > max_windows:
        starts = sorted(rng.sample(starts, max_windows))
    for s in starts:
        p0, p1 = toks.char_span(s, s + prefix_words)
        s0, s1 = toks.char_span(s + prefix_words, s + size)
        yield Window(
            start_word=s,
            prefix=WorkRange(start=p0, end=p1),
            suffix=WorkRange(start=s0, end=s1),
            prefix_text=work.raw[p0:p1],
            # The continuation starts at the end of the prefix, so whitespace between them is kept.
            suffix_text=work.raw[p1:s1],
        )
