"""Which interval each rate uses (the intervals table of partials/further.html.j2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import ModelWorkFinding
from casekit.report import catalogue as C
from casekit.report.text import (
    boot_text,
    fmt_pct,
)
from casekit.report.views import rate_view
from casekit.stats import Rate
from casekit.strategies.census import CensusFields, CensusMeasure
from casekit.strategies.iterative import NvRecallMeasure, SessionsRecallFields
from casekit.strategies.name_cloze import ClozeFinding, NameClozeMeasure
from casekit.strategies.prefix import DiscoverableRates
from casekit.strategies.teacher_forced import ProbabilisticFields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntervalRow:
    """One rate of a model x work and the intervals it carries."""

    label: str
    k_of_n: str
    wilson: str
    """The Wilson / Clopper-Pearson interval over attempts (as printed everywhere else)."""
    bootstrap: str
    """The cluster-bootstrap interval and its unit, or why there is none."""


def build_intervals(mw: ModelWorkFinding) -> list[IntervalRow]:
    """Every rate of a model x work with the interval it uses (measurement.md section 6)."""
    disc = mw.fields(DiscoverableRates)
    prob = mw.fields(ProbabilisticFields).probabilistic
    nv = mw.fields(SessionsRecallFields).nv_recall
    cloze = mw.fields(ClozeFinding).name_cloze
    rates: dict[str, Rate | None] = {
        "regurgitation": mw.regurgitation,
        "extraction": mw.extraction,
        "discoverable_exact": disc.discoverable_exact,
        "discoverable_approx": disc.discoverable_approx,
        "teacher_forced_greedy": prob.greedy if prob else None,
    }
    out = []
    for key, label in C.INTERVAL_LABELS.items():
        r = rates[key]
        if r is None or r.n == 0:
            continue
        v = rate_view(r)
        b = mw.bootstrap.get(key)
        out.append(IntervalRow(label=label, k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(b) if b is not None else
                               C.WILSON_ONLY))
    for c in mw.fields(CensusFields).census:
        v = rate_view(c.greedy)
        out.append(IntervalRow(label=CensusMeasure.words["interval"].format(key=c.strategy_key),
                               k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(c.greedy_bootstrap)))
    if nv is not None and nv.sessions_rate is not None:
        sr = nv.sessions_rate
        out.append(IntervalRow(label=NvRecallMeasure.words["interval"],
                               k_of_n=f"{sr.k:,} of {sr.n:,} ({fmt_pct(sr.rate)})",
                               wilson=C.BOOTSTRAP_ONLY, bootstrap=boot_text(sr)))
    if cloze is not None and cloze.accuracy.n:
        v = rate_view(cloze.accuracy)
        out.append(IntervalRow(label=NameClozeMeasure.words["interval"],
                               k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=NameClozeMeasure.words["interval_note"]))
    return out
