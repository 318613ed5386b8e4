"""Per-attempt analysis in worker processes: the same bytes with any number of workers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from casekit.analysis import parallel
from casekit.analysis.analyze import Analyzer, analyze_run, findings_bytes, write_findings
from casekit.analysis.attempt_table import ATTEMPTS_NAME
from casekit.errors import CasekitError
from tests.golden.make_golden import DEMO

pytestmark = pytest.mark.slow


def _run(tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir(parents=True)
    (run / "ledger.jsonl").write_bytes((DEMO / "ledger.jsonl").read_bytes())
    return run


@pytest.mark.parametrize("workers", [2, 3])
def test_findings_and_table_are_the_same_bytes_with_n_workers(tmp_path: Path, workers: int,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture,
                                                              ) -> None:
    # Small batches: 186 attempts make many tasks, finished out of order across workers; and
    # the model x work aggregates shared out between processes whatever the run's size.
    monkeypatch.setattr(parallel, "BATCH", 5)
    monkeypatch.setattr(parallel, "BATCH_MAX", 5)
    monkeypatch.setattr(parallel, "SPLIT_MIN_WEIGHT", 0)
    caplog.set_level(logging.INFO, logger=parallel.__name__)
    one = _run(tmp_path / "one")
    f1 = analyze_run(one, DEMO / "case.yaml", table=one / ATTEMPTS_NAME, workers=1)
    many = _run(tmp_path / "many")
    fn = analyze_run(many, DEMO / "case.yaml", table=many / ATTEMPTS_NAME, workers=workers)
    assert findings_bytes(fn) == findings_bytes(f1) == (DEMO / "findings.json").read_bytes()
    assert (many / ATTEMPTS_NAME).read_bytes() == (one / ATTEMPTS_NAME).read_bytes()
    assert fn.attempts == f1.attempts
    assert f"the findings of each model x work computed in {workers} processes" in caplog.text
    # The name-cloze measure's state (gold answers) crossed from the workers: its accuracy
    # is a finding, not an empty value.
    from casekit.strategies.name_cloze import ClozeFinding

    cloze = [c.name_cloze for f in fn.findings if (c := f.measure(ClozeFinding)) is not None]
    assert any(c is not None for c in cloze)


def test_a_worker_that_dies_stops_the_analysis_with_one_line(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             ) -> None:
    real = Analyzer.attempt

    def dying(self: Analyzer, rec, hint=None):  # type: ignore[no-untyped-def]
        if rec.seq == 60:
            os._exit(7)  # a worker killed mid-task (the OOM killer, say)
        return real(self, rec, hint)

    monkeypatch.setattr(Analyzer, "attempt", dying)
    run = _run(tmp_path)
    with pytest.raises(CasekitError) as info:
        analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME, workers=2)
    msg = str(info.value)
    assert "\n" not in msg and "exit code 7" in msg and "--workers 1" in msg
    assert "lines " in msg and "nothing was written" in msg
    assert sorted(p.name for p in run.iterdir()) == ["ledger.jsonl"]


def test_a_worker_error_names_the_ledger_line(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = Analyzer.attempt

    def failing(self: Analyzer, rec, hint=None):  # type: ignore[no-untyped-def]
        if rec.seq == 77:
            raise ValueError("a record the analysis cannot take")
        return real(self, rec, hint)

    monkeypatch.setattr(Analyzer, "attempt", failing)
    run = _run(tmp_path)
    with pytest.raises(CasekitError, match=r"line 78: analyzing this attempt failed "
                       r"\(ValueError: a record the analysis cannot take\)"):
        analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME, workers=2)
    assert not (run / ATTEMPTS_NAME).exists()


def test_analyze_cli_takes_workers_and_refuses_zero(tmp_path: Path) -> None:
    run = _run(tmp_path)
    r = subprocess.run([sys.executable, "-m", "casekit.cli", "-q", "analyze", str(run),
                        "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr


def _tampered(tmp: Path, how: str) -> Path:
    """The demo run with one attempt line damaged: ``edit`` (content changed, hash stale),
    ``drop`` (a line removed: the next one's prev_hash no longer links), ``torn`` (the ledger
    ends in half a line)."""
    import orjson

    run = _run(tmp / how)
    lines = (run / "ledger.jsonl").read_bytes().split(b"\n")[:-1]
    i = next(n for n, line in enumerate(lines)
             if n > 150 and orjson.loads(line)["record_type"] == "attempt")
    if how == "edit":
        lines[i] = lines[i].replace(b'"sample":0', b'"sample":9', 1)
    elif how == "drop":
        del lines[i]
    body = b"\n".join(lines) + b"\n"
    if how == "torn":
        body += lines[i][:40]
    (run / "ledger.jsonl").write_bytes(body)
    return run


@pytest.mark.parametrize("how", ["edit", "drop", "torn"])
def test_workers_refuse_a_damaged_ledger_at_the_same_line_as_one_process(
        tmp_path: Path, how: str) -> None:
    # The workers check the lines and the parent makes the in-order checks: the first
    # problem is named with the same words whatever the worker count, and nothing is written.
    from casekit.ledger import ChainBroken

    run = _tampered(tmp_path, how)
    errors = []
    for workers in (1, 2):
        with pytest.raises(ChainBroken) as info:
            analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME, workers=workers)
        errors.append((str(info.value), info.value.records, info.value.head_hash,
                       info.value.torn_tail))
        assert not (run / ATTEMPTS_NAME).exists()
    assert errors[0] == errors[1]
    import gc

    assert gc.isenabled()  # paused during the analysis only, failed or not
    assert {"edit": "hash mismatch", "drop": "prev_hash", "torn": "torn last line"}[how] \
        in errors[0][0]


def test_aggregates_are_shared_out_by_weight_the_same_way_every_time() -> None:
    # Heaviest first, each to the lightest group: a function of the weights alone.
    assert parallel._groups([5, 500, 7, 480], 2) == [[1], [0, 2, 3]]
    assert parallel._groups([1, 1, 1], 2) == [[0, 2], [1]]
    assert parallel._groups([3], 4) == [[0]]


@pytest.mark.parametrize("how", ["dies", "raises"])
def test_an_aggregate_process_that_fails_stops_the_analysis_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    parent = os.getpid()
    real = Analyzer.model_work

    def failing(self: Analyzer, model_id: str, work_id: str, mine):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            if how == "dies":
                os._exit(9)
            raise ValueError("a finding the analysis cannot make")
        return real(self, model_id, work_id, mine)

    monkeypatch.setattr(parallel, "SPLIT_MIN_WEIGHT", 0)
    monkeypatch.setattr(Analyzer, "model_work", failing)
    run = _run(tmp_path)
    with pytest.raises(CasekitError) as info:
        analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME, workers=2)
    msg = str(info.value)
    assert "\n" not in msg and "the findings of each model x work" in msg
    assert "nothing was written" in msg
    assert ("exit code 9" in msg and "--workers 1" in msg if how == "dies"
            else "ValueError: a finding the analysis cannot make" in msg)
    assert sorted(p.name for p in run.iterdir()) == ["ledger.jsonl"]


def test_a_command_ends_with_its_output_and_files_whole(tmp_path: Path) -> None:
    # `casekit` ends without the interpreter's teardown (casekit.cli.main): what it printed
    # to a pipe and the files it wrote are all there, with its exit status.
    run = _run(tmp_path)
    write_findings(run, analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME),
                   table_written=True)
    root = Path(__file__).resolve().parents[1]  # this checkout's casekit, not an installed one
    r = subprocess.run([sys.executable, "-m", "casekit.cli", "export", str(run), "--csv"],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    csv_file = run / "attempts.csv"
    assert r.stdout == f"186 rows: {csv_file}\n"
    assert csv_file.read_text(encoding="utf-8").count("\n") > 186
    bad = subprocess.run([sys.executable, "-m", "casekit.cli", "export", str(tmp_path / "no"),
                          "--csv"], capture_output=True, text=True, cwd=root)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stdout == ""


def test_the_analysis_hands_its_objects_to_the_oldest_generation(tmp_path: Path) -> None:
    # The collector is paused while the analysis runs: afterwards the attempts' analyses are
    # not left in the youngest generation (the next collection would walk them all), nothing
    # stays frozen, and a cycle that became garbage meanwhile is still collected.
    import gc
    import weakref

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a
    freed: list[bool] = []
    weakref.finalize(a, freed.append, True)
    gc.disable()  # the cycle becomes garbage in the youngest generation, as in a caller
    del a, b
    try:
        f = analyze_run(_run(tmp_path), DEMO / "case.yaml", workers=1)
    finally:
        gc.enable()
    assert gc.get_freeze_count() == 0
    x = f.attempts[-1]
    assert not any(o is x for o in gc.get_objects(generation=0))
    assert any(o is x for o in gc.get_objects(generation=2))
    gc.collect()
    assert freed == [True]


def test_the_command_waits_for_a_thread_still_writing(tmp_path: Path) -> None:
    # The teardown is skipped only when no thread the interpreter would wait for is alive:
    # a non-daemon thread still writing gets to finish, and the status is kept.
    out = tmp_path / "late.txt"
    code = ("import threading, time\n"
            "from casekit.cli import _hard_exit\n"
            "def late():\n"
            "    time.sleep(0.3)\n"
            f"    open({str(out)!r}, 'w').write('written')\n"
            "threading.Thread(target=late).start()\n"
            "_hard_exit(3)\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert r.returncode == 3, r.stderr
    assert out.read_text() == "written"


def test_the_batch_test_of_outputs_changes_no_analysis() -> None:
    """Analyzer.seed_hints (a batch's outputs tested against their works together, the
    searches skipped where it clears an output) gives the analyses and the coverage and BMC
    masks of the attempt-by-attempt analysis."""
    from casekit.analysis.analyze import _analyzer_for
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord, RunStart

    recs = read_records(DEMO / "ledger.jsonl")
    start = next(r for r in recs if isinstance(r, RunStart))
    attempts = [r for r in recs if isinstance(r, AttemptRecord)]
    plain = _analyzer_for(DEMO, start, DEMO / "case.yaml")
    hinted = _analyzer_for(DEMO, start, DEMO / "case.yaml")
    hints = []
    for i in range(0, len(attempts), 7):
        hints += hinted.seed_hints(attempts[i:i + 7])
    # The demo has outputs of each kind: cleared (searches skipped), flagged, and none to
    # test (score attempts, failures).
    assert any(h is not None and not h.match_may and not h.liu_may for h in hints)
    assert any(h is not None and h.match_may for h in hints)
    assert any(h is None for h in hints)
    assert [hinted.attempt(r, h) for r, h in zip(attempts, hints, strict=True)] == [
        plain.attempt(r) for r in attempts]
    for mine, theirs in ((hinted.cover, plain.cover), (hinted.bmc_masks, plain.bmc_masks)):
        assert mine.keys() == theirs.keys()
        assert all((mine[key] == theirs[key]).all() for key in mine)


def test_tasks_are_large_in_the_ledger_and_shrink_toward_its_end(tmp_path: Path) -> None:
    """The pool's task sizes: BATCH first (nothing read yet to estimate from), then about the
    lines left over twice the workers, between BATCH and BATCH_MAX."""
    ledger = tmp_path / "ledger.jsonl"
    line = b"x" * 99
    ledger.write_bytes((line + b"\n") * 100_000)  # 10 MB, 100,000 lines of 100 bytes
    pool = parallel.AttemptPool.__new__(parallel.AttemptPool)
    pool.workers, pool._lines, pool._bytes, pool._total = 2, 0, 0, ledger.stat().st_size
    assert pool._batch_size() == parallel.BATCH
    pool._lines, pool._bytes = 10, 1_000
    assert pool._batch_size() == parallel.BATCH_MAX  # 99,990 lines left
    pool._lines, pool._bytes = 97_000, 9_700_000  # 3,000 left: 750 a task
    assert pool._batch_size() == 750
    pool._lines, pool._bytes = 99_900, 9_990_000  # 100 left: never below BATCH
    assert pool._batch_size() == parallel.BATCH
    pool._lines, pool._bytes = 120_000, 12_000_000  # the ledger grew while it was read
    assert pool._batch_size() == parallel.BATCH


@pytest.mark.parametrize("workers", [1, 2])
def test_the_analysis_goes_on_without_the_batch_test_should_it_fail(
        tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The batch test only spares work: should it raise, each attempt is analyzed on its own
    (had the error reached the analysis, it would have stopped with an error instead)."""
    def broken(self: Analyzer, recs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the batch test")

    monkeypatch.setattr(Analyzer, "seed_hints", broken)
    caplog.set_level(logging.WARNING, logger=parallel.__name__)
    run = _run(tmp_path)
    got = analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME, workers=workers)
    assert findings_bytes(got) == (DEMO / "findings.json").read_bytes()
    if workers == 1:  # a worker's log is its own process's
        assert ("testing a batch's outputs together failed (RuntimeError: a bug in the batch "
                "test); analyzing them one by one") in caplog.text
