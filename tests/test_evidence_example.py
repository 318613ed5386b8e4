"""The evidence-only example of the README (cases/evidence-only): its import file holds a row of
every kind; imported, analyzed and reported from the repository's files, as a user would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from casekit.cli import cli
from casekit.ledger import LEDGER_NAME, read_records, verify_chain
from casekit.records import AttemptRecord
from casekit.run.importer import KINDS

EXAMPLE = Path(__file__).resolve().parent.parent / "cases" / "evidence-only"


def test_the_readme_example_imports_analyzes_and_reports(tmp_path: Path) -> None:
    case_dir = tmp_path / "evidence-only"
    shutil.copytree(EXAMPLE, case_dir, ignore=shutil.ignore_patterns("runs"))
    rows = [json.loads(line) for line in (case_dir / "outputs.jsonl").read_text().splitlines()]
    stated = {r.get("kind", "free_form") for r in rows}
    assert stated == set(KINDS), "the example shows every kind of row"
    assert any("kind" not in r for r in rows), "and a row that states no kind"

    cli_runner = CliRunner()
    res = cli_runner.invoke(cli, ["import", str(case_dir / "case.yaml"),
                                  str(case_dir / "outputs.jsonl")])
    assert res.exit_code == 0, res.output
    (run_dir,) = (case_dir / "runs").iterdir()
    assert verify_chain(run_dir / LEDGER_NAME).ok
    attempts = [r for r in read_records(run_dir / LEDGER_NAME) if isinstance(r, AttemptRecord)]
    assert len(attempts) == len(rows)
    assert {a.attempt.strategy for a in attempts} == set(KINDS.values())
    again = cli_runner.invoke(cli, ["import", str(case_dir / "case.yaml"),
                                    str(case_dir / "outputs.jsonl")])
    assert again.exit_code == 0 and "imported 0 of" in again.output

    res = cli_runner.invoke(cli, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    findings = json.loads((run_dir / "findings.json").read_text())
    assert findings["imported_attempts"] == len(rows) and findings["planned_attempts"] == 0
    res = cli_runner.invoke(cli, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    html = (run_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert (run_dir / "report" / "report.pdf").stat().st_size > 10_000
    assert "A Christmas Carol" in html and "Imported outputs" in html
    assert "not recorded" in html  # the rows pasted by the client have no capture time
    assert "analyzed as free-form" in html
