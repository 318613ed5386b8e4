"""The reading of a run folder for the report: the verified ledger, the works and the optional
comparison, each checked against the findings and the run's recorded hashes.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casekit.analysis.analyze import findings_bytes
from casekit.analysis.attempt_table import CSV_NAME, write_csv
from casekit.analysis.findings import Findings
from casekit.canonical import HASH_PREFIX, canonical_json, sha256_bytes
from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME
from casekit.records import RunStart
from casekit.report.evidence import COMPARISON_ATTACHMENT, EvidenceFiles
from casekit.report.ledger_facts import (
    AttemptLookup,
    LedgerFacts,
    LedgerFile,
    read_ledger_facts,
)
from casekit.report.table import AttemptTable
from casekit.works import Work, load_works

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    ledger: LedgerFacts
    """What the report states about the ledger's records, read in one verifying pass (the
    records themselves are not kept: issue 14)."""
    start: RunStart
    case: CaseFile
    works: dict[str, Work]
    attempts_by_seq: AttemptLookup
    """Attempt records by sequence number, read from the ledger when asked for."""
    table: AttemptTable
    """The per-attempt rows (attempts.parquet) the findings cite, as columns."""
    work_bytes: dict[str, bytes] = field(default_factory=dict)
    """Work id -> the file's bytes (their SHA-256 is the run's recorded hash)."""
    comparison_bytes: bytes | None = None
    """comparison.json written by ``casekit rerun`` into this run's folder, if any."""
    attempts_csv: ScratchFile | None = None
    """attempts.csv of the table when already made (casekit verify makes it to check the
    attached one); else :func:`evidence_files` makes it."""

    @property
    def ledger_file(self) -> LedgerFile:
        """The ledger file as verified (embedded in the PDF byte for byte, streamed)."""
        return self.ledger.file


def attempt_flags(findings: Findings, table: AttemptTable,
                  ) -> dict[int, tuple[bool, str | None]]:
    """Record seq -> (its analysis reaches the reporting threshold, its refusal source), for
    the analysed attempt records where either holds: what the ledger's facts need of the
    analyses (LedgerFacts.flag)."""
    reach = table.reaching(findings)
    refusal = table.label("refusal_source")
    rows = np.flatnonzero(reach | refusal.notnull())
    seqs = table.number("seq")
    return {int(seqs[r]): (bool(reach[r]), refusal.at(int(r)) or None) for r in rows}


class StaleFindings(CasekitError):
    """findings.json was made from another state of the ledger (the run went on since, or
    another run): `casekit analyze` must run again before a report."""


def load_inputs(run_dir: Path, findings: Findings, case_path: Path | None = None, *,
                table_checked: bool = False,
                ledger: tuple[LedgerFacts, AttemptLookup] | None = None) -> Inputs:
    """The verified ledger and the works, checked against the findings and the run's hashes.

    ``case_path``: where the case file is now, if it moved since the run (its works are found
    relative to it); default: the path the run recorded. ``table_checked``: the run's
    attempts.parquet was just checked to hold the rows the findings cite (casekit verify).
    ``ledger``: the ledger's facts from a verifying pass the caller made (casekit verify's
    analysis, casekit.report.ledger_facts.FactsPass), before any flag was added; default: a
    pass of its own.
    """
    table = AttemptTable.of_run(run_dir, findings, checked=table_checked)
    facts, lookup = ledger if ledger is not None else read_ledger_facts(run_dir / LEDGER_NAME)
    start = facts.run_start
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    head = facts.head_hash or ""
    if findings.ledger_head_hash != head or findings.run_id != start.run_id:
        raise StaleFindings(
            f"{run_dir}: the findings cite ledger head {findings.ledger_head_hash} of run "
            f"{findings.run_id!r}, the ledger's head is {head} of run {start.run_id!r}; re-run "
            "`casekit analyze` on this run before reporting")
    facts.flag(attempt_flags(findings, table))
    spec = CaseFile.model_validate(start.case)
    loaded = LoadedCase(spec=spec, path=(case_path or Path(start.case_path)).resolve(),
                        sha256=start.case_sha256)
    works = load_works(loaded)
    for w in works:
        rec = next((x for x in start.works if x.id == w.id), None)
        if rec is None or rec.sha256 != w.sha256:
            raise CasekitError(
                f"work {w.id!r} at {w.path} hashes to {w.sha256}, the run recorded "
                f"{rec.sha256 if rec else 'no such work'}; restore the original text to report "
                "on this run")
    work_bytes = {}
    for w in works:
        data = w.path.read_bytes()
        if sha256_bytes(data) != w.sha256:
            raise CasekitError(f"work {w.id!r} at {w.path} changed while it was read; report "
                               "again")
        work_bytes[w.id] = data
    comparison = run_dir / COMPARISON_ATTACHMENT
    return Inputs(ledger=facts, start=start, case=spec, works={w.id: w for w in works},
                  attempts_by_seq=lookup, table=table, work_bytes=work_bytes,
                  comparison_bytes=comparison.read_bytes() if comparison.is_file() else None)


@dataclass(frozen=True)
class ScratchFile(LedgerFile):
    """A file the report writes for itself (attempts.csv) and streams into the PDF: it lives
    in a temporary folder that is removed when this object is."""

    folder: tempfile.TemporaryDirectory[str] | None = None


def table_csv(table: AttemptTable | Path) -> ScratchFile:
    """attempts.csv of the table (or of the table file), written from its record batches to a
    temporary file, with its size, SHA-256 and MD5 (read back in chunks)."""
    folder = tempfile.TemporaryDirectory(prefix="casekit-csv-")
    path = Path(folder.name) / CSV_NAME
    size, sha, md5 = hashed_csv(table if isinstance(table, Path) else table.source, path)
    return ScratchFile(path=path, size=size, sha256=sha, md5=md5, folder=folder)


def hashed_csv(table: Path | bytes, path: Path) -> tuple[int, str, str]:
    """attempts.csv of the table written to ``path``: (its size, SHA-256, MD5)."""
    write_csv(table, path)
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return path.stat().st_size, HASH_PREFIX + sha.hexdigest(), md5.hexdigest()


def evidence_files(findings: Findings, inputs: Inputs) -> EvidenceFiles:
    """The bytes a report embeds or hashes: ledger, findings, the per-attempt table (the
    run's attempts.parquet, whose rows :class:`AttemptTable` checked against the findings)
    and its CSV (written from the table's record batches to a file), case, works."""
    return EvidenceFiles(ledger=inputs.ledger_file, findings=findings_bytes(findings),
                         attempts=inputs.table.file_bytes(),
                         attempts_csv=inputs.attempts_csv or table_csv(inputs.table),
                         case=canonical_json(inputs.start.case),
                         works=dict(inputs.work_bytes), comparison=inputs.comparison_bytes)
