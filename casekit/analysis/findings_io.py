"""Reading and writing a run's findings: findings.json (canonical JSON, written through a
temporary file) and the per-attempt rows of attempts.parquet it cites by content hash."""

from __future__ import annotations

import logging
from pathlib import Path

from casekit.analysis.attempt_table import ATTEMPTS_NAME, TableError, load_table, write_table
from casekit.analysis.findings import Findings
from casekit.canonical import canonical_json
from casekit.errors import CasekitError

log = logging.getLogger(__name__)

FINDINGS_NAME = "findings.json"


def findings_bytes(findings: Findings) -> bytes:
    """Canonical JSON (RFC 8785) of the findings: byte-identical for identical findings."""
    return canonical_json(findings.model_dump(mode="json")) + b"\n"


def write_findings(run_dir: Path, findings: Findings, *, table_written: bool = False) -> Path:
    """Write findings.json (through a temporary file, renamed: a killed analyze leaves the
    previous file or none, never half of one). The rows it cites are written by
    ``analyze_run(..., table=...)``, or here when they are not on disk yet."""
    table = run_dir / ATTEMPTS_NAME
    if not table_written and not _table_matches(table, findings):
        write_table(table, findings.attempts)
    path = run_dir / FINDINGS_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(findings_bytes(findings))
    tmp.replace(path)
    return path


def _table_matches(table: Path, findings: Findings) -> bool:
    """The table on disk holds the rows the findings cite (checked by content hash)."""
    if not table.is_file():
        return False
    try:
        load_table(table, findings.attempt_rows)
    except TableError:
        return False
    return True


def load_findings(run_dir: Path, *, rows: bool = True) -> Findings:
    """findings.json with its per-attempt rows from attempts.parquet, checked against the
    content hash it cites. ``rows=False``: findings.json alone (``attempts`` left empty), for
    a reader of the table's columns (the report: casekit.report.table, which checks the
    rows itself) that must not hold an object per attempt."""
    path = run_dir / FINDINGS_NAME
    try:
        f = Findings.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise CasekitError(f"{path}: not a findings file of this casekit version ({exc}); run "
                           "`casekit analyze` again to rewrite it") from None
    if not rows:
        return f
    return f.model_copy(update={"attempts": load_table(run_dir / ATTEMPTS_NAME,
                                                       f.attempt_rows)})


def findings_from_bytes(findings_json: bytes, table: bytes) -> Findings:
    """Findings from the bytes of findings.json and attempts.parquet (as a report attaches
    them), the rows checked against the content hash the findings cite."""
    import tempfile

    f = Findings.model_validate_json(findings_json)
    with tempfile.TemporaryDirectory(prefix="casekit-findings-") as tmp:
        path = Path(tmp) / ATTEMPTS_NAME
        path.write_bytes(table)
        return f.model_copy(update={"attempts": load_table(path, f.attempt_rows)})
