"""Model comparison (the comparison table of partials/further.html.j2): overlap of what two
models reproduce of one work, and the ratio of their rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.metrics import CoverageOverlap, RateRatio
from casekit.report.text import (
    fmt_num,
)

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
    counts = f"{rr.k1:,} of {rr.n1:,} vs {rr.k2:,} of {rr.n2:,}"
    if rr.ratio is None:
        why = ("an empty denominator" if rr.n1 == 0 or rr.n2 == 0
               else "no success in either model")
        return "undefined", f"{counts}; {why}"
    ci = (f"95% CI {fmt_num(rr.lo, 2)}\u2013{fmt_num(rr.hi, 2)}"
          if rr.lo is not None and rr.hi is not None else "no interval")
    method = {"katz-log": "Katz log"}.get(rr.method, rr.method)
    corr = "; 0.5 added to every cell (a zero count)" if rr.corrected else ""
    return fmt_num(rr.ratio, 2), f"{counts}; {ci}, {method}{corr}"


def overlap_text(o: CoverageOverlap) -> tuple[str, str, str]:
    jac = "undefined" if o.jaccard is None else fmt_num(o.jaccard)
    base = "undefined" if o.random_baseline is None else fmt_num(o.random_baseline)
    detail = (f"both {o.both:,} / either {o.either:,} of {o.total:,} positions "
              f"(A {o.a:,}, B {o.b:,})")
    return jac, base, detail
