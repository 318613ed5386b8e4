"""Record the golden demo fixture: findings.json bytes and the report's page text.

The fixture is a real `casekit demo` ledger (tests/golden/demo/ledger.jsonl, with the case file
and works it was run on). tests/test_golden_demo.py re-analyzes and re-renders it and compares
with what this script recorded. Run it again only when a change is MEANT to change the findings
or the report, and say so in that commit:

    .venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casekit.analysis.findings import Findings
    from casekit.report.build import ReportPaths

HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"


@dataclass
class Rendered:
    """The golden ledger analyzed and reported in a run folder."""

    run: Path
    findings: Findings
    """With the per-attempt rows of attempts.parquet."""
    findings_json: bytes
    paths: ReportPaths


def render_demo(workdir: Path) -> Rendered:
    """The golden ledger analyzed and reported in ``workdir/run`` exactly as `casekit
    analyze` and `casekit report` do."""
    from casekit.analysis.analyze import analyze_run, findings_bytes, load_findings, write_findings
    from casekit.analysis.attempt_table import ATTEMPTS_NAME
    from casekit.report.build import build_report

    run = workdir / "run"
    run.mkdir()
    (run / "ledger.jsonl").write_bytes((DEMO / "ledger.jsonl").read_bytes())
    case = DEMO / "case.yaml"
    path = write_findings(run, analyze_run(run, case, table=run / ATTEMPTS_NAME),
                          table_written=True)
    data = path.read_bytes()
    findings = load_findings(run)
    assert findings_bytes(findings) == data, "findings.json does not round-trip"
    return Rendered(run, findings, data, build_report(run, findings, case_path=case))


def render(workdir: Path) -> tuple[bytes, list[str]]:
    """(findings.json bytes, the text of each PDF page) of the golden ledger."""
    from pypdf import PdfReader

    done = render_demo(workdir)
    return done.findings_json, [p.extract_text() for p in PdfReader(done.paths.pdf).pages]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="casekit-golden-") as tmp:
        data, pages = render(Path(tmp))
    (DEMO / "findings.json").write_bytes(data)
    (DEMO / "pages.json").write_text(json.dumps(pages, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    print(f"recorded {len(data)} bytes of findings and {len(pages)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
