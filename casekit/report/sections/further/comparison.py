"""Model comparison (the comparison table of partials/further.html.j2): overlap of what two
models reproduce of one work, and the ratio of their rates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from casekit.analysis.metrics import CoverageOverlap, RateRatio
from casekit.report import catalogue as C
from casekit.report.text import fmt_num

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComparisonRow:
    work_id: str
    work_title: str
    model_a: str
    model_b: str
    coverage_jaccard: str
    coverage_baseline: str
    coverage_detail: str
    bmc5_jaccard: str
    bmc5_baseline: str
    bmc5_detail: str
    extraction_ratio: str
    extraction_note: str
    regurgitation_ratio: str
    regurgitation_note: str


def fmt_ratio(x: float) -> str:
    """A ratio to three significant figures or more, never more decimals than that: 0.0909,
    0.500, 3.00, 12.5, 756, 12,083 (a ratio's interval spans orders of magnitude; 193185.82
    claimed a precision no count supports)."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.1f}" if x >= 10 else f"{x:.2f}"
    if x <= 0:
        return "0"
    if x < 1e-4:
        return f"{x:.2e}"
    return f"{x:.{2 - math.floor(math.log10(x))}f}"


def ratio_text(rr: RateRatio) -> tuple[str, str]:
    """A rate ratio and its note, or why there is none.

    With no success in one model the ratio has no finite estimate (k / 0) or is 0: the
    figure the 0.5 correction gives (1 of 7 against 0 of 7 makes 3.00) is the correction's,
    not the data's, so the cell says the ratio is not estimable and the note gives the
    corrected estimate and interval as what they are."""
    counts = f"{rr.k1:,} of {rr.n1:,} vs {rr.k2:,} of {rr.n2:,}"
    if rr.ratio is None:
        why = C.EMPTY_DENOMINATOR if rr.n1 == 0 or rr.n2 == 0 else C.NO_SUCCESS
        return C.UNDEFINED, f"{counts}; {why}"
    ci = (f"95% CI {fmt_ratio(rr.lo)}\u2013{fmt_ratio(rr.hi)}"
          if rr.lo is not None and rr.hi is not None else C.NO_INTERVAL)
    method = C.RATIO_METHODS.get(rr.method, rr.method)
    if rr.corrected:
        b_none = rr.k2 == 0
        return C.RATIO_NOT_ESTIMABLE, C.RATIO_CORRECTED.format(
            counts=counts, model="B" if b_none else "A",
            value=C.RATIO_UNBOUNDED if b_none else C.RATIO_ZERO,
            ratio=fmt_ratio(rr.ratio), ci=ci, method=method)
    return fmt_ratio(rr.ratio), f"{counts}; {ci}, {method}"


def overlap_text(o: CoverageOverlap) -> tuple[str, str, str]:
    """Jaccard overlap, its random baseline and the counts behind them."""
    jac = C.UNDEFINED if o.jaccard is None else fmt_num(o.jaccard)
    base = C.UNDEFINED if o.random_baseline is None else fmt_num(o.random_baseline)
    detail = C.OVERLAP_DETAIL.format(both=f"{o.both:,}", either=f"{o.either:,}",
                                     total=f"{o.total:,}", a=f"{o.a:,}", b=f"{o.b:,}")
    return jac, base, detail
