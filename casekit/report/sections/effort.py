"""Effort (partials/effort.html.j2): per model x work x intent, how many attempts were planned,
recorded, had output, reached the reporting threshold, were refused, failed or filtered, and
how many it took until the first success, in plan order and in time order. Imported outputs
have their own rows. The same table is attached as effort.csv.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from casekit.analysis.findings import Findings
from casekit.case import CaseFile
from casekit.records import AttemptRecord, is_imported
from casekit.report import catalogue as C
from casekit.report.table import AttemptTable
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


def _first(ordered: Sequence[tuple[tuple[Any, int], bool]]) -> str:
    """1-based position of the first hit in the given order, or "none reached"."""
    for i, (_, hit) in enumerate(sorted(ordered, key=lambda t: t[0]), start=1):
        if hit:
            return f"{i:,}"
    return C.EFFORT_NONE


def _filtered(rec: AttemptRecord) -> bool:
    return rec.result is not None and rec.result.finish_reason == "content_filter"


def build_effort(f: Findings, table: AttemptTable, case: CaseFile, model_ids: list[str],
                 attempts: dict[int, AttemptRecord]) -> Effort:
    reached = set(table.ids(table.reaching(f)))
    groups: dict[tuple[str, str, str, str], list[AttemptRecord]] = {}
    for rec in attempts.values():
        a = rec.attempt
        src = "imported" if is_imported(a.strategy, a.strategy_key) else "casekit"
        groups.setdefault((a.model_id, a.work_id, a.intent, src), []).append(rec)
    complete = f.complete and f.recorded_attempts >= f.planned_attempts
    work_order = [w.id for w in case.works]
    works = work_order + sorted({k[1] for k in groups} - set(work_order))
    models = model_ids + sorted({k[0] for k in groups} - set(model_ids))
    rows = []
    for mid in models:
        for wid in works:
            for intent in INTENTS + tuple(sorted({k[2] for k in groups} - set(INTENTS))):
                for src in ("casekit", "imported"):
                    recs = groups.get((mid, wid, intent, src))
                    if not recs:
                        continue
                    hit = [r.attempt.id in reached for r in recs]
                    plan_order = [((r.attempt.ordinal, r.seq), h) for r, h in zip(recs, hit,
                                                                                  strict=True)]
                    time_order = [((r.started_at, r.seq), h) for r, h in zip(recs, hit,
                                                                             strict=True)]
                    with_output = sum(1 for r in recs if r.result is not None and (
                        r.result.text or r.result.token_scores))
                    rows.append(EffortRow(
                        model_id=mid, work_id=wid, intent=intent, source=src,
                        planned=(f"{len(recs):,}" if complete else DASH)
                        if src == "casekit" else C.EFFORT_NOT_PLANNED,
                        recorded=f"{len(recs):,}", with_output=f"{with_output:,}",
                        reached=f"{sum(hit):,}",
                        refusals=f"{sum(1 for r in recs if r.status == 'refusal'):,}",
                        errors=f"{sum(1 for r in recs if r.status == 'error'):,}",
                        filtered=f"{sum(1 for r in recs if _filtered(r)):,}",
                        first_plan=_first(plan_order) if src == "casekit" else DASH,
                        first_time=_first(time_order)))
    note = C.EFFORT_PLANNED_COMPLETE if complete else C.EFFORT_PLANNED_INCOMPLETE.format(
        planned=f"{f.planned_attempts:,}", recorded=f"{f.recorded_attempts:,}")
    return Effort(rows=rows, planned_note=note)
