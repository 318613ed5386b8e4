"""Model comparison (the comparison table of partials/further.html.j2): overlap of what two
models reproduce of one work, and the ratio of their rates.
"""

from __future__ import annotations

import logging
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


def ratio_text(rr: RateRatio) -> tuple[str, str]:
    """A rate ratio and its note, or why it is undefined."""
    counts = f"{rr.k1:,} of {rr.n1:,} vs {rr.k2:,} of {rr.n2:,}"
    if rr.ratio is None:
        why = C.EMPTY_DENOMINATOR if rr.n1 == 0 or rr.n2 == 0 else C.NO_SUCCESS
        return C.UNDEFINED, f"{counts}; {why}"
    ci = (f"95% CI {fmt_num(rr.lo, 2)}\u2013{fmt_num(rr.hi, 2)}"
          if rr.lo is not None and rr.hi is not None else C.NO_INTERVAL)
    method = C.RATIO_METHODS.get(rr.method, rr.method)
    corr = C.ZERO_CORRECTED if rr.corrected else ""
    return fmt_num(rr.ratio, 2), f"{counts}; {ci}, {method}{corr}"


def overlap_text(o: CoverageOverlap) -> tuple[str, str, str]:
    """Jaccard overlap, its random baseline and the counts behind them."""
    jac = C.UNDEFINED if o.jaccard is None else fmt_num(o.jaccard)
    base = C.UNDEFINED if o.random_baseline is None else fmt_num(o.random_baseline)
    detail = C.OVERLAP_DETAIL.format(both=f"{o.both:,}", either=f"{o.either:,}",
                                     total=f"{o.total:,}", a=f"{o.a:,}", b=f"{o.b:,}")
    return jac, base, detail
