"""The metrics of measurement.md section 4, each under its own name and with its source.

Pure functions over word (or token) sequences, spans and masks; the analyzer feeds them and
the report prints each figure with the definition named here.

- :func:`spans_over_threshold`: spans > T words [Liu26], greedy non-overlapping, longest first.
- :func:`longest_block`, :func:`longest_regurgitated`: [Liu26]'s longest contiguous memorized
  block and longest contiguous regurgitated span.
- :func:`coverage_overlap`, :func:`rate_ratio`: model comparison [Liu26] (Jaccard overlap of
  coverage masks beside its random baseline; ratio of extraction rates, Katz interval).

The metrics of one strategy live with it, beside its measures: 50/50 discoverable extraction
in ``casekit.strategies.prefix``, nv-recall in ``casekit.strategies.iterative``, name-cloze
accuracy in ``casekit.strategies.name_cloze``.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict

LIU26_T = 20
"""Span-count threshold: spans strictly longer than T words [Liu26]."""

WordRange = tuple[int, int]
"""Work word positions ``[start, end)``."""


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- spans > T [Liu26] -------------------------------------------------------------------------


def clip_to_range(matches: Iterable[WordRange], excerpt: WordRange) -> list[WordRange]:
    """The parts of ``matches`` (work word ranges) inside ``excerpt``; empty parts dropped.

    Clipping a generation's maximal exact matches against the whole work to the excerpt it
    targeted gives its maximal exact matches against that excerpt ([Liu26]'s per-excerpt
    matches) in book positions.
    """
    lo, hi = excerpt
    out = []
    for s, e in matches:
        a, b = max(int(s), lo), min(int(e), hi)
        if b > a:
            out.append((a, b))
    return out


def spans_over_threshold(matches: Iterable[WordRange], t: int = LIU26_T, *,
                         suffixes: bool = True) -> list[WordRange]:
    """Spans > T words [Liu26], as their code counts them (``count_regurgitated_spans``).

    ``matches``: every generation's maximal exact matches (words profile) against its own
    excerpt, in book word positions (see :func:`clip_to_range`), pooled over the generations
    of a model and work. Candidates longer than ``t`` words are sorted by length (descending),
    then start, end and input order, and selected greedily when they do not overlap an
    already selected span. With ``suffixes`` (their code's behaviour) every start position
    inside a match is a candidate too, ``[s + i, e)`` while longer than ``t``: so a match
    overlapping a longer selected span can still contribute the part after it (never the
    part before it). Returns the selected spans sorted by start; the figure is their count.
    """
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    # The candidates in that order, lazily: a heap holds each match's longest suffix not yet
    # ruled out. When a popped candidate [a, e) overlaps a selected span, so do its match's
    # suffixes that start before that span's end (they come later, and selected spans stay),
    # so the next one worth trying starts there; a selected candidate ends its match (every
    # other suffix of it overlaps it). The same spans as sorting every suffix of every match
    # (O(C log C) for C matched words; tests/test_metrics.py compares the two), in time
    # growing with the matches and the spans that block them.
    heap = [(-(e - s), s, e, order) for order, (s, e) in
            enumerate((int(s), int(e)) for s, e in matches) if e - s > t]
    heapq.heapify(heap)
    starts: list[int] = []
    selected: list[WordRange] = []
    while heap:
        _, a, e, order = heapq.heappop(heap)
        i = bisect.bisect_left(starts, a)
        if i > 0 and selected[i - 1][1] > a:
            blocked_to = selected[i - 1][1]
        elif i < len(selected) and selected[i][0] < e:
            blocked_to = selected[i][1]
        else:
            starts.insert(i, a)
            selected.insert(i, (a, e))
            continue
        if suffixes and e - blocked_to > t:
            heapq.heappush(heap, (-(e - blocked_to), blocked_to, e, order))
    return selected


# --- longest block / longest regurgitated span [Liu26] ----------------------------------------


def longest_block(mask: np.ndarray) -> tuple[int, int | None]:
    """Longest contiguous memorized block [Liu26]: the longest run of covered positions in a
    coverage mask (aggregated across attempts: a reconstruction measure). Returns
    ``(length, start)``, ``(0, None)`` for an empty mask; ties go to the earliest run."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0, None
    d = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    i = int(np.argmax(ends - starts))
    return int(ends[i] - starts[i]), int(starts[i])


def longest_regurgitated(matches: Iterable[WordRange], excerpt: WordRange) -> int:
    """Longest contiguous regurgitated span [Liu26]: the longest exact match of one generation
    against its own excerpt, untrimmed (no leakage discount, no merging across generations).
    ``matches``: that generation's maximal exact matches against the work (words profile),
    clipped here to the excerpt. 0 when none."""
    return max((e - s for s, e in clip_to_range(matches, excerpt)), default=0)


# --- model comparison [Liu26] -----------------------------------------------------------------


class CoverageOverlap(_M):
    """Overlap of two models' coverage masks over one work [Liu26]."""

    total: int
    a: int
    """Positions covered by model A."""
    b: int
    both: int
    either: int
    jaccard: float | None
    """``both / either``; None when neither model covers anything."""
    random_baseline: float | None
    """Expected Jaccard of independent random masks of the same densities:
    ``pa*pb / (pa + pb - pa*pb)``; None when both densities are 0."""


def jaccard_random_baseline(pa: float, pb: float) -> float | None:
    """[Liu26]: the Jaccard overlap expected if two coverage masks with densities ``pa`` and
    ``pb`` were independent, ``pa*pb / (pa + pb - pa*pb)`` (E|A and B| / E|A or B| per
    position). None when both are 0."""
    if not (0.0 <= pa <= 1.0 and 0.0 <= pb <= 1.0):
        raise ValueError("densities must be in [0, 1]")
    denom = pa + pb - pa * pb
    return None if denom == 0 else pa * pb / denom


def coverage_overlap(mask_a: np.ndarray, mask_b: np.ndarray) -> CoverageOverlap:
    """Jaccard overlap of two models' coverage masks of one work, beside its random baseline
    [Liu26]: well above the baseline, the models recall the same passages."""
    a, b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of different lengths: {a.shape} and {b.shape}")
    n = int(a.size)
    na, nb = int(a.sum()), int(b.sum())
    both, either = int((a & b).sum()), int((a | b).sum())
    return CoverageOverlap(
        total=n, a=na, b=nb, both=both, either=either,
        jaccard=both / either if either else None,
        random_baseline=jaccard_random_baseline(na / n, nb / n) if n else None)


class RateRatio(_M):
    """Ratio of two extraction rates with a Katz log interval."""

    k1: int
    n1: int
    k2: int
    n2: int
    ratio: float | None
    """``(k1/n1) / (k2/n2)`` (from the corrected counts when ``corrected``); None when
    undefined (an empty denominator, or no success in either group)."""
    lo: float | None
    hi: float | None
    corrected: bool
    """A zero count: 0.5 was added to every cell (k + 0.5 of n + 1) before computing."""
    method: str


def rate_ratio(k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> RateRatio:
    """Ratio of two extraction rates, model 1 over model 2, with a (1 - alpha) interval by
    Katz's log method: ``ln RR +- z * sqrt(1/k1 - 1/n1 + 1/k2 - 1/n2)``, exponentiated
    (z = 1.96 at 95%). With a zero success count in one group, 0.5 is added to each cell of the
    2x2 table (k + 0.5 of n + 1: the usual correction) and ``corrected`` says so; with no
    success in either group the ratio is undefined (None). [Liu26] compares models this way."""
    for k, n in ((k1, n1), (k2, n2)):
        if n < 0 or not 0 <= k <= n:
            raise ValueError(f"need 0 <= k <= n, got {k} of {n}")
    method = "katz-log"
    if n1 == 0 or n2 == 0 or (k1 == 0 and k2 == 0):
        return RateRatio(k1=k1, n1=n1, k2=k2, n2=n2, ratio=None, lo=None, hi=None,
                         corrected=False, method=method)
    corrected = k1 == 0 or k2 == 0
    a, m, c, p = (k1 + 0.5, n1 + 1.0, k2 + 0.5, n2 + 1.0) if corrected else (k1, n1, k2, n2)
    rr = (a / m) / (c / p)
    se = math.sqrt(max(0.0, 1 / a - 1 / m + 1 / c - 1 / p))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return RateRatio(k1=k1, n1=n1, k2=k2, n2=n2, ratio=rr, lo=rr * math.exp(-z * se),
                     hi=rr * math.exp(z * se), corrected=corrected, method=method)
