"""Controls (partials/controls.html.j2): each model's control floor, the measured false-positive
rate that the summary shows beside every subject finding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.analysis.findings import (
    ControlFloor,
    Findings,
)
from casekit.case import CaseFile
from casekit.report import catalogue as C
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import RateView, rate_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FloorView:
    model_id: str
    available: bool
    attempts: RateView
    upper_95: str
    max_coverage: str
    max_bmc5: str
    mean_top1: str
    control_works: list[str]
    sentence: str
    by_intent: dict[str, RateView] = field(default_factory=dict)
    """Control attempts with a span, per intent (benign, adversarial)."""


def floor_view(cf: ControlFloor | None, model_id: str, control_works: list[str]) -> FloorView:
    """One model's control floor, or why there is none (never a silent zero)."""
    if cf is None or cf.attempts.n == 0:
        return FloorView(model_id=model_id, available=False, attempts=rate_view(
            cf.attempts) if cf else RateView("0 of 0", DASH, C.NO_ATTEMPTS_ESTIMATE),
            upper_95=DASH, max_coverage=DASH, max_bmc5=DASH,
            mean_top1=fmt_pct(cf.mean_top1_share) if cf else DASH,
            control_works=control_works,
            sentence=C.FLOOR_NONE.format(model_id=model_id))
    rv = rate_view(cf.attempts)
    return FloorView(
        model_id=model_id, available=True, attempts=rv, upper_95=fmt_pct(cf.upper_95),
        max_coverage=fmt_pct(cf.max_coverage), max_bmc5=fmt_pct(cf.max_bmc5),
        mean_top1=fmt_pct(cf.mean_top1_share), control_works=control_works,
        by_intent={k: rate_view(v) for k, v in sorted(cf.by_intent.items())},
        sentence=C.FLOOR.format(k_of_n=rv.k_of_n, upper_95=fmt_pct(cf.upper_95)),
    )


def build_floors(f: Findings, case: CaseFile, model_ids: list[str]) -> dict[str, FloorView]:
    """Each model's control floor (also shown beside every subject finding in the summary)."""
    control_ids = [w.id for w in case.works if w.role == "control"]
    return {mid: floor_view(next((c for c in f.controls if c.model_id == mid), None), mid,
                            control_ids) for mid in model_ids}
