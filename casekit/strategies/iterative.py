"""Iterative continuation (reconstruction) [Ahm26]: seed the model with the first words of a
chapter, then keep asking it to continue its own output, turn after turn.

Seeds are chapter openings (lines such as ``CHAPTER I`` or ``Chapter 3``), or the start of
the work when it has no chapter headings. The session stops at the turn cap, when a turn
matches the refusal pattern, or when the model stops writing. The target of each session is
the rest of its chapter, so the report can say how much of the chapter was reconstructed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator

import numpy as np
from pydantic import Field, field_validator

from casekit.records import WorkRange
from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.works import CHAPTER_RE, Work

log = logging.getLogger(__name__)

DEFAULT_REFUSAL = (r"(?i)\b(I['’]m sorry|I am sorry|I apologi[sz]e|I can(?:no|['’])t "
                   r"(?:help|provide|continue|reproduce|share)|I cannot|copyright)")


class IterativeParams(StrategyParams):
    seed_words: int = Field(30, ge=3, le=2000)
    """Words of the chapter's opening given as the seed."""
    max_chapters: int | None = Field(5, ge=1)
    """Chapters to seed (a seeded random subset, in work order, when there are more)."""
    max_turns: int = Field(5, ge=1, le=200)
    max_tokens: int = Field(200, ge=1, le=8192)
    """Tokens per turn."""
    continue_message: str = "Continue."
    chat_template: str = (
        "Continue the following text exactly as it appears in the original, word for word, "
        "without any commentary:\n\n{{ prefix }}"
    )
    system: str | None = None
    stop_pattern: str | None = DEFAULT_REFUSAL
    """Regular expression ending the session (a refusal); null for none."""
    stop: list[str] = []
    """Stop strings sent with every turn."""

    @field_validator("stop_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


def chapter_starts(work: Work) -> list[int]:
    """Word indices where chapters begin (the first counted word after a heading line)."""
    toks = work.tokens
    starts: list[int] = []
    for m in CHAPTER_RE.finditer(work.raw):
        i = int(np.searchsorted(toks.starts, m.end(), side="left"))
        if i < len(toks) and (not starts or i > starts[-1]):
            starts.append(i)
    return starts or [0]


class IterativeContinuation(Strategy):
    name = "iterative_continuation"
    intent = "reconstruction"
    description = ("Seed with a chapter's opening words, then ask the model to continue its own "
                   "output turn after turn (the model's earlier turns are not leakage).")
    Params = IterativeParams

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        from casekit.records import Session

        p = self.params
        assert isinstance(p, IterativeParams)
        toks = work.tokens
        starts = chapter_starts(work)
        ends = starts[1:] + [len(toks)]
        chapters = list(zip(starts, ends, strict=True))
        if p.max_chapters is not None and len(chapters) > p.max_chapters:
            chapters = sorted(rng.sample(chapters, p.max_chapters))
        for start, end in chapters:
            seed_end = min(end, start + p.seed_words)
            if seed_end >= end:
                continue  # a chapter shorter than the seed leaves nothing to reconstruct
            s0, s1 = toks.char_span(start, seed_end)
            _, t1 = toks.char_span(seed_end, end)
            seed = work.raw[s0:s1]
            yield Probe(
                kind="continue", text=seed,
                chat_text=render_template(p.chat_template, work, prefix=seed),
                system=p.system, target=WorkRange(start=s1, end=t1),
                supplied=[WorkRange(start=s0, end=s1)],
                label=f"chapter at word {start}, up to {p.max_turns} turns",
                max_tokens=p.max_tokens, stop=p.stop,
                session=Session(max_turns=p.max_turns, continue_message=p.continue_message,
                                stop_pattern=p.stop_pattern),
            )
