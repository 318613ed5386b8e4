"""Certification (partials/certification.html.j2): the files the report is made from and their
hashes, which the certification form and the chain of custody list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.canonical import sha256_bytes
from casekit.report import catalogue as C
from casekit.report.evidence import (
    ATTEMPTS_ATTACHMENT,
    ATTEMPTS_CSV_ATTACHMENT,
    CASE_ATTACHMENT,
    EFFORT_ATTACHMENT,
    FINDINGS_ATTACHMENT,
    LEDGER_ATTACHMENT,
    MANIFEST_ATTACHMENT,
    PDF_VARIANT,
    EvidenceFiles,
    ReportOptions,
    TemplateSet,
    work_attachment_name,
)
from casekit.report.inputs import Inputs
from casekit.report.text import DASH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileHash:
    label: str
    name: str
    sha256: str
    size: str
    where: str
    """Whether the file travels inside the PDF (and as what), or where it is."""


@dataclass(frozen=True)
class Evidence:
    """The files the report is made from, with their hashes: the certification page and the
    chain of custody show them; manifest.json (attached) holds them too."""

    files: list[FileHash]
    templates_sha256: str
    template_overrides: list[str]
    pdf_variant: str
    attach_works: bool
    attachment_names: list[str]
    examiner_key: str = ""
    """The fingerprint of the examiner key that signs the ledger's checkpoints, or why none."""
    anchored: str = ""
    """How far the signed checkpoints reach (casekit.anchor)."""


def build_evidence(files: EvidenceFiles, inputs: Inputs, templates: TemplateSet,
              options: ReportOptions) -> Evidence:
    """The files the report is made from, their hashes, and whether each travels in the PDF."""
    st = inputs.start
    rows = [
        FileHash("Ledger", LEDGER_ATTACHMENT, files.ledger.sha256,
                 f"{files.ledger.size:,} bytes", "attached (Source)"),
        FileHash("Findings", FINDINGS_ATTACHMENT, sha256_bytes(files.findings),
                 f"{len(files.findings):,} bytes", "attached (Data)"),
        FileHash("Case (canonical JSON)", CASE_ATTACHMENT, sha256_bytes(files.case),
                 f"{len(files.case):,} bytes", C.CASE_HASH_CITED
                 if sha256_bytes(files.case) == st.case_sha256 else
                 C.CASE_HASH_OTHER.format(case_sha256=st.case_sha256)),
    ]
    rows += [
        FileHash("Per-attempt table", ATTEMPTS_ATTACHMENT, sha256_bytes(files.attempts),
                 f"{len(files.attempts):,} bytes", "attached (Data)"),
        FileHash("Per-attempt table (CSV)", ATTEMPTS_CSV_ATTACHMENT,
                 files.attempts_csv.sha256, f"{files.attempts_csv.size:,} bytes",
                 "attached (Data)"),
    ]
    names = [MANIFEST_ATTACHMENT, LEDGER_ATTACHMENT, FINDINGS_ATTACHMENT, CASE_ATTACHMENT,
             ATTEMPTS_ATTACHMENT, ATTEMPTS_CSV_ATTACHMENT]
    if files.effort_csv is not None:
        rows.append(FileHash("Effort table (CSV)", EFFORT_ATTACHMENT,
                             sha256_bytes(files.effort_csv), f"{len(files.effort_csv):,} bytes",
                             "attached (Data)"))
        names.append(EFFORT_ATTACHMENT)
    for wm in st.works:
        data = files.works.get(wm.id, b"")
        if options.attach_works:
            name = work_attachment_name(wm.id, wm.path)
            names.append(name)
            where = C.WORK_ATTACHED.format(name=name)
        else:
            where = C.WORK_NOT_ATTACHED
        rows.append(FileHash(f"Work {wm.id} ({wm.role})", wm.path, wm.sha256,
                             f"{len(data):,} bytes", where))
    rows.append(FileHash("Report templates", f"{len(templates.files)} files",
                         templates.sha256, DASH,
                         C.TEMPLATES_SHIPPED if not templates.overridden
                         else C.TEMPLATES_OVERRIDDEN.format(
                             names=", ".join(templates.overridden))))
    key, anchored = anchor_rows(inputs)
    return Evidence(files=rows, templates_sha256=templates.sha256,
                    template_overrides=templates.overridden, pdf_variant=PDF_VARIANT,
                    attach_works=options.attach_works, attachment_names=names,
                    examiner_key=key, anchored=anchored)


def anchor_rows(inputs: Inputs) -> tuple[str, str]:
    """(the examiner key's fingerprint, how far its checkpoints reach), as the certification
    page states them (checked by `casekit verify`)."""
    key = inputs.start.examiner_key
    fp = key.fingerprint if key is not None else next(
        (str(r.data.get("fingerprint")) for r in inputs.ledger.notes
         if r.kind == "examiner_key"), None)
    if fp is None:
        return (C.ANCHOR_NO_KEY, C.ANCHOR_NONE)
    checkpoints = inputs.ledger.checkpoints
    last = checkpoints[-1] if checkpoints else None
    if last is None:
        return (fp, C.ANCHOR_NONE)
    n = inputs.ledger.records
    stamped = any(r.timestamp for r in checkpoints)
    return (fp, C.ANCHOR_TO.format(
        covers=f"{last.covers_seq:,}", records=f"{n:,}",
        closing=C.ANCHOR_CLOSING if last.final and last.seq == n - 1 else C.ANCHOR_OPEN,
        tsa=C.ANCHOR_TSA.format(tsa=last.tsa or "") if stamped else ""))
