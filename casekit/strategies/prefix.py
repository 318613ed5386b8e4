"""Prefix continuation (adversarial): give the model a window of the work, ask for what follows.

Literature default: 50-word/token prefix, 50 to continue [Car23]. On a completion (base) model
the prompt is the prefix itself; on a chat model it is wrapped in an instruction to continue.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz.distance import Levenshtein

from casekit.normalize import tokenize
from casekit.pz import (
    ThresholdShare,
    generation_steps,
    pz_bound_from_generation,
    pz_threshold_shares,
)
from casekit.stats import BootstrapRate, Rate, clustered_rate, rate
from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.strategies.measures import (
    EXCERPT_UNIT,
    AttemptContext,
    FindingContext,
    Measure,
    MeasureFields,
    ReportRow,
)
from casekit.strategies.windows import windows
from casekit.works import Work

log = logging.getLogger(__name__)


CAR23_TOKENS = 50
"""Suffix length of the 50/50 discoverable extraction test [Car23]."""
CAR23_MAX_EDIT = 0.10
"""Largest normalized edit distance of the approximate variant (Gemini/Gemma reports)."""


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")



class Discoverable(_M):
    """One window's 50/50 discoverable-extraction test [Car23 Def. 3.1]."""

    compared: int
    """Target tokens compared: ``min(n, len(target))``."""
    exact: bool
    """The output's first ``compared`` tokens equal the target's."""
    distance: int
    """Levenshtein distance (over tokens) between the output's and the target's first
    ``compared`` tokens (a shorter output counts its missing tokens as deletions)."""
    normalized_distance: float
    """``distance / compared``."""
    approximate: bool
    """``normalized_distance <= max_edit`` (10% by default)."""


def discoverable_extraction(target: Sequence[Hashable], output: Sequence[Hashable],
                            n: int = CAR23_TOKENS,
                            max_edit: float = CAR23_MAX_EDIT) -> Discoverable:
    """50/50 discoverable extraction of one window [Car23 Def. 3.1].

    Given the window's target continuation (the ``n`` tokens, or words, that follow the
    50-token prefix in the work) and the model's greedy output for that prefix:

    - exact: the output's first ``n`` tokens equal the target's first ``n``;
    - approximate: their token-level Levenshtein distance is <= ``max_edit * n``
      (normalized edit distance <= 10%, after the Gemini/Gemma reports).

    A target shorter than ``n`` is compared over its own length. Tokens are any hashable items
    (model token ids or strings, or words of one profile): the report names which.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= max_edit < 1.0:
        raise ValueError(f"max_edit must be in [0, 1), got {max_edit}")
    m = min(n, len(target))
    if m == 0:
        raise ValueError("the target continuation is empty: nothing to compare")
    tgt, out = list(target[:m]), list(output[:m])
    dist = int(Levenshtein.distance(out, tgt))
    norm = dist / m
    return Discoverable(compared=m, exact=out == tgt, distance=dist, normalized_distance=norm,
                        approximate=norm <= max_edit + 1e-12)


def discoverable_rate(results: Iterable[Discoverable],
                      variant: Literal["exact", "approximate"]) -> Rate:
    """Extractable windows of all windows tried [Car23], with a Wilson (Clopper-Pearson at 0
    or n) interval. Windows of one excerpt are not independent: for an interval over excerpts
    use :func:`casekit.stats.bootstrap_rate`."""
    if variant not in ("exact", "approximate"):
        raise ValueError(f"variant must be 'exact' or 'approximate', got {variant!r}")
    rs = list(results)
    return rate(sum(1 for r in rs if getattr(r, variant)), len(rs))


class GenerationPz(_M):
    """p_z of a prefix-continuation window bounded from the API's top-k log-probs of the greedy
    generation (``casekit.pz.pz_bound_from_generation``) [Hay25; Coo25]."""

    greedy: Literal["one", "zero", "undetermined"]
    """Greedy p_z: exactly 1, exactly 0, or undetermined (at most 1)."""
    top40_log_upper: float | None
    """Natural log of the top-40 upper bound; None when the bound is 0."""
    suffix_start: int
    """Work character where the window's suffix starts."""
    covered_chars: int
    """Suffix characters the generation reproduced before it left the suffix or stopped."""
    suffix_chars: int
    top_k: int
    """The longest top-k list the API returned for a step."""


class ApiPzBounds(_M):
    """p_z of prefix-continuation windows bounded from API top-k log-probs [Hay25; Coo25]:
    greedy exactly where the lists decide it, top-40 only as an upper bound."""

    windows: int
    greedy_one: int
    """Windows with greedy p_z exactly 1 (the generation spelled the suffix, top choice each
    step)."""
    greedy_zero: int
    greedy_undetermined: int
    top40_upper_shares: list[ThresholdShare]
    """Windows whose top-40 **upper bound** is >= tau (and the characters of their suffixes):
    the true share is at most this."""
    top_k: int
    """Alternatives per step the API returned (at most)."""


def generation_pz(raw_response: Any, text: str, start: int, end: int) -> GenerationPz | None:
    """p_z bounds of a greedy prefix-continuation window from the response's top-k log-probs
    (API models asked for ``params.logprobs``); None when the response carries none."""
    steps = generation_steps(raw_response)
    if not steps:
        return None
    bound = pz_bound_from_generation(text[start:end], steps)
    if bound is None:
        return None
    greedy = ("one" if bound.greedy.exact and bound.greedy.upper == 1.0 else
              "zero" if bound.greedy.exact else "undetermined")
    log40 = bound.top40.log_upper
    return GenerationPz(greedy=greedy,
                        top40_log_upper=None if log40 == -math.inf else round(log40, 9),
                        suffix_start=start, covered_chars=bound.covered_chars,
                        suffix_chars=bound.suffix_chars,
                        top_k=max(len(top) for _, top in steps))


def _greedy_window(ctx: AttemptContext) -> bool:
    """A greedy window with a target: where [Car23]'s test and the API bounds apply."""
    a = ctx.record.attempt
    return a.target is not None and a.decoding.temperature == 0 and ctx.out is not None


class DiscoverableFields(MeasureFields):
    """The 50/50 discoverable field of an attempt."""

    discoverable: Discoverable | None = None
    """50/50 discoverable extraction of a greedy prefix-continuation window [Car23 Def. 3.1],
    in light-words words (not model tokens)."""


class DiscoverableRates(MeasureFields):
    """The 50/50 discoverable rates of a model x work finding."""

    discoverable_exact: Rate | None = None
    """50/50 discoverable extraction [Car23], exact variant, over greedy prefix windows."""
    discoverable_approx: Rate | None = None
    """The same within 10% word edit distance."""


class Discoverable5050(Measure):
    """[Car23] 50/50 discoverable extraction of greedy prefix-continuation windows."""

    name = "discoverable_5050"
    definition = ("50/50 discoverable extraction [Car23 Def. 3.1]: a greedy "
                  "prefix-continuation window whose next 50 words (light-words profile, "
                  "not model tokens) are reproduced exactly, or within 10% word edit "
                  "distance (approximate); rate over windows tried.")
    AttemptFields = DiscoverableFields
    FindingFields = DiscoverableRates
    label = "50/50 discoverable extraction"
    further_order = 60
    report_rows = (ReportRow("exact", "50/50 discoverable extraction, exact", 40),
                   ReportRow("approx", "50/50 discoverable extraction, approximate", 50))

    def attempt(self, ctx: AttemptContext) -> DiscoverableFields | None:
        if not _greedy_window(ctx):
            return None
        a = ctx.record.attempt
        assert a.target is not None and ctx.out is not None
        # The window's continuation against the output (echo included: an output that
        # repeats the prompt fails the test, as in the definition).
        target_words = tokenize(ctx.work.raw[a.target.start:a.target.end],
                                ctx.work.match_profile).words
        return DiscoverableFields(
            discoverable=discoverable_extraction(target_words, ctx.out.words, n=50))

    _last: tuple[FindingContext, list[tuple[str, Discoverable]]] | None = None

    def _tried(self, ctx: FindingContext) -> list[tuple[str, Discoverable]]:
        """The windows tested and their results, by excerpt: one walk of the attempts for
        both :meth:`finding` and :meth:`bootstrap`, which the analyzer calls one after the
        other with the same context."""
        if self._last is not None and self._last[0] is ctx:
            return self._last[1]
        got = [(f"{x.strategy_key}:{x.index}", f.discoverable) for x in ctx.attempts
               if (f := x.measure(DiscoverableFields)) is not None
               and f.discoverable is not None]
        self._last = (ctx, got)
        return got

    def finding(self, ctx: FindingContext) -> DiscoverableRates | None:
        disc = [d for _, d in self._tried(ctx)]
        if not disc:
            return None
        return DiscoverableRates(discoverable_exact=discoverable_rate(disc, "exact"),
                                 discoverable_approx=discoverable_rate(disc, "approximate"))

    def bootstrap(self, ctx: FindingContext) -> dict[str, BootstrapRate]:
        tried = self._tried(ctx)
        if not tried:
            return {}
        return {name: clustered_rate([int(bool(getattr(d, attr))) for _, d in tried],
                                     [k for k, _ in tried], EXCERPT_UNIT)
                for name, attr in (("discoverable_exact", "exact"),
                                   ("discoverable_approx", "approximate"))}


class PzBoundFields(MeasureFields):
    """The API p_z bound of an attempt."""

    pz_bound: GenerationPz | None = None
    """Prefix continuation with API log-probs: p_z bounds of the window (labelled bounds)."""


class PzBoundSummary(MeasureFields):
    """The API p_z bounds of a model x work finding."""

    api_pz_bounds: ApiPzBounds | None = None
    """From API top-k log-probs of greedy prefix continuations; bounds, not values."""


class PzUpperBound(Measure):
    """[Hay25; Coo25] p_z bounded from the top-k log-probs an API returns with a greedy
    generation."""

    name = "pz_upper_bound"
    definition = ("p_z bounds from API log-probs [Hay25; Coo25]: for a greedy "
                  "prefix-continuation window on a model whose API returns the top-k "
                  "log-probs of each generated token (params.logprobs), the steps whose "
                  "generated token continues the window's suffix are bounded from their "
                  "lists; at the first step that leaves the suffix, the suffix's own token "
                  "is bounded by the largest listed token that fits it (or the smallest "
                  "listed probability); later steps bound nothing. Greedy p_z is exact (1 "
                  "or 0) where the lists decide it, else undetermined; top-40 p_z is only "
                  "ever an upper bound (the true value is at most the figure). Assumes the "
                  "generated tokens are the model's tokenization of their text.")
    AttemptFields = PzBoundFields
    FindingFields = PzBoundSummary
    label = "p_z bounds from API log-probs"
    further_order = 20
    report_rows = (ReportRow("bounds", "p_z from API log-probs (bounds)", 20),)
    words = {
        "none": "no API top-k log-probs",
        "value": "greedy p_z = 1 in {one} of {windows} windows (exact)",
        "note": ("exactly 0 in {zero}, undetermined in {undetermined}{share}; UPPER BOUNDS "
                 "from top-{top_k} log-probs"),
        "share": "; top-40 upper bound \u2265 1% in {n} of {windows}",
    }

    def attempt(self, ctx: AttemptContext) -> PzBoundFields | None:
        if not _greedy_window(ctx):
            return None
        a, result = ctx.record.attempt, ctx.record.result
        assert a.target is not None and result is not None
        bound = generation_pz(result.raw_response, ctx.work.raw, a.target.start, a.target.end)
        return PzBoundFields(pz_bound=bound) if bound is not None else None

    def finding(self, ctx: FindingContext) -> PzBoundSummary | None:
        bounds = [f.pz_bound for x in ctx.attempts
                  if (f := x.measure(PzBoundFields)) is not None and f.pz_bound is not None]
        if not bounds:
            return None
        work = ctx.work
        logs = [b.top40_log_upper if b.top40_log_upper is not None else -math.inf
                for b in bounds]
        # A window is credited with the suffix characters its bound covers.
        ranges = [(b.suffix_start, b.suffix_start + b.covered_chars) for b in bounds]
        return PzBoundSummary(api_pz_bounds=ApiPzBounds(
            windows=len(bounds),
            greedy_one=sum(b.greedy == "one" for b in bounds),
            greedy_zero=sum(b.greedy == "zero" for b in bounds),
            greedy_undetermined=sum(b.greedy == "undetermined" for b in bounds),
            top40_upper_shares=pz_threshold_shares(
                logs, ranges, total_chars=len(work.raw) - work.excluded_chars),
            top_k=max(b.top_k for b in bounds)))


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
    measures: ClassVar[tuple[type[Measure], ...]] = (Discoverable5050, PzUpperBound)

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
                max_tokens=p.max_tokens,
                default_max_tokens=2 * p.suffix_words,
            )
