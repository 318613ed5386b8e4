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
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"


def render(workdir: Path) -> tuple[bytes, list[str]]:
    """(findings.json bytes, the text of each PDF page) of the golden ledger, analyzed and
    reported in ``workdir`` exactly as `casekit analyze` and `casekit report` do."""
    from pypdf import PdfReader

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
    findings = load_findings(run)  # with the per-attempt rows of attempts.parquet
    assert findings_bytes(findings) == data, "findings.json does not round-trip"
    paths = build_report(run, findings, case_path=case)
    pages = [p.extract_text() for p in PdfReader(paths.pdf).pages]
    return data, pages


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
