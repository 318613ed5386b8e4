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


def test_a_report_after_the_ledger_grew_re_analyzes(tmp_path: Path) -> None:
    """findings.json made before more records were added is stale: `casekit report` finds it
    in its one verifying pass over the ledger (the findings cite another head), analyzes again
    and reports the records now in the ledger."""
    case_dir = tmp_path / "evidence-only"
    shutil.copytree(EXAMPLE, case_dir, ignore=shutil.ignore_patterns("runs"))
    lines = (case_dir / "outputs.jsonl").read_text().splitlines()
    (case_dir / "first.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    cli_runner = CliRunner()
    res = cli_runner.invoke(cli, ["import", str(case_dir / "case.yaml"),
                                  str(case_dir / "first.jsonl")])
    assert res.exit_code == 0, res.output
    (run_dir,) = (case_dir / "runs").iterdir()
    res = cli_runner.invoke(cli, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    before = json.loads((run_dir / "findings.json").read_text())
    assert before["imported_attempts"] == len(lines) - 1
    res = cli_runner.invoke(cli, ["import", str(case_dir / "case.yaml"),
                                  str(case_dir / "outputs.jsonl")])
    assert res.exit_code == 0 and "imported 1 of" in res.output, res.output
    res = cli_runner.invoke(cli, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    after = json.loads((run_dir / "findings.json").read_text())
    assert after["imported_attempts"] == len(lines)
    assert after["ledger_head_hash"] == verify_chain(run_dir / LEDGER_NAME).head_hash
    assert after["ledger_head_hash"] != before["ledger_head_hash"]
