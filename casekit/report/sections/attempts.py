"""Every attempt (partials/attempts.html.j2): the table of all attempts in ledger order, the
denominators of every rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import KV, OUTCOME_ORDER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    seq: str
    model_id: str
    work_id: str
    role: str
    strategy_key: str
    intent: str
    outcome: str
    longest_words: str
    top1: str
    exhibit: str
    exhibit_anchor: str
    reaches_threshold: bool


def attempt_rows(f: Findings, anchor_of: dict[str, tuple[str, str]]) -> list[AttemptRow]:
    """Every attempt in ledger order, with its exhibit number where it is shown."""
    rows = []
    for x in sorted(f.attempts, key=lambda x: (x.seq, x.attempt_id)):
        number, anchor = anchor_of.get(x.attempt_id, ("", ""))
        outcome = x.outcome.replace("_", " ")
        if x.refusal_source:
            outcome += f" ({x.refusal_source})"
        rows.append(AttemptRow(
            attempt_id=x.attempt_id, seq=str(x.seq), model_id=x.model_id, work_id=x.work_id,
            role=x.role, strategy_key=x.strategy_key, intent=x.intent, outcome=outcome,
            longest_words=f"{x.longest_words:,}" if x.mode != "score" else DASH,
            top1=fmt_pct(x.teacher_forced.top1_share) if x.teacher_forced else DASH,
            exhibit=number, exhibit_anchor=anchor,
            reaches_threshold=f.reaches_threshold(x),
        ))
    return rows


def attempt_counts(f: Findings) -> list[KV]:
    """Attempts by outcome, the known outcomes first (every one, zero or not)."""
    counts = {o: 0 for o in OUTCOME_ORDER}
    for x in f.attempts:
        counts[x.outcome] = counts.get(x.outcome, 0) + 1
    return [KV(o.replace("_", " "), f"{n:,}") for o, n in counts.items()]
