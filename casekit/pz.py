"""Probabilistic extraction: p_z and (n, p)-discoverable extraction (measurement.md section 4).

Definitions implemented (each function's docstring names its own):

- **p_z** [Hay25 Def. 2; Coo25]: for a window z = prefix + suffix, the probability that the
  decoding scheme reproduces the suffix given the prefix,
  ``p_z = prod_t p~(z_t | z_<t)`` over the suffix tokens, where ``p~`` is the
  decoding-transformed next-token distribution (logits / T, top-k mask, log-softmax; a suffix
  token outside the top-k gives 0). Two presets:

  * ``greedy`` (k = 1): ``p~ = 1`` for the top token and 0 otherwise, so
    ``p_z = prod_t [rank_t == 0]``: 1 when greedy decoding reproduces the suffix, else 0;
  * ``top40`` (k = 40, T = 1): ``log p~ = logprob - logsumexp(top-40 log-probs)`` for a token
    of rank < 40, ``p~ = 0`` otherwise, so ``log p_z = sum_t (logprob_t - top40_logsumexp_t)``.

  Computed from teacher-forced :class:`~casekit.records.TokenScore` rows (exact with the local
  provider, which records ``rank`` and ``top40_logsumexp``). From chat APIs that return only
  the top-20 log-probs of each step, :func:`pz_upper_bound_from_top_logprobs` gives an **upper
  bound**, labelled so.
- **(n, p)-discoverable extraction** [Hay25]: z is (n, p)-extractable when
  ``1 - (1 - p_z)^n >= p``: at least one of n independent samples reproduces the suffix with
  probability >= p. Reported as a rate over windows for p in {0.1, 0.5, 0.9, 0.99} and n in
  {1, 10, 100, 1000, 10000}, next to the greedy rate.
- **Whole-work census** [Coo25]: the histogram of p_z over sliding windows (log10 bins) and the
  share of windows and of characters with p_z >= tau for tau in {0.001, 0.01, 0.1, 0.5, 0.75}.

All functions are pure; probabilities are handled in natural-log space (``-inf`` is p_z = 0)
so that a 50-token suffix of p ~ 1e-300 does not underflow before it is binned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from casekit.records import TokenScore
from casekit.stats import Rate, rate

Preset = Literal["greedy", "top40"]
PzState = Literal["positive", "zero", "not_available"]
PRESETS: dict[str, dict[str, float | int]] = {
    "greedy": {"top_k": 1, "temperature": 1.0},
    "top40": {"top_k": 40, "temperature": 1.0},
}
"""The decoding schemes p_z is computed for [Hay25, Coo25]: top-k sampling with temperature T."""

NP_PS: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
"""p of the (n, p)-discoverable rates [Hay25]."""
NP_NS: tuple[int, ...] = (1, 10, 100, 1000, 10000)
"""n grid of the (n, p)-discoverable rates."""
TAUS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5, 0.75)
"""p_z thresholds of the whole-work census [Coo25]: 0.1%, 1%, 10%, 50%, 75%."""
HIST_LOW_DECADE = -12
"""Lowest log10 bin edge of the p_z histogram; smaller non-zero values share one bin."""
_REL_TOL = 1e-12


class MissingScores(ValueError):
    """The token scores lack a field the preset needs (``rank`` / ``top40_logsumexp``)."""


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NPRate(_M):
    """(n, p)-discoverable extraction rate over windows [Hay25]."""

    n: int
    p: float
    rate: Rate
    """Windows with ``1 - (1 - p_z)^n >= p`` of all windows (Wilson / Clopper-Pearson
    interval, which treats windows as independent: overlapping windows are not; see
    :func:`casekit.stats.bootstrap_rate` for an interval over excerpts)."""


class HistogramBin(_M):
    """One bin of the p_z histogram: ``lo <= p_z < hi`` (the top bin includes 1)."""

    label: str
    lo: float
    hi: float
    count: int
    share: float


class ThresholdShare(_M):
    """Windows and characters at p_z >= tau [Coo25]."""

    tau: float
    windows: int
    window_share: float
    chars: int
    """Characters covered by the union of the qualifying windows' ranges."""
    char_share: float


class TeacherForced(_M):
    """One teacher-forced window as scored: the input of p_z (any strategy whose probes are
    ``score`` probes; the analyzer computes it, the strategies' measures aggregate it)."""

    tokens: int
    top1: int
    """Continuation tokens that were the model's top choice."""
    top1_share: float
    sum_logprob: float
    greedy_reproduced: bool
    """Every continuation token was the top choice: greedy decoding would reproduce the window
    (greedy p_z = 1) [Hay25]."""
    pz_top40: PzState = "not_available"
    """What top-40 p_z is, stated explicitly: ``positive`` (its log is ``log_pz_top40``),
    ``zero`` (a suffix token outside the top 40: log p_z = -inf, which JSON cannot hold) or
    ``not_available`` (the provider gave no ranks)."""
    log_pz_top40: float | None = None
    """Natural log of p_z under the top-40 preset (T = 1) [Hay25, Coo25]; set exactly when
    ``pz_top40`` is ``positive`` (null for ``zero`` and ``not_available``)."""
    pz_top40_available: bool = False

    @model_validator(mode="before")
    @classmethod
    def _state(cls, data: Any) -> Any:
        """Rows written before ``pz_top40`` existed: derive it from the two fields."""
        if isinstance(data, dict) and "pz_top40" not in data:
            data = {**data, "pz_top40": (
                "not_available" if not data.get("pz_top40_available") else
                "zero" if data.get("log_pz_top40") is None else "positive")}
        return data
    suffix_chars: tuple[int, int] | None = None
    """Work characters [start, end) of the scored continuation."""


class PzBound(_M):
    """p_z from an API's top-k log-probs: an upper bound unless ``exact``."""

    preset: str
    log_upper: float
    """Natural log of the bound (``-inf`` when the bound is 0)."""
    upper: float
    exact: bool
    """True when the bound is the exact p_z (greedy, where the top-k lists decide rank 0)."""
    label: str
    """``"exact"`` or ``"upper bound"``: print it beside the figure."""


# --- p_z --------------------------------------------------------------------------------------


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown p_z preset {preset!r}: use one of {', '.join(PRESETS)}")


def token_log_ptilde(score: TokenScore, preset: Preset) -> float:
    """``log p~(z_t | z_<t)`` of one teacher-forced token under a preset [Hay25 Def. 2].

    ``greedy`` (k = 1): 0 when the token is the model's top choice (``rank == 0``; ``is_top``
    when the rank is unknown), ``-inf`` otherwise. ``top40`` (k = 40, T = 1):
    ``logprob - top40_logsumexp`` when ``rank < 40``, ``-inf`` otherwise (the token is masked
    out by the top-k filter); needs ``rank`` and ``top40_logsumexp``.
    """
    _check_preset(preset)
    if preset == "greedy":
        top = score.is_top if score.rank is None else score.rank == 0
        return 0.0 if top else -math.inf
    if score.rank is None or score.top40_logsumexp is None:
        raise MissingScores(
            "top40 p_z needs each token's rank and top40_logsumexp (recorded by provider: local "
            "since this casekit version); these scores do not have them")
    if score.rank >= 40:
        return -math.inf
    return min(0.0, score.logprob - score.top40_logsumexp)


def log_p_z(scores: Sequence[TokenScore], preset: Preset) -> float:
    """``log p_z = sum_t log p~(z_t | z_<t)`` over a window's suffix tokens [Hay25 Def. 2; Coo25];
    ``-inf`` when some token has ``p~ = 0``. Raises ValueError for an empty suffix and
    :class:`MissingScores` when the preset needs fields the scores lack."""
    if not scores:
        raise ValueError("p_z of an empty suffix is undefined: no token was scored")
    total = 0.0
    for s in scores:
        lp = token_log_ptilde(s, preset)
        if lp == -math.inf:
            return -math.inf
        total += lp
    return total


def p_z(scores: Sequence[TokenScore], preset: Preset) -> float:
    """``p_z = prod_t p~(z_t | z_<t)`` [Hay25 Def. 2; Coo25]; see :func:`log_p_z` (a very small
    p_z underflows to 0.0 here, never in :func:`log_p_z`)."""
    return math.exp(log_p_z(scores, preset))


def can_compute(scores: Sequence[TokenScore], preset: Preset) -> bool:
    """True when :func:`log_p_z` can be computed for these scores under the preset."""
    _check_preset(preset)
    if not scores:
        return False
    if preset == "greedy":
        return True
    return all(s.rank is not None and s.top40_logsumexp is not None for s in scores)


def _top40_step(top_lps: np.ndarray, token_lp: float | None) -> float:
    """Log of the top-40 bound of one step from its listed log-probs (see
    :func:`pz_upper_bound_from_top_logprobs`): ``p_t / Z`` for a listed token (``token_lp``),
    ``p_min / (Z + p_min)`` for an unlisted one (None); never above 1."""
    log_z = float(np.logaddexp.reduce(top_lps))
    if token_lp is not None:
        return min(0.0, token_lp - log_z)
    p_min = float(top_lps.min())
    return min(0.0, p_min - float(np.logaddexp(log_z, p_min)))


def pz_upper_bound_from_top_logprobs(
    tokens: Sequence[str], top_logprobs: Sequence[Sequence[tuple[str, float]]],
    preset: Preset,
) -> PzBound:
    """An **upper bound** of p_z from an API's top-k log-probs (e.g. k = 20) [Hay25; Coo25].

    ``tokens[t]`` is the suffix token at step t; ``top_logprobs[t]`` the API's list of
    ``(token, logprob)`` for that step (full-distribution log-probs, as chat APIs return
    them), the window's text up to t being the context. Per step, with ``p_t`` the token's
    probability, ``p_min`` the smallest listed probability and ``Z`` the listed probabilities'
    sum:

    - ``greedy``: ``p~ = 1`` if the token is the listed maximum (ties: listed first), else 0.
      The lists decide rank 0, so the result is exact when every list is non-empty.
    - ``top40`` (T = 1): a listed token (rank < 20 <= 40) has ``p~ = p_t / Z40 <= p_t / Z``
      since the top-40 mass ``Z40 >= Z``; an unlisted token has ``p_t <= p_min`` and, if it
      is in the top 40 at all, ``p~ = p_t / Z40 <= p_t / (Z + p_t) <= p_min / (Z + p_min)``
      (the bound used; 0 would need to know it is outside the top 40). An upper bound always.

    ``log_upper`` is the sum of the per-step log bounds.
    """
    _check_preset(preset)
    if len(tokens) != len(top_logprobs):
        raise ValueError(f"{len(tokens)} tokens but {len(top_logprobs)} top-log-prob lists")
    if not tokens:
        raise ValueError("p_z of an empty suffix is undefined: no token was scored")
    total = 0.0
    exact = preset == "greedy"
    for tok, top in zip(tokens, top_logprobs, strict=True):
        if not top:
            raise ValueError(f"no top log-probs for the token {tok!r}: cannot bound p_z")
        lps = np.array([lp for _, lp in top], dtype=np.float64)
        if preset == "greedy":
            best = int(np.argmax(lps))
            if top[best][0] != tok:
                total = -math.inf
                break
            continue
        listed = [lp for t, lp in top if t == tok]
        total += _top40_step(lps, listed[0] if listed else None)
    return PzBound(preset=preset, log_upper=total, upper=math.exp(total), exact=exact,
                   label="exact" if exact else "upper bound")


Step = tuple[str, Sequence[tuple[str, float]]]
"""One generated token and the API's top-k ``(token, logprob)`` list at that step."""


class GenerationBound(_M):
    """p_z bounds of a window's suffix from one greedy generation's top-k log-probs."""

    greedy: PzBound
    top40: PzBound
    steps_used: int
    """Generated tokens that bound the suffix (those matching it, plus the first that did not)."""
    covered_chars: int
    """Characters of the suffix the generation reproduced before it diverged or stopped."""
    suffix_chars: int


def generation_steps(raw_response: object) -> list[Step] | None:
    """The (token, top-k list) steps of a recorded response that carries per-token log-probs:
    Chat Completions (``choices[0].logprobs.content[].top_logprobs``), legacy Completions
    (``choices[0].logprobs.tokens`` / ``top_logprobs``; the body under ``body`` as the API
    providers record it, or the response itself), or the local provider's
    ``casekit_logprobs`` (same shape); None when it carries none.
    The generated token itself is added to its list when the API left it out."""
    if not isinstance(raw_response, dict):
        return None
    lp: object = raw_response.get("casekit_logprobs")  # provider: local with params.logprobs
    if not isinstance(lp, dict):
        body = raw_response.get("body", raw_response)
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        lp = choices[0].get("logprobs")
    if not isinstance(lp, dict):
        return None
    steps: list[Step] = []
    content = lp.get("content")
    if isinstance(content, list):
        for entry in content:
            if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                return None
            top = [(str(t.get("token")), float(t["logprob"])) for t in
                   entry.get("top_logprobs") or [] if isinstance(t, dict)
                   and isinstance(t.get("logprob"), (int, float))]
            if isinstance(entry.get("logprob"), (int, float)) and not any(
                    t == entry["token"] for t, _ in top):
                top.append((entry["token"], float(entry["logprob"])))
            steps.append((entry["token"], top))
        return steps or None
    tokens, tops = lp.get("tokens"), lp.get("top_logprobs")
    values = lp.get("token_logprobs")
    if isinstance(tokens, list) and isinstance(tops, list) and len(tops) == len(tokens):
        for i, tok in enumerate(tokens):
            top_d = tops[i] if isinstance(tops[i], dict) else {}
            top = [(str(t), float(v)) for t, v in top_d.items() if isinstance(v, (int, float))]
            own = values[i] if isinstance(values, list) and i < len(values) else None
            if isinstance(own, (int, float)) and not any(t == tok for t, _ in top):
                top.append((str(tok), float(own)))
            steps.append((str(tok), top))
        return steps or None
    return None


def pz_bound_from_generation(suffix: str, steps: Sequence[Step]) -> GenerationBound | None:
    """Bounds of p_z for the window whose suffix text is ``suffix``, from a greedy
    generation after the window's prefix with the API's top-k log-probs [Hay25; Coo25].

    While the generated tokens spell the suffix, each step's context is the window's own text,
    so its top-k list bounds that step exactly as in :func:`pz_upper_bound_from_top_logprobs`.
    At the first generated token that leaves the suffix, the suffix's own next token is one of
    the listed tokens that are a prefix of the remaining suffix (bounded by the largest of
    them) or unlisted (bounded by the smallest listed probability); the steps after it were
    generated from another context and bound nothing (a factor of at most 1). So:

    - ``greedy``: exact 1 when the generated tokens spell the whole suffix and each was its
      list's maximum; exact 0 when the generation left the suffix with its list's maximum (the
      suffix's token was not the top choice); otherwise an upper bound of 1 (undetermined).
    - ``top40``: an upper bound always.

    Assumes the generated tokens are the model's tokenization of the text they spell (an API
    does not say how it would tokenize the suffix); None when the suffix is empty or no step
    carries a list.
    """
    if not suffix or not steps or any(not top for _, top in steps):
        return None
    pos, used, log40 = 0, 0, 0.0
    greedy_state = "undetermined"
    for tok, top in steps:
        rest = suffix[pos:]
        if not rest:
            break
        used += 1
        lps = np.array([lp for _, lp in top], dtype=np.float64)
        best_tok = top[int(np.argmax(lps))][0]
        if tok and rest.startswith(tok):
            listed = [lp for t, lp in top if t == tok]
            log40 += _top40_step(lps, listed[0] if listed else None)
            if best_tok != tok:
                greedy_state = "zero"  # a suffix token that was not the top choice
            pos += len(tok)
            if pos >= len(suffix) and greedy_state == "undetermined":
                greedy_state = "one"
            if greedy_state == "zero":
                break
            continue
        # The generation left the suffix: bound the suffix's own next token, then stop.
        cands = [lp for t, lp in top if t and rest.startswith(t)]
        log40 += _top40_step(lps, max(cands) if cands else None)
        if best_tok == tok:
            greedy_state = "zero"
        break
    if greedy_state == "one":
        greedy = PzBound(preset="greedy", log_upper=0.0, upper=1.0, exact=True, label="exact")
    elif greedy_state == "zero":
        greedy = PzBound(preset="greedy", log_upper=-math.inf, upper=0.0, exact=True,
                         label="exact")
    else:
        greedy = PzBound(preset="greedy", log_upper=0.0, upper=1.0, exact=False,
                         label="upper bound")
    top40 = PzBound(preset="top40", log_upper=log40, upper=math.exp(log40), exact=False,
                    label="upper bound")
    return GenerationBound(greedy=greedy, top40=top40, steps_used=used,
                           covered_chars=min(pos, len(suffix)), suffix_chars=len(suffix))


# --- (n, p)-discoverable extraction ----------------------------------------------------------


def extraction_probability(pz: float, n: int) -> float:
    """``1 - (1 - p_z)^n``: the probability that at least one of n samples reproduces the
    suffix [Hay25], computed as ``-expm1(n * log1p(-p_z))`` (exact for tiny p_z)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= pz <= 1.0:
        raise ValueError(f"p_z must be in [0, 1], got {pz}")
    if pz == 1.0:
        return 1.0
    return -math.expm1(n * math.log1p(-pz))


def np_discoverable(pz: float, n: int, p: float) -> bool:
    """(n, p)-discoverable extraction [Hay25]: ``1 - (1 - p_z)^n >= p`` (compared with a
    relative tolerance of 1e-12 for floating-point rounding)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    return extraction_probability(pz, n) >= p * (1.0 - _REL_TOL)


def min_samples(pz: float, p: float) -> int | None:
    """The smallest n with ``1 - (1 - p_z)^n >= p`` [Hay25]; None when no n suffices
    (p_z = 0, or p = 1 with p_z < 1)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if pz >= 1.0:
        return 1
    if pz <= 0.0 or p >= 1.0:
        return None
    n = max(1, math.ceil(math.log1p(-p) / math.log1p(-pz) * (1 - _REL_TOL)))
    while not np_discoverable(pz, n, p):  # guard the ceil against rounding
        n += 1
    return n


def np_rates(pzs: Sequence[float], ps: Sequence[float] = NP_PS,
             ns: Sequence[int] = NP_NS) -> list[NPRate]:
    """(n, p)-discoverable extraction rate over windows [Hay25]: for every (p, n) of the grid,
    the windows with ``1 - (1 - p_z)^n >= p`` of all windows (rows ordered by p, then n)."""
    vals = [float(x) for x in pzs]
    out = []
    for p in ps:
        for n in ns:
            k = sum(1 for x in vals if np_discoverable(x, n, p))
            out.append(NPRate(n=n, p=p, rate=rate(k, len(vals))))
    return out


def greedy_rate(log_pzs_greedy: Sequence[float]) -> Rate:
    """Windows greedy decoding reproduces (greedy p_z = 1, i.e. log p_z = 0) of all windows
    [Hay25; Car23's discoverable extraction from teacher-forced scores]."""
    vals = list(log_pzs_greedy)
    return rate(sum(1 for x in vals if x == 0.0), len(vals))


# --- whole-work census [Coo25] ---------------------------------------------------------------


def pz_histogram(log_pzs: Sequence[float],
                 low_decade: int = HIST_LOW_DECADE) -> list[HistogramBin]:
    """Histogram of p_z over windows in log10 bins [Coo25].

    Bins: ``p_z = 0`` (some token impossible under the preset); ``0 < p_z < 10^low_decade``;
    then one bin per decade ``10^d <= p_z < 10^(d+1)`` for d = low_decade .. -1, the last
    one ``[0.1, 1]`` closed. Input is natural-log p_z (``-inf`` for 0), so values far below
    the double range are still binned.
    """
    vals = np.asarray(list(log_pzs), dtype=np.float64)
    if np.any(vals > 1e-12):
        raise ValueError("log p_z must be <= 0")
    total = len(vals)
    zero = np.isneginf(vals)
    # Decade of each non-zero p_z; the 1e-9 absorbs rounding in ln -> log10 (ln(0.01) /
    # ln(10) is -1.9999999999999996), which would put p_z = 0.01 a bin too low.
    dec = np.floor(vals[~zero] / math.log(10) + 1e-9)
    bins: list[tuple[str, float, float, int]] = [
        ("0", 0.0, 0.0, int(zero.sum())),
        (f"< 1e{low_decade}", 0.0, 10.0 ** low_decade, int((dec < low_decade).sum())),
    ]
    for d in range(low_decade, 0):
        cnt = int((dec >= d).sum()) if d == -1 else int((dec == d).sum())
        bins.append((f"[1e{d}, 1e{d + 1})" if d < -1 else "[1e-1, 1]", 10.0 ** d,
                     10.0 ** (d + 1), cnt))
    return [HistogramBin(label=lab, lo=lo, hi=hi, count=c, share=c / total if total else 0.0)
            for lab, lo, hi, c in bins]


def pz_threshold_shares(log_pzs: Sequence[float], ranges: Sequence[tuple[int, int]],
                        total_chars: int, taus: Sequence[float] = TAUS,
                        ) -> list[ThresholdShare]:
    """Share of windows and of characters with p_z >= tau [Coo25].

    ``ranges[i]``: the raw character range ``[start, end)`` window i is credited with (the
    suffix: text the prompt supplied is never credited, measurement.md section 3);
    ``total_chars``: the work's counted characters. Characters are the union of the
    qualifying windows' ranges (overlapping windows count a character once).
    """
    vals = np.asarray(list(log_pzs), dtype=np.float64)
    if len(ranges) != len(vals):
        raise ValueError(f"{len(vals)} p_z values but {len(ranges)} character ranges")
    out = []
    for tau in taus:
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        hit = vals >= math.log(tau) - _REL_TOL
        chars = union_length([r for r, h in zip(ranges, hit.tolist(), strict=True) if h])
        n = len(vals)
        out.append(ThresholdShare(
            tau=tau, windows=int(hit.sum()), window_share=float(hit.sum()) / n if n else 0.0,
            chars=chars, char_share=chars / total_chars if total_chars else 0.0))
    return out


def union_length(ranges: Sequence[tuple[int, int]]) -> int:
    """Total length of the union of half-open ranges ``[start, end)``."""
    total = 0
    end = None
    for a, b in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total
