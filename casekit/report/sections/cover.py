"""Cover (partials/cover.html.j2): the case, the run, completeness, Bates numbering and the
notice of an overridden control requirement.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.case import CaseFile
from casekit.errors import CasekitError
from casekit.records import RunEnd, RunStart
from casekit.report import catalogue as C

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cover:
    case_id: str
    title: str
    matter: str
    examiner: str
    organization: str
    date: str
    """The run's recorded start date (UTC), not the time of rendering."""
    started_at: str
    pdf_date: str
    """The run's start to the second (the PDF's creation date, in its info and XMP alike)."""
    ended_at: str
    casekit_version: str
    analysis_version: str
    ledger_head_hash: str
    ledger_records: str
    run_id: str
    completeness: str
    complete: bool


@dataclass(frozen=True)
class Bates:
    """Bates numbering of the pages: ``PREFIX-000001`` from the case file's ``case.bates``."""

    prefix: str
    start: int
    reset: int
    """Value the ``bates`` page counter is reset to on the first page (start - 1: the counter is
    incremented on every page, the first included)."""
    first: str
    """The first page's number as printed."""


_BATES_PREFIX_RE = re.compile(r"[A-Z0-9_-]{1,20}")


def build_bates(case: CaseFile) -> Bates:
    """Bates numbering from the case file, checked again: the prefix goes into CSS."""
    b = case.case.bates
    # The prefix goes into a CSS string: the case schema allows [A-Z0-9_-] only; check again.
    if not _BATES_PREFIX_RE.fullmatch(b.prefix) or b.start < 1:
        raise CasekitError(f"case.bates: prefix {b.prefix!r} / start {b.start}: use 1-20 of "
                           "A-Z 0-9 _ - and a start of 1 or more")
    return Bates(prefix=b.prefix, start=b.start, reset=b.start - 1,
                 first=f"{b.prefix}-{b.start:06d}")


CONTROL_OVERRIDE = C.CONTROL_OVERRIDE


def control_override_text(case: CaseFile) -> str:
    """The prominent notice of an overridden control requirement, or "" when there is none."""
    if case.allow_no_control and not any(w.role == "control" for w in case.works):
        return CONTROL_OVERRIDE
    return ""


def _to_second(iso: str) -> str:
    """An ISO-8601 UTC time without its fraction of a second (``2026-02-03T10:00:00Z``)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", iso)
    return f"{m.group(1)}{m.group(2)}" if m else iso


def build_cover(f: Findings, case: CaseFile, st: RunStart, end: RunEnd | None) -> Cover:
    """The cover: the case, the run and whether every planned attempt was recorded."""
    complete = f.complete and f.recorded_attempts >= f.planned_attempts
    completeness = (C.COMPLETE if complete else C.INCOMPLETE).format(
        recorded=f"{f.recorded_attempts:,}", planned=f"{f.planned_attempts:,}")
    if f.imported_attempts:
        completeness += C.PLUS_IMPORTED.format(imported=f"{f.imported_attempts:,}")
    return Cover(
        case_id=case.case.id, title=case.case.title, matter=case.case.matter,
        examiner=case.case.examiner, organization=case.case.organization,
        date=st.began_at[:10], started_at=st.began_at, pdf_date=_to_second(st.began_at),
        ended_at=end.recorded_at if end else C.NOT_FINISHED,
        casekit_version=st.versions.get("casekit") or f.casekit_version,
        analysis_version=f.casekit_version, ledger_head_hash=f.ledger_head_hash,
        ledger_records=f"{f.ledger_records:,}", run_id=f.run_id, completeness=completeness,
        complete=complete,
    )
