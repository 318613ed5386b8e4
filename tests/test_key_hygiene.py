"""A key never reaches the ledger, the findings, the report or the logs (whole pipeline)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.analysis.analyze import analyze_run, write_findings
from casekit.case import load_case
from casekit.report import build_report
from casekit.run.runner import Runner
from tests.stub_openai import StubConfig, StubServer

FAKE_KEY = "sk-casekit-FAKE-0123456789abcdefXYZ"


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_fake_key_appears_nowhere(case_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture,
                                  capfd: pytest.CaptureFixture[str], transport: str) -> None:
    import casekit.run.runner

    monkeypatch.setattr(casekit.run.runner, "BACKOFF_BASE", 0.01)
    monkeypatch.setenv("CASEKIT_TEST_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    with StubServer(StubConfig(latency=0.0, faults={"rate_limit": 0.2, "server_error": 0.1},
                               seed=5, retry_after=0)) as stub:
        text = (case_dir / "case.yaml").read_text()
        start = text.index("models:")
        end = text.index("strategies:")
        models = f"""models:
  - id: api
    provider: openai-compatible
    model: stub-model
    base_url: {stub.url}
    api_key_env: CASEKIT_TEST_KEY
    interface: chat
    params: {{transport: {transport}}}
    limits: {{max_tries: 8}}
"""
        body = text[end:].split("  - name: teacher_forced")[0]
        (case_dir / "case.yaml").write_text(text[:start] + models + body +
                                            "thresholds: {min_span_words: 15}\n")
        out = Runner(load_case(case_dir / "case.yaml")).run()
    assert out.complete
    findings = analyze_run(out.run_dir)
    write_findings(out.run_dir, findings)
    paths = build_report(out.run_dir, findings)
    start_rec = (out.run_dir / "ledger.jsonl").read_text()
    assert "key_fingerprint" in start_rec, "the key is identified by its fingerprint"
    files = [p for p in out.run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pdf" for p in files)
    for p in files:
        assert FAKE_KEY.encode() not in p.read_bytes(), p
        assert FAKE_KEY[:16].encode() not in p.read_bytes(), p
    pdf_text = "\n".join(page.extract_text() or "" for page in PdfReader(paths.pdf).pages)
    assert FAKE_KEY not in pdf_text and FAKE_KEY[:16] not in pdf_text
    for attachment in PdfReader(paths.pdf).attachments.values():
        for blob in attachment:
            assert FAKE_KEY.encode() not in blob
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord

    recs = [r for r in read_records(out.run_dir / "ledger.jsonl") if isinstance(r, AttemptRecord)]
    assert any(len(r.tries) > 1 for r in recs), "error paths were exercised too"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "failed" in logs  # the retried tries were logged...
    assert FAKE_KEY not in logs and FAKE_KEY[:16] not in logs
