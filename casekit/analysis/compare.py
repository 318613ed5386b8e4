"""Compare two runs of the same planned attempts (``casekit rerun``) attempt by attempt.

Courts ask whether a result reproduces on another day; nondeterminism at temperature 0 is real
(batching, hardware, silent model updates) and must be measured, not assumed away.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from casekit.analysis.analyze import analyze_run
from casekit.canonical import canonical_json
from casekit.ledger import LEDGER_NAME, read_records
from casekit.records import AttemptRecord

log = logging.getLogger(__name__)

COMPARISON_NAME = "comparison.json"


class AttemptAgreement(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempt_id: str
    model_id: str
    work_id: str
    strategy_key: str
    same_status: bool
    same_output: bool | None
    """Identical output text (None when either side has none, e.g. score attempts)."""
    same_spans: bool
    """The same credited spans (work word ranges) in both runs."""
    same_outcome: bool
    first_outcome: str
    second_outcome: str


class ModelAgreement(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_id: str
    attempts: int
    same_output: int
    same_spans: int
    same_outcome: int
    output_agreement: float | None
    span_agreement: float | None


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    first_run: str
    first_ledger_head: str
    second_run: str
    second_ledger_head: str
    attempts: list[AttemptAgreement]
    models: list[ModelAgreement]


def compare_runs(first: Path, second: Path) -> Comparison:
    """Per attempt: same status, same output, same spans; agreement per model."""
    fa, sa = analyze_run(first), analyze_run(second)
    rec1 = _records_by_id(first)
    rec2 = _records_by_id(second)
    an1 = {a.attempt_id: a for a in fa.attempts}
    an2 = {a.attempt_id: a for a in sa.attempts}
    rows: list[AttemptAgreement] = []
    for aid, r1 in rec1.items():
        r2 = rec2.get(aid)
        if r2 is None:
            continue
        t1 = r1.result.text if r1.result else None
        t2 = r2.result.text if r2.result else None
        a1, a2 = an1[aid], an2[aid]
        spans1 = sorted((s.work_word_start, s.work_word_end) for s in a1.spans)
        spans2 = sorted((s.work_word_start, s.work_word_end) for s in a2.spans)
        rows.append(AttemptAgreement(
            attempt_id=aid, model_id=r1.attempt.model_id, work_id=r1.attempt.work_id,
            strategy_key=r1.attempt.strategy_key, same_status=r1.status == r2.status,
            same_output=(t1 == t2) if (t1 is not None and t2 is not None) else None,
            same_spans=spans1 == spans2, same_outcome=a1.outcome == a2.outcome,
            first_outcome=a1.outcome, second_outcome=a2.outcome,
        ))
    models = []
    for mid in sorted({r.model_id for r in rows}):
        mine = [r for r in rows if r.model_id == mid]
        with_text = [r for r in mine if r.same_output is not None]
        models.append(ModelAgreement(
            model_id=mid, attempts=len(mine),
            same_output=sum(1 for r in with_text if r.same_output),
            same_spans=sum(1 for r in mine if r.same_spans),
            same_outcome=sum(1 for r in mine if r.same_outcome),
            output_agreement=round(sum(1 for r in with_text if r.same_output) / len(with_text), 6)
            if with_text else None,
            span_agreement=round(sum(1 for r in mine if r.same_spans) / len(mine), 6)
            if mine else None,
        ))
    return Comparison(first_run=fa.run_id, first_ledger_head=fa.ledger_head_hash,
                      second_run=sa.run_id, second_ledger_head=sa.ledger_head_hash,
                      attempts=rows, models=models)


def _records_by_id(run_dir: Path) -> dict[str, AttemptRecord]:
    out: dict[str, AttemptRecord] = {}
    for r in read_records(run_dir / LEDGER_NAME):
        if isinstance(r, AttemptRecord):
            out.setdefault(r.attempt.id, r)
    return out


def compare_and_write(first: Path, second: Path) -> Comparison:
    """Compare a run with its rerun and write ``comparison.json`` into the rerun's folder."""
    comparison = compare_runs(first, second)
    (second / COMPARISON_NAME).write_bytes(canonical_json(comparison.model_dump(mode="json")))
    return comparison


__all__ = ["COMPARISON_NAME", "Comparison", "compare_and_write", "compare_runs"]
