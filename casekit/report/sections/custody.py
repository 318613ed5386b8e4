"""Chain of custody (partials/custody.html.j2): operator, machine and the ledger's events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.case import CaseFile
from casekit.records import (
    RunEnd,
)
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.text import DASH
from casekit.report.views import KV, notes_shown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustodyEvent:
    when: str
    seq: str
    event: str


@dataclass(frozen=True)
class Custody:
    operator: list[KV]
    events: list[CustodyEvent]
    notes_more: str = ""
    """The notes left out of ``events`` (beyond NOTES_SHOWN), counted by kind; "" if none."""


def build_custody(inputs: Inputs, case: CaseFile) -> Custody:
    """Operator, machine and the ledger's events, in ledger order."""
    st = inputs.start
    operator = [KV("Examiner", case.case.examiner), KV("Organization", case.case.organization)]
    operator += [KV(f"Host: {k}", v) for k, v in sorted(st.host.items())]
    operator.append(KV("Command", " ".join(st.argv) or DASH))
    rev = st.git.get("revision") if isinstance(st.git, dict) else None
    operator.append(KV("casekit", f"{st.versions.get('casekit') or DASH}"
                                  + (f", git revision {rev}" if rev else "")))
    for m in st.models:
        fp = m.identity.get("key_fingerprint")
        if fp:
            operator.append(KV(f"API key of {m.model_id}",
                               C.KEY_FINGERPRINT.format(fingerprint=fp)))
    events = [CustodyEvent(st.recorded_at, str(st.seq),
                           C.EVENT_RUN_STARTED.format(
                               run_id=st.run_id, at=f" {st.started_at}" if st.started_at else "",
                               planned=f"{st.planned_attempts:,}",
                               case_sha256=st.case_sha256))]
    led = inputs.ledger
    if led.first_attempt is not None and led.last_attempt is not None:
        (first_at, first_seq), (last_at, last_seq) = led.first_attempt, led.last_attempt
        # Every attempt imported (an evidence-only case): they are not attempts casekit made.
        only_imported = led.imported_records == led.attempts
        events.append(CustodyEvent(first_at, str(first_seq), C.EVENT_FIRST_IMPORTED
                                   if only_imported else C.EVENT_FIRST_ATTEMPT))
        if led.attempts > 1:
            # Attempts, as the findings count them: a failure sent again is not one of its own.
            attempts = led.attempts - led.superseded_records
            events.append(CustodyEvent(last_at, str(last_seq), (
                C.EVENT_LAST_IMPORTED if only_imported else C.EVENT_LAST_ATTEMPT).format(
                    n=f"{attempts:,}")))
    notes, notes_more = notes_shown(led.notes)
    for n in notes:
        events.append(CustodyEvent(n.recorded_at, str(n.seq), C.EVENT_NOTE.format(
            kind=n.kind, message=n.message)))
    for r in led.run_records:
        if isinstance(r, RunEnd):
            events.append(CustodyEvent(r.recorded_at, str(r.seq), C.EVENT_RUN_ENDED.format(
                recorded=f"{r.attempts_recorded:,}", planned=f"{r.attempts_planned:,}",
                incomplete="" if r.complete else " (incomplete)")))
    events.sort(key=lambda e: int(e.seq))
    return Custody(operator=operator, events=events, notes_more=notes_more)


# --------------------------------------------------------------------------- further measures
