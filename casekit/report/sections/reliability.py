"""Errors, retries, refusals and filters (partials/reliability.html.j2), counted from every try
in the ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.analysis.findings import Findings
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.ledger_facts import RELIABILITY_ERRORS_PER_MODEL
from casekit.report.text import agree, counted
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
    """Attempts that ended in an error after their last try (of their last record)."""
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
    resent: str = ""
    """How failures sent again by ``--retry-failed`` are counted ("" when there were none)."""

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




def build_reliability(f: Findings, inputs: Inputs, model_ids: list[str]) -> Reliability:
    """Every try of every attempt, per model: the record a court asks for when a result is
    challenged as the survivor of many failed attempts. The counts are of every attempt; the
    list of failed attempts shows each model's first RELIABILITY_ERRORS_PER_MODEL."""
    led = inputs.ledger
    rows: list[ReliabilityRow] = []
    errors: list[ReliabilityError] = []
    per_model: dict[str, int] = {}
    order = [m for m in model_ids if m in led.tries] + [m for m in led.tries
                                                         if m not in model_ids]
    for mid in order:
        t = led.tries[mid]
        per_model[mid] = t.failed
        errors += [ReliabilityError(attempt_id=e.attempt_id, model_id=mid, seq=str(e.seq),
                                    kind=e.kind, type=e.type, message=e.message,
                                    tries=f"{e.tries:,}") for e in t.errors]
        kinds, refused = t.kinds, t.refused
        ref_total = sum(refused.values())
        rows.append(ReliabilityRow(
            model_id=mid, attempts=f"{t.attempts:,}", ok=f"{t.ok:,}",
            refused=f"{ref_total:,}" + (" (" + ", ".join(
                f"{k} {v:,}" for k, v in sorted(refused.items())) + ")" if ref_total else ""),
            filtered=f"{t.filtered:,}", failed=f"{t.failed:,}",
            tries=f"{t.tries:,}" + (C.IMPORTED_NO_TRIES if t.imported else ""),
            retried=f"{t.retried:,}",
            failed_tries=(C.FAILED_TRIES.format(transient=f"{kinds['transient']:,}",
                                                rate_limit=f"{kinds['rate_limit']:,}",
                                                no_retry=f"{kinds['no_retry']:,}")
                          + (C.FAILED_TRIES_UNKNOWN.format(unknown=f"{kinds['unknown']:,}")
                             if kinds["unknown"] else "")),
            retry_after=f"{t.after:,}", most_tries=f"{t.most:,}", dropped=f"{t.dropped:,}"))
    shown = sorted(errors, key=lambda e: int(e.seq))
    listed = [KV(mid, f"{min(n, RELIABILITY_ERRORS_PER_MODEL):,} of {n:,}")
              for mid in model_ids + sorted(set(per_model) - set(model_ids))
              if (n := per_model.get(mid, 0))]
    return Reliability(rows=rows, errors=shown, errors_total=sum(per_model.values()),
                       errors_by_model=listed,
                       resent=C.RESENT.format(
                           n=counted(led.superseded_records, "failed attempt record"),
                           were=agree(led.superseded_records, "was", "were"))
                       if led.superseded_records else "",
                       error_types=[KV(k, f"{v:,}") for k, v in sorted(
                           led.error_types.items(), key=lambda kv: (-kv[1], kv[0]))])
