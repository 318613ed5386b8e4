"""Effort (partials/effort.html.j2): per model x work x intent, how many attempts were planned,
recorded, had output, reached the reporting threshold, were refused, failed or filtered, and
how many it took until the first success, in plan order and in time order. Imported outputs
have their own rows. The same table is attached as effort.csv.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, fields

from casekit.analysis.findings import Findings
from casekit.case import CaseFile
from casekit.report import catalogue as C
from casekit.report.ledger_facts import LedgerFacts
from casekit.report.text import DASH

log = logging.getLogger(__name__)

INTENTS = ("benign", "adversarial", "reconstruction")


@dataclass(frozen=True)
class EffortRow:
    model_id: str
    work_id: str
    intent: str
    source: str
    """``casekit`` (planned and sent by casekit) or ``imported``."""
    planned: str
    recorded: str
    with_output: str
    reached: str
    refusals: str
    errors: str
    filtered: str
    first_plan: str
    """Attempts in plan order up to and including the first that reached the threshold."""
    first_time: str
    """The same in the order the attempts started (ledger times)."""


@dataclass(frozen=True)
class Effort:
    rows: list[EffortRow]
    planned_note: str

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        names = [f.name for f in fields(EffortRow)]
        w.writerow(names)
        for r in self.rows:
            w.writerow([getattr(r, n).replace(",", "") if n not in ("model_id", "work_id")
                        else getattr(r, n) for n in names])
        return out.getvalue().encode("utf-8")


def _first(position: int | None) -> str:
    """1-based position of the first hit in some order, or "none reached"."""
    return f"{position:,}" if position is not None else C.EFFORT_NONE


def build_effort(f: Findings, case: CaseFile, model_ids: list[str],
                 ledger: LedgerFacts) -> Effort:
    """The effort table from the ledger pass's per-group counts (casekit.report.ledger_facts:
    whether an attempt reached the threshold was read off the findings there)."""
    groups = ledger.effort
    complete = f.complete and f.recorded_attempts >= f.planned_attempts
    work_order = [w.id for w in case.works]
    works = work_order + sorted({k[1] for k in groups} - set(work_order))
    models = model_ids + sorted({k[0] for k in groups} - set(model_ids))
    rows = []
    for mid in models:
        for wid in works:
            for intent in INTENTS + tuple(sorted({k[2] for k in groups} - set(INTENTS))):
                for src in ("casekit", "imported"):
                    g = groups.get((mid, wid, intent, src))
                    if g is None or not g.recorded:
                        continue
                    rows.append(EffortRow(
                        model_id=mid, work_id=wid, intent=intent, source=src,
                        planned=(f"{g.recorded:,}" if complete else DASH)
                        if src == "casekit" else C.EFFORT_NOT_PLANNED,
                        recorded=f"{g.recorded:,}", with_output=f"{g.with_output:,}",
                        reached=f"{len(g.hits):,}",
                        refusals=f"{g.refusals:,}", errors=f"{g.errors:,}",
                        filtered=f"{g.filtered:,}",
                        first_plan=_first(g.first_in_plan()) if src == "casekit" else DASH,
                        first_time=_first(g.first_in_time())))
    if not f.planned_attempts and not f.recorded_attempts:
        note = C.EFFORT_NOTHING_PLANNED
    elif complete:
        note = (C.EFFORT_PLANNED_COMPLETE_IMPORTED if any(r.source == "imported" for r in rows)
                else C.EFFORT_PLANNED_COMPLETE)
    else:
        note = C.EFFORT_PLANNED_INCOMPLETE.format(planned=f"{f.planned_attempts:,}",
                                                  recorded=f"{f.recorded_attempts:,}")
    return Effort(rows=rows, planned_note=note)
