"""Teacher-forced windows (reconstruction): the model's own probabilities of the work's text.

For each window, the prefix is given and the suffix is *scored* token by token (no sampling):
the log-probability of every suffix token and whether it is the model's top choice. The share
of top choices is the greedy-reproducibility of the window; the product of the probabilities is
p_z [Hay25, Coo25]. Needs a provider that can score (the embedded local models).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

from pydantic import Field

from casekit.strategies.base import Probe, Strategy, StrategyParams
from casekit.strategies.windows import windows
from casekit.works import Work

log = logging.getLogger(__name__)


class TeacherForcedParams(StrategyParams):
    prefix_words: int = Field(50, ge=1, le=2000)
    suffix_words: int = Field(50, ge=1, le=2000)
    stride_words: int | None = Field(None, ge=1)
    max_windows: int | None = Field(20, ge=1)
    start_word: int = Field(0, ge=0)


class TeacherForced(Strategy):
    name = "teacher_forced"
    intent = "reconstruction"
    description = "Score the work's own text after a prefix: per-token log-probs and top choices."
    Params = TeacherForcedParams
    needs_score = True

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, TeacherForcedParams)
        stride = p.stride_words or (p.prefix_words + p.suffix_words)
        for w in windows(work, p.prefix_words, p.suffix_words, stride, p.max_windows,
                         p.start_word, rng):
            yield Probe(kind="score", text=w.prefix_text, continuation=w.suffix_text,
                        target=w.suffix, supplied=[w.prefix],
                        label=f"window at word {w.start_word}")
