"""Attempts (partials/attempts.html.j2): every attempt counted by stratum, a stratified seeded
sample of them shown, and the complete per-attempt listing (attempts.parquet and attempts.csv,
attached) cited by hash.

The pages follow the case's shape, not the number of attempts: a stratum is one model x work x
strategy x outcome, and each shows at most ``per_stratum`` attempts. Which ones is decided by a
hash of the attempt id and the case's seed (never by the attempt's result, and the same on
every render: ``casekit verify`` re-renders the report and compares its bytes). The sampler
streams: it holds the counts and at most ``2 * per_stratum`` attempts per stratum, whatever
the number of attempts it is given.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from casekit.analysis.findings import AttemptAnalysis, Findings
from casekit.canonical import sha256_bytes
from casekit.case import CaseFile
from casekit.report import catalogue as C
from casekit.report.evidence import (
    ATTEMPTS_ATTACHMENT,
    ATTEMPTS_CSV_ATTACHMENT,
    EvidenceFiles,
)
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    counted,
    fmt_pct,
)
from casekit.report.views import OTHER_OUTCOMES, OUTCOME_ORDER, outcome_counts, outcome_label

log = logging.getLogger(__name__)

StratumKey = tuple[str, str, str, str, str]
"""(model id, work id, strategy key, intent, outcome). A planned strategy has one intent, so
the intent splits only imported attempts, whose importer declares each one's."""


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    seq: str
    model_id: str
    work_id: str
    role: str
    strategy_key: str
    intent: str
    label: str
    """The prompt's label in its strategy's plan (e.g. where its window starts), with the
    sample number when the prompt was sent more than once."""
    outcome: str
    longest_words: str
    top1: str
    exhibit: str
    exhibit_anchor: str
    reaches_threshold: bool


@dataclass(frozen=True)
class Stratum:
    """One model x work x strategy x outcome: how many attempts it has, and those shown."""

    model_id: str
    work_id: str
    role: str
    strategy_key: str
    intent: str
    outcome: str
    attempts: str
    """Attempts in the stratum (all of them), with the noun: "1 attempt", "5 attempts"."""
    shown: str
    rows: list[AttemptRow]
    """The sample, in ledger order."""


@dataclass(frozen=True)
class AttemptSample:
    """The attempts section: counts of every stratum, the sample, and where the rest are."""

    total: str
    """Attempts analyzed (every one is counted in a stratum)."""
    shown: str
    strata: list[Stratum]
    per_stratum: int
    seed: str
    """The case's seed, which (with each attempt id) chooses the sample."""
    counts: str
    """Attempts by outcome (views.outcome_counts), the recorded outcomes first (every one,
    zero or not)."""
    by_pair: dict[tuple[str, str], str]
    """The same, per model x work (the summary's "Attempts by outcome")."""
    other_outcomes: bool
    """Whether some attempts are not span-matched (their outcomes then say what they are)."""
    listing_rows: str
    """Rows of the complete listing (one per attempt), as findings.json cites them."""
    parquet_name: str
    csv_name: str
    parquet_sha256: str
    """SHA-256 of attempts.parquet as attached."""
    csv_sha256: str
    """SHA-256 of attempts.csv as attached."""
    rows_sha256: str
    """The content hash of the rows findings.json cites (independent of Parquet's layout)."""
    units_note: str = ""
    """Which works count characters, not words (CJK), for "Longest span"; "" if none."""


def sample_key(seed: int, attempt_id: str) -> str:
    """The attempt's place in the sampling order: SHA-256 of ``"<seed>:<attempt id>"`` (hex).
    A stratum shows its attempts with the smallest keys."""
    return hashlib.sha256(f"{seed}:{attempt_id}".encode()).hexdigest()


def stratum_of(x: AttemptAnalysis) -> StratumKey:
    return (x.model_id, x.work_id, x.strategy_key, x.intent, x.outcome)


T = TypeVar("T")


def stratified_sample(attempts: Iterable[AttemptAnalysis], per_stratum: int, seed: int,
                      ) -> tuple[dict[StratumKey, int], dict[StratumKey, list[AttemptAnalysis]]]:
    """Counts per stratum, and per stratum the ``per_stratum`` attempts with the smallest
    :func:`sample_key` (in ledger order). One pass; memory O(strata x per_stratum)."""
    return _sample(((stratum_of(x), x.attempt_id, x.seq, x) for x in attempts), per_stratum,
                   seed)


def _sample(items: Iterable[tuple[StratumKey, str, int, T]], per_stratum: int, seed: int,
            ) -> tuple[dict[StratumKey, int], dict[StratumKey, list[T]]]:
    """:func:`stratified_sample` of (stratum, attempt id, seq, what to keep) items."""
    counts: dict[StratumKey, int] = {}
    kept: dict[StratumKey, list[tuple[str, str, int, T]]] = {}
    for key, aid, seq, x in items:
        counts[key] = counts.get(key, 0) + 1
        if per_stratum <= 0:
            continue
        bucket = kept.setdefault(key, [])
        bucket.append((sample_key(seed, aid), aid, seq, x))
        if len(bucket) >= 2 * per_stratum:
            bucket.sort(key=lambda t: (t[0], t[1]))
            del bucket[per_stratum:]
    chosen: dict[StratumKey, list[T]] = {}
    for key, bucket in kept.items():
        bucket.sort(key=lambda t: (t[0], t[1]))
        chosen[key] = [t[3] for t in sorted(bucket[:per_stratum], key=lambda t: (t[2], t[1]))]
    return counts, chosen


def sample_table(table: AttemptTable, per_stratum: int, seed: int,
                 ) -> tuple[dict[StratumKey, int], dict[StratumKey, list[AttemptAnalysis]]]:
    """:func:`stratified_sample` of the table's rows, read from its columns: only the
    attempts shown are made into analyses."""
    cols = [table.label(n) for n in ("model_id", "work_id", "strategy_key", "intent",
                                     "outcome")]
    seqs = table.number("seq")

    # Each row's stratum as an index into the distinct ones.
    combos, which = np.unique(np.stack([c.codes for c in cols], axis=1), axis=0,
                              return_inverse=True)
    keys: list[StratumKey] = [tuple(c.values[int(k)] for c, k in  # type: ignore[misc]
                                    zip(cols, combo, strict=True)) for combo in combos]
    which = which.reshape(-1)

    def items() -> Iterator[tuple[StratumKey, str, int, int]]:
        step = 1 << 16
        for start in range(0, len(table), step):  # the ids a slice at a time
            ids = table.attempt_ids.slice(start, step).to_pylist()
            for row, aid in enumerate(ids, start=start):
                yield keys[which[row]], str(aid), int(seqs[row]), row

    counts, rows = _sample(items(), per_stratum, seed)
    made = {x.seq: x for x in table.analyses([r for rs in rows.values() for r in rs])}
    return counts, {k: [made[int(seqs[r])] for r in rs] for k, rs in rows.items()}


OrderKey = tuple[int, str, int, str, int, str, str, int, str]


def _order(case: CaseFile, model_ids: Sequence[str]) -> Callable[[StratumKey], OrderKey]:
    """Sort key of a stratum: the case's order of models, works and strategies, then the
    outcomes in their fixed order; anything the case does not name after, by name."""
    models = {m: i for i, m in enumerate(model_ids)}
    works = {w.id: i for i, w in enumerate(case.works)}
    strategies = {f"{s.name}#{i}": i for i, s in enumerate(case.strategies)}
    outcomes = {o: i for i, o in enumerate(OUTCOME_ORDER)}

    def key(k: StratumKey) -> OrderKey:
        m, w, s, i, o = k
        big = 1 << 30
        return (models.get(m, big), m, works.get(w, big), w, strategies.get(s, big), s, i,
                outcomes.get(o, big), o)
    return key


def attempt_row(f: Findings, x: AttemptAnalysis, anchor_of: dict[str, tuple[str, str]],
                ) -> AttemptRow:
    number, anchor = anchor_of.get(x.attempt_id, ("", ""))
    outcome = outcome_label(x)
    if x.refusal_source:
        outcome += f" ({x.refusal_source})"
    label = x.label or DASH
    if x.sample:
        label = C.SAMPLE_LABEL.format(label=label, sample=x.sample)
    return AttemptRow(
        attempt_id=x.attempt_id, seq=str(x.seq), model_id=x.model_id, work_id=x.work_id,
        role=x.role, strategy_key=x.strategy_key, intent=x.intent, label=label,
        outcome=outcome,
        longest_words=f"{x.longest_words:,}" if x.mode != "score" else DASH,
        top1=fmt_pct(x.teacher_forced.top1_share) if x.teacher_forced else DASH,
        exhibit=number, exhibit_anchor=anchor,
        reaches_threshold=f.reaches_threshold(x),
    )


def build_attempts(f: Findings, table: AttemptTable, case: CaseFile, model_ids: Sequence[str],
                   anchor_of: dict[str, tuple[str, str]], files: EvidenceFiles,
                   per_stratum: int) -> AttemptSample:
    """Every attempt counted by stratum, the seeded sample shown, the full listing cited."""
    counts, chosen = sample_table(table, per_stratum, case.seed)
    total = sum(counts.values())
    roles = {w.id: w.role for w in case.works}
    strata = []
    by_outcome: dict[str, int] = {}
    by_pair: dict[tuple[str, str], dict[str, int]] = {}
    for key in sorted(counts, key=_order(case, model_ids)):
        shown = chosen.get(key, [])
        rows = [attempt_row(f, x, anchor_of) for x in shown]
        model_id, work_id, strategy_key, intent, outcome = key
        # A stratum's attempts share strategy and outcome, so its sample (never empty) says
        # what the outcome means for all of them.
        label = outcome_label(shown[0]) if shown else outcome.replace("_", " ")
        strata.append(Stratum(
            model_id=model_id, work_id=work_id, role=roles.get(work_id, ""),
            strategy_key=strategy_key, intent=intent, outcome=label,
            attempts=counted(counts[key], "attempt"), shown=f"{len(rows):,}", rows=rows))
        by_outcome[label] = by_outcome.get(label, 0) + counts[key]
        pair = by_pair.setdefault((model_id, work_id), {})
        pair[label] = pair.get(label, 0) + counts[key]
    # AttemptTable checked that these rows are the ones findings.json cites.
    cited = f.attempt_rows
    return AttemptSample(
        total=f"{total:,}", shown=f"{sum(len(s.rows) for s in strata):,}", strata=strata,
        per_stratum=per_stratum, seed=str(case.seed),
        counts=outcome_counts(by_outcome),
        by_pair={k: outcome_counts(v) for k, v in by_pair.items()},
        other_outcomes=any(by_outcome.get(o) for o in OTHER_OUTCOMES),
        listing_rows=f"{cited.rows:,}",
        parquet_name=ATTEMPTS_ATTACHMENT, csv_name=ATTEMPTS_CSV_ATTACHMENT,
        parquet_sha256=sha256_bytes(files.attempts), csv_sha256=files.attempts_csv.sha256,
        rows_sha256=cited.sha256,
        units_note=", ".join(sorted(w for w, b in f.works.items() if b.unit == "characters")))
