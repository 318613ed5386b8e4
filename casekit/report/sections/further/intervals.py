"""Which interval each rate uses (the intervals table of partials/further.html.j2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import (
    ModelWorkFinding,
)
from casekit.analysis.stats import Rate
from casekit.report.text import (
    boot_text,
    fmt_pct,
)
from casekit.report.views import rate_view

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
    rows: list[tuple[str, Rate | None, str]] = [
        ("Regurgitation (benign attempts)", mw.regurgitation, "regurgitation"),
        ("Extraction (adversarial attempts)", mw.extraction, "extraction"),
        ("50/50 discoverable, exact", mw.discoverable_exact, "discoverable_exact"),
        ("50/50 discoverable, approximate", mw.discoverable_approx, "discoverable_approx"),
        ("Teacher-forced windows, greedy p_z = 1",
         mw.probabilistic.greedy if mw.probabilistic else None, "teacher_forced_greedy"),
    ]
    out = []
    for label, r, key in rows:
        if r is None or r.n == 0:
            continue
        v = rate_view(r)
        b = mw.bootstrap.get(key)
        out.append(IntervalRow(label=label, k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(b) if b is not None else
                               "Wilson / Clopper-Pearson only"))
    for c in mw.census:
        v = rate_view(c.greedy)
        out.append(IntervalRow(label=f"Census ({c.strategy_key}), greedy p_z = 1",
                               k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(c.greedy_bootstrap)))
    if mw.nv_recall is not None and mw.nv_recall.sessions_rate is not None:
        sr = mw.nv_recall.sessions_rate
        out.append(IntervalRow(label="Iterative sessions with an nv-recall block",
                               k_of_n=f"{sr.k:,} of {sr.n:,} ({fmt_pct(sr.rate)})",
                               wilson="bootstrap only", bootstrap=boot_text(sr)))
    if mw.name_cloze is not None and mw.name_cloze.accuracy.n:
        v = rate_view(mw.name_cloze.accuracy)
        out.append(IntervalRow(label="Name-cloze accuracy", k_of_n=f"{v.k_of_n} ({v.pct})",
                               wilson=v.ci, bootstrap="Wilson / Clopper-Pearson only "
                               "(one passage per attempt)"))
    return out
