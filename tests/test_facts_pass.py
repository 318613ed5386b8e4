"""casekit verify takes the report's facts of the ledger from its analysis' pass
(casekit.report.ledger_facts.FactsPass as the analysis' LedgerObserver) instead of reading the
ledger again: the facts must be those the report's own pass finds, with one worker or many, for
a ledger with imported attempts, failures, refusals and checkpoints (the retried failures of
``--retry-failed``: tests/test_retry_failed.py uses :func:`assert_same_facts` too)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run, findings_bytes
from casekit.case import load_case
from casekit.ledger import LEDGER_NAME
from casekit.report.inputs import attempt_flags
from casekit.report.ledger_facts import AttemptLookup, FactsPass, LedgerFacts, read_ledger_facts
from casekit.report.table import AttemptTable
from casekit.run.importer import import_outputs
from casekit.run.runner import Runner
from tests.test_import import PNG, ROWS, write_csv


def _comparable(facts: LedgerFacts) -> dict[str, object]:
    out = {f.name: getattr(facts, f.name) for f in dataclasses.fields(facts)}
    out["imported"] = facts.imported.summary()
    return out


def assert_same_facts(run_dir: Path, workers: int) -> None:
    """The facts (and the record lookup) of the analysis' pass equal the report's pass's, also
    once the analyses' flags are added."""
    ledger = run_dir / LEDGER_NAME
    observed = FactsPass(ledger)
    findings = analyze_run(run_dir, workers=workers, observer=observed)
    assert findings_bytes(findings) == findings_bytes(analyze_run(run_dir))  # no side effect
    ours, our_lookup = observed.finish()
    theirs, their_lookup = read_ledger_facts(ledger)
    assert _comparable(ours) == _comparable(theirs)
    for name in ("_offsets", "_crcs", "_attempt"):
        assert getattr(our_lookup, name) == getattr(their_lookup, name), name
    assert isinstance(our_lookup, AttemptLookup) and len(our_lookup) == theirs.attempts
    flags = attempt_flags(findings, AttemptTable.of_run(run_dir, findings))
    ours.flag(flags)
    theirs.flag(flags)
    assert _comparable(ours) == _comparable(theirs)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_analysis_pass_finds_the_report_pass_facts(case_dir: Path, tmp_path: Path,
                                                       workers: int) -> None:
    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=7).run()
    shots = tmp_path / "captures" / "shots"
    shots.mkdir(parents=True)
    (shots / "one.png").write_bytes(PNG)
    import_outputs(out.run_dir, write_csv(tmp_path / "captures" / "c.csv", ROWS))
    facts, _ = read_ledger_facts(out.run_dir / LEDGER_NAME)
    # What the comparison covers: casekit's and imported attempts, checkpoints.
    assert facts.imported_records == 3 and len(facts.checkpoints) >= 2
    assert facts.attempts - facts.imported_records >= 10
    assert_same_facts(out.run_dir, workers)


def test_flags_name_records_of_the_ledger(case_dir: Path) -> None:
    out = Runner(load_case(case_dir / "case.yaml")).run()
    facts, _ = read_ledger_facts(out.run_dir / LEDGER_NAME)
    with pytest.raises(Exception, match="record seq 99999, which is not an attempt"):
        facts.flag({99999: (True, None)})
