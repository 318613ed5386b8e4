"""Sensitivity (partials/sensitivity.html.j2): the findings at other reporting thresholds
(15, 40, 50 and 100 words), so that a reader sees how much the conclusion depends on the
case's choice: per model x work, the generation attempts whose longest credited span reaches
each length, over the same attempts as the test against the control (the bottom line).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.report import catalogue as C
from casekit.report.table import AttemptTable

log = logging.getLogger(__name__)

#: Reporting thresholds of the sensitivity table, in words: casekit's default (40), the
#: 50-token research convention in words (about 50), and a short and a long alternative.
SENSITIVITY_WORDS = (15, 40, 50, 100)


@dataclass(frozen=True)
class SensitivityRow:
    model_id: str
    work_id: str
    role: str
    attempts: str
    cells: list[str]
    """``k`` attempts reaching each threshold of SENSITIVITY_WORDS."""
    longest: str


@dataclass(frozen=True)
class Sensitivity:
    thresholds: list[str]
    case_threshold: str
    rows: list[SensitivityRow]
    note: str


def build_sensitivity(f: Findings, table: AttemptTable, model_ids: list[str]) -> Sensitivity:
    # The attempts of the test against the control (and of the control floor): every
    # generation attempt that did not fail, refusals included.
    gen = table.matched_outputs()
    longest = table.number("longest_words")
    rows = []
    order = {m: i for i, m in enumerate(model_ids)}
    for mw in sorted(f.findings, key=lambda m: (order.get(m.model_id, len(order)), m.model_id)):
        spans = longest[gen & table.of(mw.model_id, mw.work_id)]
        rows.append(SensitivityRow(
            model_id=mw.model_id, work_id=mw.work_id, role=mw.role,
            attempts=f"{len(spans):,}",
            cells=[f"{int((spans >= t).sum()):,}" for t in SENSITIVITY_WORDS],
            longest=f"{int(spans.max()) if len(spans) else 0:,}"))
    return Sensitivity(thresholds=[f"{t}" for t in SENSITIVITY_WORDS],
                       case_threshold=f"{f.thresholds.min_span_words}", rows=rows,
                       note=C.SENSITIVITY_NOTE)
