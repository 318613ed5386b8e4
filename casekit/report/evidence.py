"""The data inside the report: the manifest and the PDF/A-3b attachments.

A report PDF carries its own evidence (PDF/A-3b, ISO 19005-3 "associated files"):

- ``ledger.jsonl`` (AFRelationship ``Source``): the run's ledger, byte for byte;
- ``findings.json`` (``Data``): the analysis, canonical JSON (RFC 8785), as ``findings_bytes``;
- ``attempts.parquet`` and ``attempts.csv`` (``Data``): every analyzed attempt, one row each;
  findings.json cites the rows by content hash;
- ``case.json`` (``Source``): the validated case as the run recorded it in its run_start record,
  canonical JSON; its SHA-256 is the case hash the ledger cites;
- ``manifest.json`` (``Data``): the hashes of all of the above, of every work, of the template
  set and of the report's HTML; the models' identities; the casekit version;
- ``work-<id>.<ext>`` (``Source``): the works' texts, only when the examiner asks for them
  (``casekit report --attach-works``): they are usually the copyrighted texts themselves, so by
  default only their hashes travel (in the manifest).

Everything here is a function of the ledger, the findings, the works and the templates: no
clock, no absolute path of the machine that renders. The PDF's dates are the run's start and its
identifier derives from the ledger head hash, so the same inputs give the same PDF bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casekit
from casekit.canonical import canonical_json, sha256_bytes
from casekit.report.ledger_facts import LedgerFile

MANIFEST_VERSION = 1
PDF_VARIANT = "pdf/a-3b"

LEDGER_ATTACHMENT = "ledger.jsonl"
FINDINGS_ATTACHMENT = "findings.json"
CASE_ATTACHMENT = "case.json"
MANIFEST_ATTACHMENT = "manifest.json"
ATTEMPTS_ATTACHMENT = "attempts.parquet"
"""Every analyzed attempt, one row each (casekit analyze's per-attempt table)."""
ATTEMPTS_CSV_ATTACHMENT = "attempts.csv"
"""The same rows as CSV, for spreadsheets."""
EFFORT_ATTACHMENT = "effort.csv"
"""The effort table of the report (attempts per model x work x intent) as CSV."""
COMPARISON_ATTACHMENT = "comparison.json"
"""``casekit rerun``'s comparison of this run with the run it repeats, when there is one."""
#: The attachments every casekit report holds (works are optional).
#: The attachments casekit streams into the PDF from a file (casekit.report.embed) after
#: WeasyPrint has rendered it: those that grow with the attempts.
STREAMED_ATTACHMENTS = frozenset({LEDGER_ATTACHMENT, ATTEMPTS_CSV_ATTACHMENT})
REQUIRED_ATTACHMENTS = (MANIFEST_ATTACHMENT, LEDGER_ATTACHMENT, FINDINGS_ATTACHMENT,
                        CASE_ATTACHMENT, ATTEMPTS_ATTACHMENT, ATTEMPTS_CSV_ATTACHMENT)


def work_attachment_name(work_id: str, path: str) -> str:
    """``work-<id><suffix>``: a flat name (no folders: extraction tools write names as paths)."""
    suffix = Path(path).suffix.lower()
    return f"work-{work_id}{suffix if suffix in ('.txt', '.md') else '.txt'}"


@dataclass(frozen=True)
class Attached:
    """One file embedded in the PDF."""

    name: str
    data: bytes | LedgerFile
    """The bytes, or a file embedded by streaming it (casekit.report.embed)."""
    relationship: str
    """PDF 2.0 / PDF/A-3 AFRelationship: ``Source`` (what the report was made from) or
    ``Data`` (data derived from it)."""
    description: str

    @property
    def sha256(self) -> str:
        return self.data.sha256 if isinstance(self.data, LedgerFile) else sha256_bytes(self.data)


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateSet:
    """The templates a report is rendered with: the user's overrides over the defaults."""

    sha256: str
    """SHA-256 of the canonical JSON of ``files``."""
    files: dict[str, str]
    """Relative path -> SHA-256 of the file actually used."""
    overridden: list[str] = field(default_factory=list)
    """Relative paths taken from the user's folder rather than the defaults."""


def template_set(dirs: Sequence[Path]) -> TemplateSet:
    """Hash of the effective template set; ``dirs`` in lookup order (user's folder first)."""
    chosen: dict[str, tuple[Path, int]] = {}
    for i, root in enumerate(dirs):
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if (not path.is_file() or "__pycache__" in rel.parts
                    or any(part.startswith(".") for part in rel.parts)):
                continue
            chosen.setdefault(rel.as_posix(), (path, i))
    files = {rel: sha256_bytes(p.read_bytes()) for rel, (p, _) in sorted(chosen.items())}
    overridden = sorted(rel for rel, (_, i) in chosen.items() if i < len(dirs) - 1)
    return TemplateSet(sha256=sha256_bytes(canonical_json(files)), files=files,
                       overridden=overridden)


# --------------------------------------------------------------------------- the manifest


#: Attempts shown per stratum (model x work x strategy x outcome) in the report's sample of
#: attempts; every attempt is in the attached attempts.parquet and attempts.csv.
ATTEMPTS_PER_STRATUM = 5


@dataclass(frozen=True)
class ReportOptions:
    """The choices that shape a report besides its inputs (recorded in the manifest, so that
    ``casekit verify`` re-renders the same report)."""

    exhibits_per_finding: int
    attach_works: bool = False
    attempts_per_stratum: int = ATTEMPTS_PER_STRATUM
    """Attempts the sample of attempts shows per stratum (the rest are counted, and listed in
    the attachment)."""
    timestamp_tsa: str | None = None
    """The TSA ``casekit report --tsa`` asks for a token over manifest.json once the PDF is
    written (the Disclosures page says it was asked for; verify says whether it holds)."""
    sign: bool = False
    """``casekit report --sign``: a PAdES signature is applied to a copy once the PDF is
    written."""


@dataclass
class EvidenceFiles:
    """The bytes a report is made from, and those it embeds."""

    ledger: LedgerFile
    """The run's ledger: never held in memory, streamed into the PDF."""
    findings: bytes
    case: bytes
    works: dict[str, bytes]
    """Work id -> file bytes (verified against the run's hashes)."""
    attempts: bytes
    """attempts.parquet: the per-attempt rows findings.json cites by content hash."""
    attempts_csv: LedgerFile
    """attempts.csv: the same rows for spreadsheets, written to a file and streamed into the
    PDF (some 280 MB at 500,000 attempts: never held in memory)."""
    comparison: bytes | None = None
    """comparison.json of a re-run (``casekit rerun``), embedded when the run has one."""
    effort_csv: bytes | None = None
    """effort.csv: the report's effort table (set when the report model is built)."""


def _file(name: str | None, data: bytes | LedgerFile) -> dict[str, Any]:
    if isinstance(data, LedgerFile):
        return {"attachment": name, "sha256": data.sha256, "size": data.size}
    return {"attachment": name, "sha256": sha256_bytes(data), "size": len(data)}


def build_manifest(*, start: Any, findings: Any, files: EvidenceFiles, templates: TemplateSet,
                   html_sha256: str, options: ReportOptions, bates: dict[str, Any],
                   ) -> dict[str, Any]:
    """The manifest: every hash a reader needs to check the report and its inputs.

    ``start`` is the run's RunStart record, ``findings`` the Findings the report shows.
    """
    import weasyprint

    case = start.case.get("case", {}) if isinstance(start.case, dict) else {}
    works = []
    for wm in start.works:
        data = files.works.get(wm.id, b"")
        works.append({
            "id": wm.id, "title": wm.title, "author": wm.author, "role": wm.role,
            "path": wm.path, "sha256": wm.sha256, "size": len(data), "chars": wm.chars,
            "words": wm.words,
            "attachment": work_attachment_name(wm.id, wm.path) if options.attach_works else None,
        })
    return {
        "manifest_version": MANIFEST_VERSION,
        "casekit_version": casekit.__version__,
        "weasyprint_version": weasyprint.__version__,
        "case": {"id": case.get("id"), "title": case.get("title"), "matter": case.get("matter"),
                 "sha256": start.case_sha256, "path": start.case_path,
                 **_file(CASE_ATTACHMENT, files.case)},
        "run": {"run_id": start.run_id, "started_at": start.recorded_at,
                "plan_sha256": start.plan_sha256, "planned_attempts": start.planned_attempts,
                "recorded_attempts": findings.recorded_attempts,
                "imported_attempts": findings.imported_attempts, "complete": findings.complete},
        "ledger": {**_file(LEDGER_ATTACHMENT, files.ledger),
                   "records": findings.ledger_records, "head_hash": findings.ledger_head_hash},
        "findings": {**_file(FINDINGS_ATTACHMENT, files.findings),
                     "casekit_version": findings.casekit_version},
        "attempts": {**_file(ATTEMPTS_ATTACHMENT, files.attempts),
                     "rows": findings.attempt_rows.rows,
                     "rows_sha256": findings.attempt_rows.sha256,
                     "csv": _file(ATTEMPTS_CSV_ATTACHMENT, files.attempts_csv)},
        "works": works,
        **({"effort": _file(EFFORT_ATTACHMENT, files.effort_csv)}
           if files.effort_csv is not None else {}),
        **({"rerun": {**_file(COMPARISON_ATTACHMENT, files.comparison),
                      "rerun_of": start.rerun_of}} if files.comparison is not None else {}),
        "models": [m.model_dump(mode="json") for m in start.models],
        "templates": {"sha256": templates.sha256, "files": templates.files,
                      "overridden": templates.overridden},
        "report": {"html_sha256": html_sha256, "pdf_variant": PDF_VARIANT,
                   "exhibits_per_finding": options.exhibits_per_finding,
                   "attempts_per_stratum": options.attempts_per_stratum,
                   "attach_works": options.attach_works, "bates": bates,
                   # Recorded only when asked for, so earlier manifests re-render unchanged.
                   **({"timestamp_tsa": options.timestamp_tsa} if options.timestamp_tsa else {}),
                   **({"sign": True} if options.sign else {})},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return canonical_json(manifest) + b"\n"


def attachments(manifest: dict[str, Any], files: EvidenceFiles) -> list[Attached]:
    """The files to embed, in a fixed order."""
    out = [
        Attached(MANIFEST_ATTACHMENT, manifest_bytes(manifest), "Data",
                 "casekit manifest: SHA-256 of every input and of this report's HTML"),
        Attached(LEDGER_ATTACHMENT, files.ledger, "Source",
                 "the run's append-only, hash-chained ledger (JSON Lines, RFC 8785)"),
        Attached(FINDINGS_ATTACHMENT, files.findings, "Data",
                 "the analysis of the ledger (casekit analyze), canonical JSON"),
        Attached(CASE_ATTACHMENT, files.case, "Source",
                 "the validated case file as the run recorded it, canonical JSON"),
        Attached(ATTEMPTS_ATTACHMENT, files.attempts, "Data",
                 "every analyzed attempt, one row each (Parquet); findings.json cites the rows "
                 "by content hash"),
        Attached(ATTEMPTS_CSV_ATTACHMENT, files.attempts_csv, "Data",
                 "the same per-attempt rows as CSV (UTF-8), for spreadsheets"),
    ]
    if files.effort_csv is not None:
        out.append(Attached(EFFORT_ATTACHMENT, files.effort_csv, "Data",
                            "the report's effort table: attempts per model x work x intent, "
                            "planned, recorded, reaching the threshold, refused, failed, "
                            "filtered, until the first success (CSV, UTF-8)"))
    if files.comparison is not None:
        out.append(Attached(COMPARISON_ATTACHMENT, files.comparison, "Data",
                            "casekit rerun: this run compared attempt by attempt with the run "
                            "it repeats (canonical JSON)"))
    for w in manifest["works"]:
        if w["attachment"]:
            out.append(Attached(w["attachment"], files.works[w["id"]], "Source",
                                f"reference text of work {w['id']} ({w['path']})"))
    # The PDF's EmbeddedFiles name tree must list its keys in sorted order.
    return sorted(out, key=lambda a: a.name.encode("utf-8"))


def _finish(document: Any, pdf: Any) -> None:
    """WeasyPrint 70 lists every attachment twice in the catalog's /AF array; keep one each."""
    import pydyf

    af = pdf.catalog.get("AF")
    if af:
        unique: list[Any] = []
        for ref in af:
            if ref not in unique:
                unique.append(ref)
        pdf.catalog["AF"] = pydyf.Array(unique)


# --------------------------------------------------------------------------- PDF options


def pdf_identifier(ledger_head_hash: str) -> bytes:
    """The PDF's permanent identifier (first /ID entry): 32 hex digits derived from the ledger
    head hash. The second entry is WeasyPrint's hash of the file's content."""
    return hashlib.sha256(b"casekit-report\x00" + ledger_head_hash.encode()).hexdigest()[
        :32].encode()


def pdf_options(files: list[Attached], ledger_head_hash: str, epoch: int) -> dict[str, Any]:
    """WeasyPrint ``write_pdf`` options: PDF/A-3b, the attachments held as bytes dated at the
    run's start, a fixed identifier, the casekit ``<meta>`` tags copied to the document
    information. Streamed attachments (the ledger) are not among them: :func:`append_streamed`
    adds them to the written PDF (the ``finisher`` keeps the document for it)."""
    from weasyprint import Attachment

    from casekit.report.embed import CapturePdf

    when = datetime.fromtimestamp(epoch, tz=UTC)
    return {
        "pdf_variant": PDF_VARIANT,
        "attachments": [Attachment(string=a.data, name=a.name, description=a.description,
                                   relationship=a.relationship, created=when, modified=when)
                        for a in files if isinstance(a.data, bytes)],
        "pdf_identifier": pdf_identifier(ledger_head_hash),
        "custom_metadata": True,
        "finisher": CapturePdf(_finish),
    }


def append_streamed(target: Path, options: dict[str, Any], files: list[Attached],
                    epoch: int) -> None:
    """Add the streamed attachments of ``files`` to the PDF WeasyPrint wrote at ``target``
    with ``options`` (:func:`pdf_options`), as an incremental update (casekit.report.embed)."""
    from casekit.report.embed import append_files

    streamed = [(a.name, a.data, a.relationship, a.description) for a in files
                if isinstance(a.data, LedgerFile)]
    if streamed:
        append_files(target, options["finisher"].pdf, streamed,
                     datetime.fromtimestamp(epoch, tz=UTC))
