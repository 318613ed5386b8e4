"""The Disclosures page says what signs and timestamps the ledger and the report (issue 16
item 7): the examiner key's fingerprint from the run's anchoring, the checkpoints' tokens, and
whether `casekit report` applies a timestamp or a signature once the PDF is written, which the
manifest records so that `casekit verify` re-renders the same page."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from casekit.report import catalogue as C
from tests.test_report import Fixture, build_fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return build_fixture(tmp_path_factory.mktemp("disclose"))


def _section(page: str) -> str:
    part = page.split('id="disclosures"', 1)[1].split("</section>", 1)[0]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", part)))


def _render(fx: Fixture, **options: object) -> tuple[str, dict]:
    from casekit.report.build import render_report
    from casekit.report.evidence import ReportOptions
    from casekit.report.inputs import load_inputs

    inputs = load_inputs(fx.run_dir, fx.findings)
    r = render_report(fx.findings, inputs, ReportOptions(3, **options))  # type: ignore[arg-type]
    return r.html, r.manifest


def test_an_anchored_run_names_its_key_and_nothing_applied(fx: Fixture) -> None:
    from casekit.ledger import iter_records
    from casekit.records import RunStart

    start = next(r for r in iter_records(fx.run_dir / "ledger.jsonl")
                 if isinstance(r, RunStart))
    assert start.examiner_key is not None
    page, manifest = _render(fx)
    d = _section(page)
    assert f"signed by the examiner's Ed25519 key, fingerprint {start.examiner_key.fingerprint}" \
        in d
    assert "No checkpoint was timestamped" in d
    assert C.DISCLOSE_NO_REPORT_TSA in d and C.DISCLOSE_NO_REPORT_SIGN in d
    assert "not signed by an examiner key" not in d
    assert "timestamp_tsa" not in manifest["report"] and "sign" not in manifest["report"]


def test_a_report_to_be_timestamped_and_signed_says_so(fx: Fixture) -> None:
    page, manifest = _render(fx, timestamp_tsa="http://tsa.example/tsr", sign=True)
    d = _section(page)
    assert "casekit report --tsa http://tsa.example/tsr" in d
    assert "cannot say whether it was granted" in d
    assert "report.signed.pdf" in d and C.DISCLOSE_NO_REPORT_SIGN not in d
    assert C.DISCLOSE_NO_REPORT_TSA not in d
    assert manifest["report"]["timestamp_tsa"] == "http://tsa.example/tsr"
    assert manifest["report"]["sign"] is True


def test_checkpoint_tokens_and_an_unsigned_ledger() -> None:
    from casekit.records import Checkpoint
    from casekit.report.sections.disclosures import anchoring_lines

    def cp(**kw: object) -> Checkpoint:
        base = dict(seq=5, prev_hash="sha256:" + "0" * 64, recorded_at="2026-01-01T00:00:00Z",
                    covers_seq=4, head_hash="sha256:" + "0" * 64, final=True,
                    key_fingerprint="sha256:" + "1" * 64, signature="x")
        base.update(kw)
        return Checkpoint.model_validate(base)

    lines = anchoring_lines(("sha256:" + "1" * 64, "records 0 to 4"),
                            [cp(tsa="http://t", timestamp="AAAA"),
                             cp(tsa="http://t", timestamp_error="down")], None, False)
    assert "1 of the ledger's 2 checkpoints carry an RFC 3161 token from http://t" in lines[1]
    assert "1 checkpoint could not be timestamped" in lines[1]
    lines = anchoring_lines((C.ANCHOR_NO_KEY, C.ANCHOR_NONE), [], None, False)
    assert lines[0].startswith("The ledger is not signed by an examiner key")


def test_verify_re_renders_a_report_made_to_be_timestamped(fx: Fixture, tmp_path: Path) -> None:
    from casekit.cli import cli
    from casekit.report import build_report

    paths = build_report(fx.run_dir, fx.findings, out_dir=tmp_path / "r",
                         timestamp_tsa="http://tsa.example/tsr", sign=True)
    assert "casekit report --tsa http://tsa.example/tsr" in _section(
        paths.html.read_text(encoding="utf-8"))
    res = CliRunner().invoke(cli, ["verify", str(paths.pdf)])
    assert "report re-rendered" in res.output
    assert not [x for x in res.output.splitlines() if x.startswith("FAILED")], res.output
