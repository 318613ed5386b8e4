"""Chain of custody (partials/custody.html.j2): operator, machine and the ledger's events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.case import CaseFile
from casekit.records import (
    AttemptRecord,
    Note,
    RunEnd,
)
from casekit.report.inputs import Inputs
from casekit.report.text import (
    DASH,
)
from casekit.report.views import KV

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



def build_custody(inputs: Inputs, case: CaseFile) -> Custody:
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
            operator.append(KV(f"API key of {m.model_id}", f"fingerprint {fp} (never the key)"))
    events = [CustodyEvent(st.recorded_at, str(st.seq),
                           f"run {st.run_id} started"
                           + (f" {st.started_at}" if st.started_at else "")
                           + f": {st.planned_attempts:,} attempts planned, case {st.case_sha256}")]
    attempts = [r for r in inputs.records if isinstance(r, AttemptRecord)]
    if attempts:
        first, last = attempts[0], attempts[-1]
        events.append(CustodyEvent(first.recorded_at, str(first.seq), "first attempt recorded"))
        if last is not first:
            events.append(CustodyEvent(last.recorded_at, str(last.seq),
                                       f"last attempt recorded ({len(attempts):,} in all)"))
    for r in inputs.records:
        if isinstance(r, Note):
            events.append(CustodyEvent(r.recorded_at, str(r.seq), f"note ({r.kind}): "
                                       f"{r.message}"))
        elif isinstance(r, RunEnd):
            events.append(CustodyEvent(r.recorded_at, str(r.seq), "run ended: "
                                       f"{r.attempts_recorded:,} of {r.attempts_planned:,} "
                                       "attempts recorded" + ("" if r.complete else
                                                              " (incomplete)")))
    events.sort(key=lambda e: int(e.seq))
    return Custody(operator=operator, events=events)


# --------------------------------------------------------------------------- further measures
