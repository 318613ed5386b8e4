"""View types more than one section shows: a labelled value and a rate with its interval."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.report import catalogue as C
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.stats import Rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KV:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class RateView:
    k_of_n: str
    pct: str
    ci: str

    @property
    def text(self) -> str:
        return f"{self.k_of_n} ({self.pct}; {self.ci})" if self.ci else self.k_of_n


def rate_view(r: Rate) -> RateView:
    """A rate as ``k of n``, percentage and interval (or why there is no estimate)."""
    if r.n == 0 or r.rate is None:
        return RateView("0 of 0", DASH, C.NO_ATTEMPTS_ESTIMATE)
    method = C.INTERVAL_METHODS.get(r.method, r.method)
    return RateView(f"{r.k:,} of {r.n:,}", fmt_pct(r.rate),
                    C.RATE_CI.format(lo=fmt_pct(r.lo), hi=fmt_pct(r.hi), method=method))


OUTCOME_ORDER = ("match", "no_match", "refusal", "error", "unscorable")
