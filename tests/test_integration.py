"""End to end on the embedded model: case -> run -> ledger -> analyze -> PDF, read with pypdf."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader

from casekit.cli import cli
from casekit.strategies.teacher_forced import SummaryFields
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CASE = """\
case:
  id: itest
  title: Integration test on the embedded model
  matter: none
  examiner: Tester
  organization: casekit tests
works:
  - id: constitution
    title: The Constitution of the United States
    author: Constitutional Convention
    path: constitution.txt
    role: subject
  - id: control
    title: The Harbour Ledger of Quillon Reach
    author: casekit project
    path: control.txt
    role: control
    exclude:
      - markers: {to_marker: "during training."}
models:
  - id: gemma
    provider: local
    model: gemma3-270m
strategies:
  - name: prefix_continuation
    params: {prefix_words: 12, suffix_words: 30, stride_words: 1000, max_tokens: 40}
  - name: teacher_forced
    params: {prefix_words: 12, suffix_words: 30, stride_words: 1000}
thresholds: {min_span_words: 12, legal_defaults: false}
"""


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(pdf).pages)


def test_embedded_model_case_end_to_end(tmp_path: Path) -> None:
    works = REPO / "cases" / "demo" / "works"
    shutil.copy(works / "constitution.txt", tmp_path / "constitution.txt")
    shutil.copy(works / "control-harbour-ledger.txt", tmp_path / "control.txt")
    (tmp_path / "case.yaml").write_text(CASE)
    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "demo", str(tmp_path / "case.yaml")])
    assert res.exit_code == 0, res.output
    pdf = Path(re.search(r"report: (\S+\.pdf)", res.output).group(1))  # type: ignore[union-attr]
    run_dir = pdf.parent.parent
    assert runner.invoke(cli, ["verify", str(run_dir)]).exit_code == 0

    from casekit.analysis.findings import Findings

    f = Findings.model_validate_json((run_dir / "findings.json").read_bytes())
    by = {x.work_id: x for x in f.findings}
    subj, ctrl = by["constitution"], by["control"]
    # Gemma recites the preamble from its first twelve words; the control gives nothing.
    assert subj.extraction.k == 1 and subj.coverage.longest_block_words >= 12
    assert ctrl.extraction.k == 0 and ctrl.coverage.covered_words == 0
    assert subj.fields(SummaryFields).teacher_forced and ctrl.fields(SummaryFields).teacher_forced
    assert subj.fields(SummaryFields).teacher_forced.mean_top1_share \
        > ctrl.fields(SummaryFields).teacher_forced.mean_top1_share + 0.3

    text = _text(pdf)
    flat = re.sub(r"\s+", "", text)
    assert "Summary of findings" in text
    assert "1of1attemptswithaspan≥12words" in flat  # the extraction figure of the table
    assert "0of1attemptswithaspan≥12words" in flat  # the control's
    assert "Exhibit E-1" in text
    exhibit_id = subj.exhibit_attempts[0]
    assert exhibit_id in flat
    assert "provideforthecommondefence" in flat  # the reproduced words, quoted in the exhibit
    assert f.ledger_head_hash in flat
    assert "evidence of memorization below the threshold".replace(" ", "") in flat or \
        "memorization shown".replace(" ", "") in flat
