"""`casekit run --retry-failed` (issue 15, item 6): a brief server outage no longer leaves its
attempts failed for good. Against a local OpenAI-compatible server on 127.0.0.1 that fails some
prompts, then recovers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import casekit.run.runner
from casekit.analysis.analyze import analyze_run
from casekit.anchor import verify_anchoring
from casekit.case import load_case
from casekit.cli import cli
from casekit.ledger import read_records
from casekit.records import AttemptRecord, Checkpoint, Note, RunEnd
from casekit.run.runner import Runner
from tests.kill_trial import stub_case
from tests.stub_openai import StubConfig, StubServer
from tests.test_facts_pass import assert_same_facts

TEMPLATES = ["Question one about {{ title }}?", "DOWN500 tell me about {{ title }}",
             "DOWN429 what is {{ title }}?", "REFUSED400 about {{ title }}"]


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(casekit.run.runner, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(casekit.run.runner, "BACKOFF_CAP", 0.05)


def test_retry_failed_resends_transient_failures_into_the_same_chain(
        tmp_path: Path, fast_backoff: None) -> None:
    config = StubConfig(always_fail={"DOWN500": "server_error", "DOWN429": "rate_limit",
                                     "REFUSED400": "bad_request"})
    with StubServer(config) as stub:
        case_path = stub_case(tmp_path, stub.url, TEMPLATES, max_connections=2)
        first = Runner(load_case(case_path), max_tries=2).run()
        assert first.complete and first.stats.error == 6  # 3 failing templates x 2 works
        before = first.ledger_path.read_bytes()
        failed = {r.attempt.id: r for r in read_records(first.ledger_path)
                  if isinstance(r, AttemptRecord) and r.status == "error"}
        # A plain resume leaves them failed: nothing is sent.
        again = Runner(load_case(case_path), max_tries=2).run()
        assert again.stats.done == 0
        # The outage is over; the 400s would fail the same way and are not sent again.
        config.always_fail.pop("DOWN500")
        config.always_fail.pop("DOWN429")
        sent = len(stub.log)
        res = CliRunner().invoke(cli, ["run", str(case_path), "--retry-failed"])
        assert res.exit_code == 0, res.output
        new_requests = stub.log[sent:]
    assert len(new_requests) == 4  # the 4 transient failures, once each
    assert all("REFUSED400" not in str(e) for e in new_requests)
    data = first.ledger_path.read_bytes()
    assert data.startswith(before), "nothing recorded is rewritten"
    recs = read_records(first.ledger_path)
    retries = [r for r in recs if isinstance(r, AttemptRecord) and r.retry_of is not None]
    assert len(retries) == 4 and all(r.status == "ok" for r in retries)
    by_seq = {r.seq: r for r in recs}
    for r in retries:  # each names the failure it supersedes, which stays on record
        old = by_seq[r.retry_of]
        assert isinstance(old, AttemptRecord) and old.status == "error"
        assert old.attempt.id == r.attempt.id and old.error is not None
        assert old.error.kind in ("transient", "rate_limit")
    assert sum(1 for r in recs if isinstance(r, AttemptRecord)) == len(failed) + 4 + 2
    assert any(isinstance(r, Note) and r.kind == "retry_failed" for r in recs)
    ends = [r for r in recs if isinstance(r, RunEnd)]
    assert ends[-1].counts["error"] == 2 and ends[-1].counts["ok"] == 6
    assert isinstance(recs[-1], Checkpoint) and recs[-1].final
    assert verify_anchoring(first.ledger_path).ok
    # The analysis uses the last try: one row per attempt, the retried ones ok.
    findings = analyze_run(first.run_dir)
    assert len(findings.attempts) == 8 == len({x.attempt_id for x in findings.attempts})
    status = {x.attempt_id: x.outcome for x in findings.attempts}
    assert sum(1 for s in status.values() if s == "error") == 2
    # The report counts them beside the attempts recorded.
    from casekit.report.build import load_inputs, render_report
    from casekit.report.evidence import ReportOptions

    inputs = load_inputs(first.run_dir, findings, case_path)
    html = render_report(findings, inputs, ReportOptions(exhibits_per_finding=3)).html
    assert "4 sent again after a transient failure" in html
    # Effort, reliability, the bottom line and custody count attempts, as the findings do:
    # a failure sent again is not an attempt of its own (each work has 4 planned attempts,
    # 1 of which, REFUSED400, ended in an error; it was 6 recorded and 3 failed per work).
    from casekit.report.sections.effort import build_effort
    from casekit.report.sections.reliability import build_reliability

    effort = build_effort(findings, inputs.case, ["stub"], inputs.ledger)
    assert [(e.work_id, e.planned, e.recorded, e.with_output, e.errors) for e in effort.rows] \
        == [("subject", "4", "4", "3", "1"), ("control", "4", "4", "3", "1")]
    rel = build_reliability(findings, inputs, ["stub"])
    (row,) = rel.rows
    # tries: 2 x (1 + 2 + 2 + 1) in the first run, 4 sent again once each
    assert (row.attempts, row.ok, row.failed, row.tries, row.retried, row.most_tries) == \
        ("8", "6", "2", "16", "4", "3")
    assert row.failed_tries.startswith("4 transient, 4 rate limit, 2 not retried")
    assert rel.errors_total == 2 and {e.attempt_id for e in rel.errors} == {
        x.attempt_id for x in findings.attempts if x.outcome == "error"}
    assert rel.resent.startswith("4 failed attempt records were sent again")
    assert rel.resent in html
    assert "casekit recorded 8 of 8 planned attempts (8 benign," in html
    assert "last attempt recorded (8 in all)" in html
    # casekit verify's single pass finds the same facts of this ledger.
    assert_same_facts(first.run_dir, workers=2)


def test_retry_failed_with_nothing_to_retry_sends_nothing(tmp_path: Path,
                                                          fast_backoff: None) -> None:
    with StubServer(StubConfig()) as stub:
        case_path = stub_case(tmp_path, stub.url, TEMPLATES[:1], max_connections=2)
        Runner(load_case(case_path)).run()
        sent = len(stub.log)
        out = Runner(load_case(case_path), retry_failed=True).run()
        assert len(stub.log) == sent and out.complete and out.stats.retried == 0
