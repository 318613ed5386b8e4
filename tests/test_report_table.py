"""The report reads attempts.parquet as columns, not as an object per attempt (issue 14).

A scripted run of 3,200 attempts (tests/test_report_scale.py's shape: two models x two works x
two strategies, every outcome) is analyzed and written as `casekit analyze` writes it; the
report made from findings.json alone (``load_findings(rows=False)``) and the run's table makes
an AttemptAnalysis only for the attempts its pages show or draw, states the same pages as the
report of the analyses held in memory, and attaches the run's attempts.parquet and a CSV
byte-identical to the one made from the analyses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pypdf import PdfReader

from casekit.analysis.analyze import load_findings, write_findings
from casekit.analysis.attempt_table import (
    ATTEMPTS_NAME,
    TableError,
    table_digest,
    table_files,
    write_table,
)
from casekit.analysis.findings import AttemptAnalysis, Findings
from casekit.report.attachments import read_attachments
from casekit.report.evidence import ATTEMPTS_ATTACHMENT, ATTEMPTS_CSV_ATTACHMENT
from casekit.report.table import NO_SPAN, AttemptTable
from tests.test_report_scale import make_run

pytestmark = pytest.mark.slow

PER_CELL = 400  # 2 models x 2 works x 2 strategies x 400 = 3,200 attempts


@dataclass
class Analyzed:
    run_dir: Path
    findings: Findings
    """As analyzed, with every analysis in memory (the reference)."""


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> Analyzed:
    root = tmp_path_factory.mktemp("table")
    run_dir, _, f = make_run(root, PER_CELL)
    assert len(f.attempts) == 8 * PER_CELL
    write_table(run_dir / ATTEMPTS_NAME, f.attempts)
    write_findings(run_dir, f, table_written=True)
    return Analyzed(run_dir, f)


def test_the_columns_are_the_analyses(analyzed: Analyzed) -> None:
    f = analyzed.findings
    xs = f.attempts
    t = AttemptTable(analyzed.run_dir / ATTEMPTS_NAME, f.attempt_rows)
    assert len(t) == len(xs)
    for name in ("model_id", "work_id", "strategy_key", "intent", "mode", "outcome",
                 "refusal_source"):
        lab = t.label(name)
        assert [lab.at(i) for i in range(len(xs))] == [getattr(x, name) for x in xs], name
    for name in ("seq", "longest_words", "echo_words"):
        assert t.number(name).tolist() == [getattr(x, name) for x in xs], name
    assert t.ids(np.ones(len(xs), dtype=bool)) == [x.attempt_id for x in xs]
    assert t.reaching(f).tolist() == [f.reaches_threshold(x) for x in xs]
    assert t.has_spans.tolist() == [bool(x.spans) for x in xs]
    assert t.first_word.tolist() == [min((s.work_word_start for s in x.spans), default=NO_SPAN)
                                     for x in xs]
    # Analyses are made for the rows asked for, in ledger order, equal to the originals.
    rows = [len(xs) - 1, 3, 8200 % len(xs), 3]
    assert list(t.analyses(rows)) == [xs[i] for i in sorted(set(rows))]
    assert t.by_id([xs[7].attempt_id, "no-such-attempt"]) == {xs[7].attempt_id: xs[7]}
    # The same from the table's bytes.
    data = (analyzed.run_dir / ATTEMPTS_NAME).read_bytes()
    tb = AttemptTable(data, f.attempt_rows)
    assert tb.file_bytes() == data and tb.get(5) == xs[5]
    assert table_digest(data) == f.attempt_rows


def test_a_table_that_is_not_the_cited_one_is_refused(analyzed: Analyzed,
                                                      tmp_path: Path) -> None:
    f = analyzed.findings
    fewer = tmp_path / ATTEMPTS_NAME
    write_table(fewer, f.attempts[:-1])
    with pytest.raises(TableError, match=f"{len(f.attempts) - 1} rows hashing to .* cites"):
        AttemptTable(fewer, f.attempt_rows)
    edited = [f.attempts[0].model_copy(update={"longest_words": 999}), *f.attempts[1:]]
    write_table(fewer, edited)
    with pytest.raises(TableError, match="run `casekit analyze` again"):
        AttemptTable(fewer, f.attempt_rows)
    with pytest.raises(TableError, match="no per-attempt table here"):
        AttemptTable(tmp_path / "missing.parquet", f.attempt_rows)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The attempt ids of every AttemptAnalysis made (validated or constructed)."""
    ids: list[str] = []
    validate = AttemptAnalysis.model_validate.__func__  # type: ignore[attr-defined]
    init = AttemptAnalysis.__init__

    def counted_validate(cls: Any, obj: Any, *args: Any, **kw: Any) -> Any:
        x = validate(cls, obj, *args, **kw)
        ids.append(x.attempt_id)
        return x

    def counted_init(self: Any, **data: Any) -> None:
        init(self, **data)
        ids.append(self.attempt_id)

    monkeypatch.setattr(AttemptAnalysis, "model_validate", classmethod(counted_validate))
    monkeypatch.setattr(AttemptAnalysis, "__init__", counted_init)
    yield ids


def _pages(pdf: Path) -> list[str]:
    return [p.extract_text() for p in PdfReader(pdf).pages]


def test_the_report_makes_an_analysis_only_for_what_it_shows(
        analyzed: Analyzed, tmp_path: Path, made: list[str]) -> None:
    from casekit.report import build_report

    f = analyzed.findings
    by_id = {x.attempt_id: x for x in f.attempts}
    run_dir = tmp_path / "run"
    shutil.copytree(analyzed.run_dir, run_dir)
    alone = load_findings(run_dir, rows=False)
    assert alone.attempts == [] and alone.attempt_rows == f.attempt_rows
    paths = build_report(run_dir, alone, out_dir=tmp_path / "out")

    # Far fewer analyses than attempts: the attempts without spans that were made are the
    # sample's (5 per stratum), and one per model x work read to find its first span attempt.
    assert len(made) < len(f.attempts) / 2, len(made)
    strata = {(x.model_id, x.work_id, x.strategy_key, x.intent, x.outcome) for x in f.attempts}
    plain = {aid for aid in made if not by_id[aid].spans}
    assert len(plain) <= 5 * len(strata) + 2 * len(f.findings), len(plain)

    # The same pages as the report of the analyses held in memory (no table on disk: the
    # table is made from them), and the attachments of the analyses.
    other = tmp_path / "in-memory"
    shutil.copytree(analyzed.run_dir, other)
    (other / ATTEMPTS_NAME).unlink()
    ref = build_report(other, f, out_dir=tmp_path / "out-ref")
    assert ref.html.read_bytes() == paths.html.read_bytes()
    assert _pages(ref.pdf) == _pages(paths.pdf)
    table, csv, _ = table_files(f.attempts)
    att = read_attachments(paths.pdf)
    assert att[ATTEMPTS_ATTACHMENT] == table == (run_dir / ATTEMPTS_NAME).read_bytes()
    assert att[ATTEMPTS_CSV_ATTACHMENT] == csv
    assert read_attachments(ref.pdf)[ATTEMPTS_CSV_ATTACHMENT] == csv


def test_report_cli_re_analyzes_when_the_table_is_not_the_cited_one(
        analyzed: Analyzed, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(analyzed.run_dir, run_dir)
    f = analyzed.findings
    write_table(run_dir / ATTEMPTS_NAME, f.attempts[:100])
    r = subprocess.run([sys.executable, "-m", "casekit.cli", "report", str(run_dir)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "analyzing attempts" in r.stderr  # the analysis ran again and rewrote the table
    assert table_digest(run_dir / ATTEMPTS_NAME) == f.attempt_rows
    assert (run_dir / "report" / "report.pdf").is_file()


def test_verify_checks_the_attached_table_and_csv(analyzed: Analyzed, tmp_path: Path) -> None:
    from casekit.canonical import sha256_bytes
    from casekit.report.attachments import Extracted
    from casekit.report.verify import ReportVerification, _attempt_rows

    f = analyzed.findings
    table, csv, _ = table_files(f.attempts)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def check(att: dict[str, bytes]) -> tuple[bool, str, bytes | None]:
        # The CSV as verify extracts it: to a file, with its size and hash.
        data = att.pop(ATTEMPTS_CSV_ATTACHMENT)
        res = ReportVerification(pdf=tmp_path / "report.pdf")
        ok, made = _attempt_rows(res, att, Extracted(len(data), sha256_bytes(data)),
                                 f.attempt_rows, run_dir)
        return ok, res.checks[-1].detail, made.path.read_bytes() if made else None

    ok, detail, made = check({ATTEMPTS_ATTACHMENT: table, ATTEMPTS_CSV_ATTACHMENT: csv})
    assert ok and f"{len(f.attempts):,} rows" in detail, detail
    assert made == csv  # the CSV made from the table, which the re-rendered report attaches
    # The table stays where the re-rendered report reads it.
    assert (run_dir / ATTEMPTS_NAME).read_bytes() == table
    edited = csv.replace(b"no_match", b"no_mateh", 1)
    ok, detail, _ = check({ATTEMPTS_ATTACHMENT: table, ATTEMPTS_CSV_ATTACHMENT: edited})
    assert not ok and "is not the CSV of" in detail
    ok, detail, _ = check({ATTEMPTS_ATTACHMENT: table, ATTEMPTS_CSV_ATTACHMENT: csv + b"x"})
    assert not ok and "is not the CSV of" in detail
    fewer, _, _ = table_files(f.attempts[:-1])
    ok, detail, _ = check({ATTEMPTS_ATTACHMENT: fewer, ATTEMPTS_CSV_ATTACHMENT: csv})
    assert not ok and f"holds {len(f.attempts) - 1} rows" in detail


def test_a_table_checked_by_the_caller_reads_the_same_without_hashing(
        analyzed: Analyzed, tmp_path: Path) -> None:
    """casekit verify has just compared the table with the rows it recomputed: opened with
    ``checked`` it gives the same columns, and a content hash that is wrong is not noticed
    (what ``checked`` promises is the caller's check), while the row count still is."""
    f = analyzed.findings
    path = analyzed.run_dir / ATTEMPTS_NAME
    plain = AttemptTable(path, f.attempt_rows)
    checked = AttemptTable(path, f.attempt_rows, checked=True)
    assert checked.rows == plain.rows and checked.labels.keys() == plain.labels.keys()
    for n, lab in plain.labels.items():
        assert checked.labels[n].values == lab.values
        assert np.array_equal(checked.labels[n].codes, lab.codes)
    assert all(np.array_equal(checked.numbers[n], plain.numbers[n]) for n in plain.numbers)
    assert np.array_equal(checked.first_word, plain.first_word)
    assert np.array_equal(checked.has_spans, plain.has_spans)
    wrong = f.attempt_rows.model_copy(update={"sha256": "sha256:" + "0" * 64})
    with pytest.raises(TableError):
        AttemptTable(path, wrong)
    AttemptTable(path, wrong, checked=True)
    with pytest.raises(TableError):
        AttemptTable(path, wrong.model_copy(update={"rows": wrong.rows + 1}), checked=True)


def test_the_table_check_in_the_background_gives_the_facts_made_here(analyzed: Analyzed,
                                                                     tmp_path: Path) -> None:
    # casekit verify makes the table's digest and CSV in a process of its own beside its
    # analysis (casekit.report.tablecheck): the same facts as made in verify's process.
    from casekit.analysis.attempt_table import TableError
    from casekit.report.tablecheck import TableCheck, table_facts

    f = analyzed.findings
    table, csv, _ = table_files(f.attempts)
    path = tmp_path / ATTEMPTS_NAME
    path.write_bytes(table)
    here = table_facts(path)
    # In the background (a large table's way), and here when the result is asked for (a
    # table under BACKGROUND_MIN_BYTES, as this one is: no process is started for it).
    for background in (True, None):
        with TableCheck(path, background=background) as check:
            assert (check._proc is None) == (background is None)
            got = check.result()
        assert (got.rows, got.sha256) == (here.rows, here.sha256) == (f.attempt_rows.rows,
                                                                      f.attempt_rows.sha256)
        assert (got.csv.size, got.csv.sha256, got.csv.md5) == (here.csv.size, here.csv.sha256,
                                                               here.csv.md5)
        assert got.csv.path.read_bytes() == csv
    # A process that dies before answering: the facts are made here instead.
    with TableCheck(path, background=True) as check:
        check._proc.kill()
        got = check.result()
    assert (got.rows, got.sha256, got.csv.sha256) == (here.rows, here.sha256, here.csv.sha256)
    # A table that does not read is reported as such, as when checked here.
    path.write_bytes(table[: len(table) // 2])
    for background in (True, False):
        with TableCheck(path, background=background) as check, pytest.raises(TableError):
            check.result()
