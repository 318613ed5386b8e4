"""Teacher-forced windows (reconstruction): the model's own probabilities of the work's text.

For each window, the prefix is given and the suffix is *scored* token by token (no sampling):
the log-probability of every suffix token and whether it is the model's top choice. The share
of top choices is the greedy-reproducibility of the window; the product of the probabilities is
p_z [Hay25, Coo25]. Needs a provider that can score (the embedded local models).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from casekit.pz import (
    HistogramBin,
    NPRate,
    ThresholdShare,
    greedy_rate,
    np_rates,
    pz_histogram,
    pz_threshold_shares,
)
from casekit.pz import (
    TeacherForced as ScoredWindow,
)
from casekit.stats import BootstrapRate, Rate, clustered_rate
from casekit.strategies.base import Probe, Strategy, StrategyParams
from casekit.strategies.measures import (
    FindingContext,
    Measure,
    MeasureFields,
    ReportRow,
    census_clusters,
)
from casekit.strategies.windows import windows
from casekit.works import Work

log = logging.getLogger(__name__)


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TeacherForcedSummary(_M):
    windows: int
    mean_top1_share: float
    min_top1_share: float
    max_top1_share: float
    greedy_reproduced_windows: int


class Probabilistic(_M):
    """Probabilistic extraction from teacher-forced windows [Hay25, Coo25]."""

    windows: int
    preset: str
    """``top40`` (T = 1, top-k 40) when the provider gave ranks, else only greedy."""
    greedy: Rate
    """Windows with greedy p_z = 1 (every suffix token the top choice)."""
    np_rates: list[NPRate]
    """(n,p)-discoverable extraction rates over windows: 1 - (1 - p_z)^n >= p."""
    histogram: list[HistogramBin]
    shares: list[ThresholdShare]
    """Share of windows and of (counted) characters with p_z >= tau."""
    sampling: str
    """How the windows were chosen (sampled windows, not the whole-work census of [Coo25])."""


def _scored(ctx: FindingContext) -> list[ScoredWindow]:
    return [x.teacher_forced for x in ctx.attempts if x.teacher_forced is not None]


class SummaryFields(MeasureFields):
    """The teacher-forced summary of a model x work finding."""

    teacher_forced: TeacherForcedSummary | None = None


class Top1Share(Measure):
    """[Hay25] how often the work's own next token is the model's top choice."""

    name = "top1_share"
    definition = ("Teacher-forced: the share of a window's continuation tokens that are the "
                  "model's top choice given the work's preceding text (greedy p_z = 1 when all "
                  "are) [Hay25].")
    FindingFields = SummaryFields
    label = "Teacher-forced top-1 share"
    further_order = None

    def finding(self, ctx: FindingContext) -> SummaryFields | None:
        scored = _scored(ctx)
        if not scored:
            return None
        shares = [t.top1_share for t in scored]
        return SummaryFields(teacher_forced=TeacherForcedSummary(
            windows=len(scored), mean_top1_share=round(sum(shares) / len(shares), 6),
            min_top1_share=min(shares), max_top1_share=max(shares),
            greedy_reproduced_windows=sum(1 for t in scored if t.greedy_reproduced)))

    def bootstrap(self, ctx: FindingContext) -> dict[str, BootstrapRate]:
        tf = _scored(ctx)
        if not tf:
            return {}
        ids, unit = census_clusters(ctx.work, [(t.suffix_chars or (0, 0))[0] for t in tf])
        return {"teacher_forced_greedy": clustered_rate(
            [int(bool(t.greedy_reproduced)) for t in tf], ids, unit)}


class ProbabilisticFields(MeasureFields):
    """The probabilistic-extraction field of a model x work finding."""

    probabilistic: Probabilistic | None = None
    """From the ``teacher_forced`` strategy's sampled windows (census windows excluded)."""


class PzMeasure(Measure):
    """[Hay25 Def. 2; Coo25] p_z of the sampled teacher-forced windows."""

    name = "p_z"
    definition = ("p_z [Hay25 Def. 2; Coo25]: the product over a window's suffix tokens of the "
                  "decoding-transformed probability given the work's preceding text "
                  "(teacher-forced): greedy preset (a token that is not the top choice gives 0) "
                  "and top-40 preset (T = 1, renormalized over the 40 most probable tokens; "
                  "outside them gives 0).")
    FindingFields = ProbabilisticFields
    label = "p_z (probabilistic extraction)"
    further_order = 10
    report_rows = (ReportRow("greedy", "Probabilistic extraction, greedy p_z = 1", 30),)
    words = {"none": "no scored windows", "note": "preset {preset}; {note}"}

    def finding(self, ctx: FindingContext) -> ProbabilisticFields | None:
        scored = _scored(ctx)
        if not scored:
            return None
        work = ctx.work
        greedy_logs = [0.0 if t.greedy_reproduced else -math.inf for t in scored]
        with_ranks = all(t.pz_top40 != "not_available" for t in scored)
        top_logs = [t.log_pz_top40 if t.pz_top40 == "positive" and t.log_pz_top40 is not None
                    else -math.inf
                    for t in scored] if with_ranks else greedy_logs
        ranges = [t.suffix_chars for t in scored if t.suffix_chars is not None]
        return ProbabilisticFields(probabilistic=Probabilistic(
            windows=len(scored), preset="top40" if with_ranks else "greedy",
            greedy=greedy_rate(greedy_logs),
            np_rates=np_rates([math.exp(x) for x in top_logs]),
            histogram=pz_histogram(top_logs),
            shares=pz_threshold_shares(top_logs, ranges,
                                       total_chars=len(work.raw) - work.excluded_chars),
            sampling=f"{len(scored)} teacher-forced windows sampled by the case's "
                     "strategies (not the whole-work census of [Coo25])",
        ))


class NpDiscoverable(Measure):
    """[Hay25] (n,p)-discoverable extraction: a definition the p_z figures refer to."""

    name = "np_discoverable"
    definition = ("(n,p)-discoverable extraction [Hay25]: a window is (n,p)-extractable "
                  "when 1 - (1 - p_z)^n >= p; the rate is over the scored windows.")
    label = "(n,p)-discoverable extraction"
    further_order = 50


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
    measures: ClassVar[tuple[type[Measure], ...]] = (Top1Share, PzMeasure, NpDiscoverable)

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, TeacherForcedParams)
        stride = p.stride_words or (p.prefix_words + p.suffix_words)
        for w in windows(work, p.prefix_words, p.suffix_words, stride, p.max_windows,
                         p.start_word, rng):
            yield Probe(kind="score", text=w.prefix_text, continuation=w.suffix_text,
                        target=w.suffix, supplied=[w.prefix],
                        label=f"window at word {w.start_word}")
