"""Errors, retries, refusals and filters (partials/reliability.html.j2), counted from every try
in the ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.analysis.findings import Findings
from casekit.records import (
    AttemptRecord,
    is_imported,
)
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.views import KV

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReliabilityRow:
    """One model's record of failures: every try of every attempt, from the ledger."""

    model_id: str
    attempts: str
    ok: str
    refused: str
    """Refusals: by the provider (stop reason / content filter) and by text."""
    filtered: str
    """Responses that ended with a content-filter stop reason."""
    failed: str
    """Attempts that ended in an error after their last try."""
    tries: str
    retried: str
    """Attempts that needed more than one try."""
    failed_tries: str
    """Failed tries by kind: transient, rate limit, not retried."""
    retry_after: str
    """Tries whose failure carried a Retry-After the runner honoured."""
    most_tries: str
    dropped: str
    """Requests sent again without a parameter the model rejected (allow_drop_unsupported)."""


@dataclass(frozen=True)
class ReliabilityError:
    attempt_id: str
    model_id: str
    seq: str
    kind: str
    type: str
    message: str
    tries: str


@dataclass(frozen=True)
class Reliability:
    rows: list[ReliabilityRow]
    errors: list[ReliabilityError]
    """Attempts that ended in an error, in ledger order: each model's first
    RELIABILITY_ERRORS_PER_MODEL."""
    errors_total: int
    error_types: list[KV]
    """Failed tries by exception type (all of them)."""
    errors_by_model: list[KV] = field(default_factory=list)
    """Per model with errors: ``shown of total`` (formatted)."""

    @property
    def per_model(self) -> str:
        return f"{RELIABILITY_ERRORS_PER_MODEL:,}"

    @property
    def errors_shown(self) -> str:
        return f"{len(self.errors):,}"

    @property
    def errors_count(self) -> str:
        """Attempts that ended in an error, all of them (formatted)."""
        return f"{self.errors_total:,}"

    @property
    def errors_more(self) -> str:
        """Attempts that ended in an error and are not listed (formatted)."""
        return f"{self.errors_total - len(self.errors):,}"


#: Attempts that ended in an error listed per model (its first, in ledger order); the rest are
#: counted per model and are in the complete listing and the ledger.
RELIABILITY_ERRORS_PER_MODEL = 10


def build_reliability(f: Findings, inputs: Inputs, model_ids: list[str]) -> Reliability:
    """Every try of every attempt, per model: the record a court asks for when a result is
    challenged as the survivor of many failed attempts. The counts are of every attempt; the
    list of failed attempts shows each model's first RELIABILITY_ERRORS_PER_MODEL."""
    by_model: dict[str, list[AttemptRecord]] = {m: [] for m in model_ids}
    for rec in inputs.attempts_by_seq.values():
        by_model.setdefault(rec.attempt.model_id, []).append(rec)
    source = inputs.table.label("refusal_source")
    refused_by = dict(zip(inputs.table.ids(source.notnull()),
                          (source.values[c] for c in source.codes[source.notnull()]),
                          strict=True))
    rows: list[ReliabilityRow] = []
    errors: list[ReliabilityError] = []
    types: dict[str, int] = {}
    for mid, recs in by_model.items():
        if not recs:
            continue
        kinds = {"transient": 0, "rate_limit": 0, "no_retry": 0, "unknown": 0}
        tries = retried = after = most = dropped = filtered = 0
        refused: dict[str, int] = {}
        ok = failed = 0
        for rec in sorted(recs, key=lambda r: r.seq):
            n = len(rec.tries)
            tries += n
            most = max(most, n)
            retried += n > 1
            for t in rec.tries:
                if t.error is not None:
                    kinds[t.error.kind] = kinds.get(t.error.kind, 0) + 1
                    types[t.error.type] = types.get(t.error.type, 0) + 1
                    after += t.retry_after is not None
            raw = rec.result.raw_request if rec.result else None
            if isinstance(raw, dict) and raw.get("dropped"):
                dropped += 1
            if rec.result is not None and rec.result.finish_reason == "content_filter":
                filtered += 1
            by = refused_by.get(rec.attempt.id)
            if by:
                refused[by] = refused.get(by, 0) + 1
            if rec.status == "error":
                failed += 1
                e = rec.error
                errors.append(ReliabilityError(
                    attempt_id=rec.attempt.id, model_id=mid, seq=str(rec.seq),
                    kind=e.kind.replace("_", " ") if e else "unknown",
                    type=e.type if e else "unknown",
                    message=(e.message[:300] + ("…" if len(e.message) > 300 else ""))
                    if e else "", tries=f"{n:,}"))
            elif rec.status == "ok":
                ok += 1
        ref_total = sum(refused.values())
        rows.append(ReliabilityRow(
            model_id=mid, attempts=f"{len(recs):,}", ok=f"{ok:,}",
            refused=f"{ref_total:,}" + (" (" + ", ".join(
                f"{k} {v:,}" for k, v in sorted(refused.items())) + ")" if ref_total else ""),
            filtered=f"{filtered:,}", failed=f"{failed:,}",
            tries=f"{tries:,}" + (C.IMPORTED_NO_TRIES if any(
                is_imported(r.attempt.strategy, r.attempt.strategy_key) for r in recs) else ""),
            retried=f"{retried:,}",
            failed_tries=(C.FAILED_TRIES.format(transient=f"{kinds['transient']:,}",
                                                rate_limit=f"{kinds['rate_limit']:,}",
                                                no_retry=f"{kinds['no_retry']:,}")
                          + (C.FAILED_TRIES_UNKNOWN.format(unknown=f"{kinds['unknown']:,}")
                             if kinds["unknown"] else "")),
            retry_after=f"{after:,}", most_tries=f"{most:,}", dropped=f"{dropped:,}"))
    errors.sort(key=lambda e: int(e.seq))
    per_model: dict[str, int] = {}
    shown: list[ReliabilityError] = []
    for err in errors:
        per_model[err.model_id] = per_model.get(err.model_id, 0) + 1
        if per_model[err.model_id] <= RELIABILITY_ERRORS_PER_MODEL:
            shown.append(err)
    listed = [KV(mid, f"{min(n, RELIABILITY_ERRORS_PER_MODEL):,} of {n:,}")
              for mid in model_ids + sorted(set(per_model) - set(model_ids))
              if (n := per_model.get(mid, 0))]
    return Reliability(rows=rows, errors=shown, errors_total=len(errors),
                       errors_by_model=listed,
                       error_types=[KV(k, f"{v:,}") for k, v in sorted(
                           types.items(), key=lambda kv: (-kv[1], kv[0]))])
