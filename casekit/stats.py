"""Interval estimates for k-of-n rates, and the exact test of a subject against its control.

Wilson score intervals for rates, exact Clopper-Pearson where k = 0 or k = n (where Wilson is
least reliable) and for the false-positive upper bound of controls; a cluster-bootstrap
percentile interval where attempts are not independent (:func:`bootstrap_rate`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

Z95 = 1.959963984540054


class Rate(BaseModel):
    """k of n, with a two-sided 95% interval."""

    model_config = ConfigDict(frozen=True)

    k: int
    n: int
    rate: float | None
    """k / n, or None when n = 0 (no attempts: no estimate)."""
    lo: float | None
    hi: float | None
    method: str
    """``wilson`` or ``clopper-pearson`` (exact)."""


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    total = 0.0
    lp, lq = math.log(p), math.log1p(-p)
    for i in range(0, k + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                          + i * lp + (n - i) * lq)
    return min(1.0, total)


def _bisect(f: object, target: float, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    fn = f  # type: ignore[assignment]
    for _ in range(100):
        mid = (lo + hi) / 2
        val = fn(mid)  # type: ignore[operator]
        if (val < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion."""
    if n <= 0:
        raise ValueError("n must be positive")
    if k == 0:
        lo = 0.0
    else:
        # lo: P(X >= k | lo) = alpha/2  <=>  1 - cdf(k-1, lo) = alpha/2
        lo = _bisect(lambda p: 1 - _binom_cdf(k - 1, n, p), alpha / 2, increasing=True)
    if k == n:
        hi = 1.0
    else:
        # hi: P(X <= k | hi) = alpha/2; the cdf decreases in p
        hi = _bisect(lambda p: _binom_cdf(k, n, p), alpha / 2, increasing=False)
    return lo, hi


def clopper_pearson_upper(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided (1 - alpha) upper bound: 0 of n gives about 3/n at 95%."""
    if n <= 0:
        raise ValueError("n must be positive")
    if k == n:
        return 1.0
    return _bisect(lambda p: _binom_cdf(k, n, p), alpha, increasing=False)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        raise ValueError("n must be positive")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> Rate:
    """k of n with Wilson, or exact Clopper-Pearson at k = 0 or k = n."""
    if n == 0:
        return Rate(k=0, n=0, rate=None, lo=None, hi=None, method="none")
    if k in (0, n):
        lo, hi = clopper_pearson(k, n)
        return Rate(k=k, n=n, rate=k / n, lo=lo, hi=hi, method="clopper-pearson")
    lo, hi = wilson(k, n)
    return Rate(k=k, n=n, rate=k / n, lo=lo, hi=hi, method="wilson")


def chance_count(k: int, n: int) -> tuple[Rate, float | None]:
    """A control's chance reproductions, k of n: the rate and its one-sided 95% upper bound
    (:func:`clopper_pearson_upper`, rounded to 6 places as findings.json holds it; None
    without attempts). The one computation behind the control floor (casekit.analysis) and
    every count the report prints beside it, so the figures cannot drift apart."""
    return rate(k, n), round(clopper_pearson_upper(k, n), 6) if n else None


# --- intervals over clusters -------------------------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


class BootstrapRate(Rate):
    """A rate over attempts grouped in clusters, with a cluster-bootstrap percentile interval."""

    clusters: int
    """Number of clusters (excerpts, chapters) resampled."""
    resamples: int
    seed: int
    """Seed of the numpy Generator: the same inputs give the same interval."""
    unit: str
    """What a cluster is (``excerpt``, ``chapter``): the report says which."""


def bootstrap_rate(successes: list[int], trials: list[int], *, unit: str = "excerpt",
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                   alpha: float = 0.05) -> BootstrapRate:
    """k of n with a percentile interval from a bootstrap over clusters (measurement.md §6).

    Overlapping windows and repeated samples of one prompt are not independent, so the unit
    resampled is the cluster (an excerpt or a chapter), not the attempt: cluster i has
    ``successes[i]`` of ``trials[i]``. Each of ``resamples`` replicates draws as many clusters
    as there are, with replacement (``numpy.random.default_rng(seed).integers``), and computes
    the pooled rate ``sum(k) / sum(n)``; the interval is the ``alpha/2`` and ``1 - alpha/2``
    quantiles of the replicates (``numpy.quantile``, linear interpolation). Replicates that
    drew only clusters without trials are dropped. With one cluster, or no variation between
    clusters, the interval collapses to the point estimate: say so rather than print it as a
    confidence interval.
    """
    if len(successes) != len(trials):
        raise ValueError(f"{len(successes)} success counts for {len(trials)} clusters")
    if any(t < 0 or not 0 <= s <= t for s, t in zip(successes, trials, strict=True)):
        raise ValueError("every cluster needs 0 <= successes <= trials")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    k, n, c = int(sum(successes)), int(sum(trials)), len(trials)
    if n == 0:
        return BootstrapRate(k=0, n=0, rate=None, lo=None, hi=None, method="none", clusters=c,
                             resamples=resamples, seed=seed, unit=unit)
    ks, ns = np.asarray(successes, dtype=np.int64), np.asarray(trials, dtype=np.int64)
    if k in (0, n) and int(ns.min()) > 0:
        # Every replicate draws clusters with trials, and each cluster's rate is the whole's
        # (0 of its trials, or all of them): every replicate is k / n exactly, and so are
        # both quantiles. Nothing to draw (most intervals of a run: its zero rates).
        lo = hi = k / n
    else:
        key = (ks.tobytes(), ns.tobytes(), resamples, seed, alpha)
        got = _INTERVALS.get(key)
        if got is None:
            rk, rn = _resampled_sums(ks, ns, resamples, seed)
            ok = rn > 0
            reps = rk[ok] / rn[ok]
            q = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
            got = _INTERVALS[key] = (float(q[0]), float(q[1]))
            while len(_INTERVALS) > _INTERVALS_KEPT:
                del _INTERVALS[next(iter(_INTERVALS))]
        lo, hi = got
    return BootstrapRate(k=k, n=n, rate=k / n, lo=lo, hi=hi,
                         method="cluster-bootstrap-percentile", clusters=c,
                         resamples=resamples, seed=seed, unit=unit)


_INTERVALS: dict[tuple[bytes, bytes, int, int, float], tuple[float, float]] = {}
"""The last intervals :func:`bootstrap_rate` drew, by their inputs: a function of them alone,
and an analysis asks for the same one several times (a model x work's extraction rate and
its discoverable rate over the same excerpts with the same hits: one draw instead of two)."""
_INTERVALS_KEPT = 16

_DRAW_CELLS = 1 << 18
"""Cluster draws held at once by :func:`_resampled_sums` (2 MB of int64): the replicates are
drawn in blocks of rows, so memory does not grow with clusters x resamples. Small blocks are
also faster: a 32 MB block (and its 32 MB gather) was mapped fresh from the system on a
call, its pages faulted in each time, 0.49 s for 25,000 clusters x 2,000 replicates in the
analysis against 0.16 s in 2 MB blocks (the same numbers: tests/test_metrics.py)."""


def _resampled_sums(ks: np.ndarray, ns: np.ndarray, resamples: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, the summed successes and trials of ``len(ks)`` clusters drawn with
    replacement by ``numpy.random.default_rng(seed).integers(0, c, size=(resamples, c))``.

    The draws are made in blocks of rows: int64 draws take one 64-bit word of the bit
    generator each, so consecutive blocks are the same numbers as one (resamples, c) call
    (tests/test_metrics.py checks it). Successes and trials are packed in one int64 (trials
    in the low 32 bits) so one gather and one sum give both; exact while c times the largest
    cluster's trials fits in 31 bits, else the two are summed apart."""
    c = len(ks)
    rng = np.random.default_rng(seed)
    rows = max(1, _DRAW_CELLS // max(c, 1))
    # A replicate's trials are at most c x the largest cluster's: packed when that fits.
    packed = (ks << 32) | ns if c * int(ns.max(initial=0)) < (1 << 31) else None
    rk = np.empty(resamples, dtype=np.int64)
    rn = np.empty(resamples, dtype=np.int64)
    for r0 in range(0, resamples, rows):
        r1 = min(resamples, r0 + rows)
        draw = rng.integers(0, c, size=(r1 - r0, c))
        if packed is not None:
            both = packed[draw].sum(axis=1)
            rk[r0:r1], rn[r0:r1] = both >> 32, both & 0xFFFFFFFF
        else:
            rk[r0:r1], rn[r0:r1] = ks[draw].sum(axis=1), ns[draw].sum(axis=1)
    return rk, rn


def clustered_rate(hits: list[int], clusters: Sequence[Hashable], unit: str, *,
                   resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> BootstrapRate:
    """:func:`bootstrap_rate` of per-attempt 0/1 ``hits`` grouped by ``clusters[i]`` (the
    excerpt, chapter or block attempt i belongs to); clusters are ordered by first appearance,
    so the same inputs give the same interval."""
    if len(hits) != len(clusters):
        raise ValueError(f"{len(hits)} hits for {len(clusters)} cluster labels")
    order: dict[Hashable, int] = {}
    for c in clusters:
        order.setdefault(c, len(order))
    ks = [0] * len(order)
    ns = [0] * len(order)
    for h, c in zip(hits, clusters, strict=True):
        ks[order[c]] += int(bool(h))
        ns[order[c]] += 1
    return bootstrap_rate(ks, ns, unit=unit, resamples=resamples, seed=seed)


# --- subject against control -------------------------------------------------------------------

FISHER_METHOD = "fisher-exact-one-sided"
HOLM_CORRECTION = "holm"


def fisher_one_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher's exact test that the first rate exceeds the second.

    The 2x2 table ``[[k1, n1 - k1], [k2, n2 - k2]]`` with its margins fixed; the p-value is
    the hypergeometric probability of ``k1`` or more successes in the first row, computed
    exactly with integer binomial coefficients (:func:`math.comb`), no approximation. Fisher's
    test is the exact conditional test for two independent binomial samples; it stays valid at
    the small counts (0 of 12) a control usually has, where a normal approximation does not.
    An empty row gives 1.0 (nothing to compare).
    """
    if min(n1, n2) < 0 or not 0 <= k1 <= n1 or not 0 <= k2 <= n2:
        raise ValueError(f"every count needs 0 <= k <= n: {k1} of {n1}, {k2} of {n2}")
    if n1 == 0 or n2 == 0:
        return 1.0
    total, hits = n1 + n2, k1 + k2
    denom = math.comb(total, n1)
    num = sum(math.comb(hits, x) * math.comb(total - hits, n1 - x)
              for x in range(k1, min(n1, hits) + 1))
    return min(1.0, num / denom)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest (i from 0) is multiplied by ``m - i``; the running
    maximum keeps the adjusted values in the same order as the raw ones; capped at 1. Rejecting
    where the adjusted value is below alpha controls the family-wise error rate at alpha over
    all m tests, under any dependence between them (Holm 1979).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
