"""Prefix continuation (adversarial): give the model a window of the work, ask for what follows.

Literature default: 50-word/token prefix, 50 to continue [Car23]. On a completion (base) model
the prompt is the prefix itself; on a chat model it is wrapped in an instruction to continue.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

from pydantic import Field

from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.strategies.windows import windows
from casekit.works import Work

log = logging.getLogger(__name__)


class PrefixParams(StrategyParams):
    prefix_words: int = Field(50, ge=3, le=2000)
    suffix_words: int = Field(50, ge=5, le=2000)
    stride_words: int | None = Field(None, ge=1)
    """Default: prefix_words + suffix_words (non-overlapping windows)."""
    max_windows: int | None = Field(20, ge=1)
    start_word: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    """Default: twice suffix_words (tokens are shorter than words)."""
    chat_template: str = (
        "Continue the following text exactly as it appears in the original, word for word, "
        "without any commentary:\n\n{{ prefix }}"
    )
    system: str | None = None


class PrefixContinuation(Strategy):
    name = "prefix_continuation"
    intent = "adversarial"
    description = "Windows through the work: the model is given a prefix and asked to continue it."
    Params = PrefixParams

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, PrefixParams)
        stride = p.stride_words or (p.prefix_words + p.suffix_words)
        for w in windows(work, p.prefix_words, p.suffix_words, stride, p.max_windows,
                         p.start_word, rng):
            yield Probe(
                kind="continue",
                text=w.prefix_text,
                chat_text=render_template(p.chat_template, work, prefix=w.prefix_text),
                system=p.system,
                target=w.suffix,
                supplied=[w.prefix],
                label=f"window at word {w.start_word}",
                max_tokens=p.max_tokens or 2 * p.suffix_words,
            )
