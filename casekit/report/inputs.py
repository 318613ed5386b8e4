"""The reading of a run folder for the report: the verified ledger, the works and the optional
comparison, each checked against the findings and the run's recorded hashes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from casekit.analysis.analyze import findings_bytes
from casekit.analysis.attempt_table import CSV_NAME, write_csv
from casekit.analysis.findings import Findings
from casekit.canonical import canonical_json, sha256_bytes
from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, read_records
from casekit.records import (
    AttemptRecord,
    LedgerRecord,
    RunStart,
)
from casekit.report.evidence import COMPARISON_ATTACHMENT, EvidenceFiles
from casekit.report.table import AttemptTable
from casekit.works import Work, load_works

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    records: list[LedgerRecord]
    start: RunStart
    case: CaseFile
    works: dict[str, Work]
    attempts_by_seq: dict[int, AttemptRecord]
    table: AttemptTable
    """The per-attempt rows (attempts.parquet) the findings cite, as columns."""
    ledger_bytes: bytes = b""
    """The ledger file as verified (embedded in the PDF byte for byte)."""
    work_bytes: dict[str, bytes] = field(default_factory=dict)
    """Work id -> the file's bytes (their SHA-256 is the run's recorded hash)."""
    comparison_bytes: bytes | None = None
    """comparison.json written by ``casekit rerun`` into this run's folder, if any."""


def load_inputs(run_dir: Path, findings: Findings, case_path: Path | None = None) -> Inputs:
    """The verified ledger and the works, checked against the findings and the run's hashes.

    ``case_path``: where the case file is now, if it moved since the run (its works are found
    relative to it); default: the path the run recorded.
    """
    table = AttemptTable.of_run(run_dir, findings)
    ledger_bytes = (run_dir / LEDGER_NAME).read_bytes()
    records = read_records(run_dir / LEDGER_NAME)
    if _last_hash(ledger_bytes) != records[-1].hash or \
            ledger_bytes.count(b"\n") != len(records):
        raise CasekitError(f"{run_dir / LEDGER_NAME}: the ledger changed while it was read; "
                           "wait for the run to finish, then report")
    start = next((r for r in records if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    head = records[-1].hash or ""
    if findings.ledger_head_hash != head or findings.run_id != start.run_id:
        raise CasekitError(
            f"{run_dir}: the findings cite ledger head {findings.ledger_head_hash} of run "
            f"{findings.run_id!r}, the ledger's head is {head} of run {start.run_id!r}; re-run "
            "`casekit analyze` on this run before reporting")
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
    by_seq = {r.seq: r for r in records if isinstance(r, AttemptRecord)}
    comparison = run_dir / COMPARISON_ATTACHMENT
    return Inputs(records=records, start=start, case=spec, works={w.id: w for w in works},
                  attempts_by_seq=by_seq, table=table, ledger_bytes=ledger_bytes,
                  work_bytes=work_bytes,
                  comparison_bytes=comparison.read_bytes() if comparison.is_file() else None)


def _last_hash(ledger: bytes) -> str | None:
    """The ``hash`` of the last record of a ledger's bytes."""
    lines = ledger.rstrip(b"\n").rsplit(b"\n", 1)
    try:
        value = json.loads(lines[-1]).get("hash")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def evidence_files(findings: Findings, inputs: Inputs) -> EvidenceFiles:
    """The bytes a report embeds or hashes: ledger, findings, the per-attempt table (the
    run's attempts.parquet, whose rows :class:`AttemptTable` checked against the findings)
    and its CSV (written from the table's record batches), case, works."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="casekit-csv-") as tmp:
        csv = Path(tmp) / CSV_NAME
        write_csv(inputs.table.source, csv)
        csv_bytes = csv.read_bytes()
    return EvidenceFiles(ledger=inputs.ledger_bytes, findings=findings_bytes(findings),
                         attempts=inputs.table.file_bytes(), attempts_csv=csv_bytes,
                         case=canonical_json(inputs.start.case),
                         works=dict(inputs.work_bytes), comparison=inputs.comparison_bytes)
