"""Manifest (partials/manifest.html.j2): the run's identity, works, models, versions and notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from casekit.analysis.findings import Findings
from casekit.records import (
    RunEnd,
)
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.text import (
    DASH,
    fmt_value,
)
from casekit.report.views import KV, notes_shown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkRow:
    id: str
    title: str
    author: str
    role: str
    edition: str
    registration: str
    published: str
    path: str
    sha256: str
    chars: str
    words: str
    excluded_chars: str
    extractor: str = ""
    """For an EPUB, DOCX or PDF work: the extractor and version ("" for plain text)."""
    text_sha256: str = ""
    """For an EPUB, DOCX or PDF work: the SHA-256 of the extracted text."""
    unit: str = "words"
    """What ``words`` counts: words, or characters for a CJK work."""


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    provider: str
    model: str
    interface: str
    can_score: str
    identity: list[KV]


@dataclass(frozen=True)
class NoteRow:
    seq: str
    recorded_at: str
    kind: str
    message: str


@dataclass(frozen=True)
class Manifest:
    run_id: str
    case_path: str
    case_sha256: str
    plan_sha256: str
    planned_attempts: str
    recorded_attempts: str
    imported_attempts: str
    """Outputs captured outside casekit, counted apart from the planned attempts."""
    retried_attempts: str
    """Failed attempts sent again by ``casekit run --retry-failed`` (the failures stay in the
    ledger; the analysis uses the last try)."""
    ledger_head_hash: str
    ledger_records: str
    started_at: str
    ended_at: str
    works: list[WorkRow]
    models: list[ModelRow]
    versions: list[KV]
    git: list[KV]
    host: list[KV]
    argv: str
    notes: list[NoteRow]
    notes_more: str = ""
    """The notes left out of ``notes`` (beyond NOTES_SHOWN), counted by kind; "" if none."""


def _identity_kv(identity: dict[str, Any]) -> list[KV]:
    return [KV(k, fmt_value(v)) for k, v in sorted(identity.items())]


def build_manifest_view(f: Findings, inp: Inputs, end: RunEnd | None) -> Manifest:
    """The run's identity, works, models, versions, host and notes, as recorded."""
    st = inp.start
    works = []
    for wm in st.works:
        spec = next((w for w in inp.case.works if w.id == wm.id), None)
        works.append(WorkRow(
            id=wm.id, title=wm.title, author=wm.author, role=wm.role,
            edition=(spec.edition if spec and spec.edition else DASH),
            registration=(spec.registration if spec and spec.registration else DASH),
            published=(spec.published.isoformat() if spec and spec.published else DASH),
            path=wm.path, sha256=wm.sha256, chars=f"{wm.chars:,}", words=f"{wm.words:,}",
            excluded_chars=f"{wm.excluded_chars:,}", extractor=wm.extractor or "",
            text_sha256=wm.text_sha256 or "", unit=f.unit(wm.id),
        ))
    models = [ModelRow(model_id=m.model_id, provider=m.provider, model=m.model,
                       interface=m.interface, can_score="yes" if m.can_score else "no",
                       identity=_identity_kv(m.identity)) for m in st.models]
    shown, notes_more = notes_shown(inp.ledger.notes)
    notes = [NoteRow(str(n.seq), n.recorded_at, n.kind, n.message) for n in shown]
    return Manifest(
        run_id=st.run_id, case_path=st.case_path, case_sha256=st.case_sha256,
        plan_sha256=st.plan_sha256, planned_attempts=f"{st.planned_attempts:,}",
        recorded_attempts=f"{f.recorded_attempts:,}",
        imported_attempts=f"{f.imported_attempts:,}", ledger_head_hash=f.ledger_head_hash,
        retried_attempts=f"{_retried(inp):,}",
        ledger_records=f"{f.ledger_records:,}", started_at=st.began_at,
        ended_at=end.recorded_at if end else C.RUN_NOT_ENDED,
        works=works, models=models,
        versions=[KV(k, v if v is not None else C.NOT_INSTALLED)
                  for k, v in sorted(st.versions.items())],
        git=[KV(k, fmt_value(v)) for k, v in sorted(st.git.items())],
        host=[KV(k, v) for k, v in sorted(st.host.items())],
        argv=" ".join(st.argv), notes=notes, notes_more=notes_more,
    )


def _retried(inp: Inputs) -> int:
    """Records of attempts sent again after a transient failure (``--retry-failed``)."""
    return inp.ledger.retried
