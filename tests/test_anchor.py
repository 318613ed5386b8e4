"""Anchoring (casekit.anchor): the examiner key signs checkpoints of the chain head as the run
writes its ledger; `casekit verify` says what the ledger proves."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from casekit.anchor import (
    Anchor,
    AnchorError,
    anchoring_of_verified,
    load_or_create_key,
    statement,
    verify_anchoring,
)
from casekit.case import load_case
from casekit.errors import LedgerError
from casekit.ledger import LEDGER_NAME, Ledger, read_records, verify_chain
from casekit.records import AttemptRecord, Checkpoint, Note, RunEnd, RunStart
from casekit.run.runner import Runner


def _key(tmp_path: Path, name: str = "examiner.pem") -> Path:
    return tmp_path / "keys" / name


def test_the_key_is_made_once_with_mode_0600_outside_the_run(tmp_path: Path) -> None:
    path = _key(tmp_path)
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_key(path)
    assert again.public_raw == key.public_raw and key.fingerprint.startswith("sha256:")
    path.chmod(0o644)
    with pytest.raises(AnchorError, match="chmod 600"):
        load_or_create_key(path)


def test_the_default_key_lives_under_casekit_home(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CASEKIT_EXAMINER_KEY", raising=False)
    key = load_or_create_key()
    assert key.path == tmp_path / "home" / "examiner_ed25519.pem"
    monkeypatch.setenv("CASEKIT_EXAMINER_KEY", str(tmp_path / "other.pem"))
    assert load_or_create_key().path == tmp_path / "other.pem"


def test_a_run_is_signed_every_n_records_and_at_its_end(case_dir: Path, tmp_path: Path) -> None:
    key = load_or_create_key(_key(tmp_path))
    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=4,
                 examiner_key=key.path).run()
    recs = read_records(out.ledger_path)
    start = recs[0]
    assert isinstance(start, RunStart) and start.examiner_key is not None
    assert start.examiner_key.fingerprint == key.fingerprint
    assert base64.b64decode(start.examiner_key.public_key) == key.public_raw
    cps = [r for r in recs if isinstance(r, Checkpoint)]
    # Every 4 records a checkpoint, and a closing one after the run_end.
    others = 0
    for r in recs:
        if isinstance(r, Checkpoint):
            assert others == 4 or r is recs[-1], "a checkpoint every 4 records"
            others = 0
        else:
            others += 1
    assert isinstance(recs[-2], RunEnd) and recs[-1] is cps[-1] and cps[-1].final
    assert not any(c.final for c in cps[:-1])
    pub = key.private.public_key()
    by_seq = {r.seq: r for r in recs}
    for c in cps:
        assert c.covers_seq == c.seq - 1 and c.head_hash == by_seq[c.seq - 1].hash
        pub.verify(base64.b64decode(c.signature), statement(c.covers_seq, c.head_hash, c.final))
    rep = verify_anchoring(out.ledger_path)
    assert rep.ok, rep.problems
    assert rep.anchored_to == len(recs) - 2 and rep.key is not None
    assert rep.summary().startswith("anchored: records 0-")
    assert key.fingerprint in rep.summary()
    # The same pass re-derives the chain: what verify_chain says, without a second pass.
    assert rep.chain == verify_chain(out.ledger_path)
    # From what the report's verifying pass keeps (no attempt record), the same report; also
    # for a ledger cut after a checkpoint that does not close it (unanchored tail).
    from casekit.report.ledger_facts import read_ledger_facts

    cut = tmp_path / "cut" / LEDGER_NAME
    cut.parent.mkdir()
    cut.write_bytes(b"".join(out.ledger_path.read_bytes().splitlines(keepends=True)[:11]))
    for path in (out.ledger_path, cut):
        facts, _ = read_ledger_facts(path)
        assert not any(isinstance(r, AttemptRecord) for r in facts.run_records)
        again = anchoring_of_verified(path, facts.run_records, facts.records, facts.head_hash)
        assert again == verify_anchoring(path)
    assert not verify_anchoring(cut).ok and "without a closing checkpoint" in \
        verify_anchoring(cut).summary() + " ".join(verify_anchoring(cut).problems)
    lines = out.ledger_path.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"seq":5', b'"seq":55')
    out.ledger_path.write_bytes(b"".join(lines))
    broken = verify_anchoring(out.ledger_path)
    assert broken.chain == verify_chain(out.ledger_path)
    assert broken.chain is not None and not broken.chain.ok and broken.chain.records == 5


def test_resume_continues_the_checkpoint_schedule(case_dir: Path, tmp_path: Path) -> None:
    key = load_or_create_key(_key(tmp_path))
    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=4,
                 examiner_key=key.path).run()
    lines = out.ledger_path.read_bytes().splitlines(keepends=True)
    # Killed after 6 records past the first checkpoint (seq 4): they are an unanchored tail.
    out.ledger_path.write_bytes(b"".join(lines[:11]))
    rep = verify_anchoring(out.ledger_path)
    assert not rep.ok and "unanchored" in rep.reason
    again = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=4,
                   examiner_key=key.path).run()
    assert again.complete
    recs = read_records(out.ledger_path)
    since = 0
    for r in recs:
        if isinstance(r, Checkpoint):
            assert since <= 4 and (since == 4 or r.final)
            since = 0
        else:
            since += 1
    assert verify_anchoring(out.ledger_path).ok


def test_resume_with_another_key_is_refused(case_dir: Path, tmp_path: Path) -> None:
    out = Runner(load_case(case_dir / "case.yaml"), examiner_key=_key(tmp_path)).run()
    before = out.ledger_path.read_bytes()
    with pytest.raises(LedgerError, match="--examiner-key"):
        Runner(load_case(case_dir / "case.yaml"), examiner_key=_key(tmp_path, "b.pem")).run()
    assert out.ledger_path.read_bytes() == before


def test_a_key_in_the_run_folder_is_refused(case_dir: Path) -> None:
    case = load_case(case_dir / "case.yaml")
    run_dir = case_dir / "runs" / "r"
    with pytest.raises(AnchorError, match="inside the run folder"):
        Runner(case, run_dir, examiner_key=run_dir / "k.pem").run()


def test_an_older_ledger_names_the_key_in_a_note_before_its_first_checkpoint(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    with Ledger(run) as led:  # a ledger written without an anchor (casekit before anchoring)
        led.append_note("warning", "old")
    assert verify_chain(run / LEDGER_NAME).ok
    key = load_or_create_key(_key(tmp_path))
    with Ledger(run, anchor=Anchor(key)) as led:
        led.append_note("resume", "new")
    recs = read_records(run / LEDGER_NAME)
    assert [type(r).__name__ for r in recs] == ["Note", "Note", "Note", "Checkpoint"]
    assert isinstance(recs[2], Note) and recs[2].kind == "examiner_key"
    assert recs[2].data["fingerprint"] == key.fingerprint
    rep = verify_anchoring(run / LEDGER_NAME)
    assert rep.anchored_to == 2 and rep.key is not None  # anchored; no run_end: incomplete
    assert [p.split(":")[0] for p in rep.problems] == ["incomplete run"]


def test_analysis_ignores_checkpoints(case_dir: Path, tmp_path: Path) -> None:
    from casekit.analysis.analyze import analyze_run

    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=3,
                 examiner_key=_key(tmp_path)).run()
    recs = read_records(out.ledger_path)
    f1 = analyze_run(out.run_dir, workers=1)
    f2 = analyze_run(out.run_dir, workers=2)
    n = sum(1 for r in recs if isinstance(r, AttemptRecord))
    assert len(f1.attempts) == len(f2.attempts) == n
    assert f1.ledger_head_hash == recs[-1].hash and f1.ledger_records == len(recs)


def test_key_file_is_never_world_readable_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = load_or_create_key(_key(tmp_path)).path
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("url, said", [
    ("ftp://tsa.example.com/", "must be an http:// or https:// URL (scheme here: ftp)"),
    ("https://u:secret@tsa.example.com/tsr", "must not hold a user name or password"),
])
def test_a_bad_tsa_url_on_the_command_line_is_refused_before_the_run(
        case_dir: Path, tmp_path: Path, url: str, said: str) -> None:
    from click.testing import CliRunner

    from casekit.cli import cli

    res = CliRunner().invoke(cli, ["run", str(case_dir / "case.yaml"), "--tsa", url,
                                   "--examiner-key", str(_key(tmp_path))])
    assert res.exit_code == 2 and f"error: --tsa: {said}" in res.output, res.output
    assert "secret" not in res.output
    assert not list(case_dir.rglob(LEDGER_NAME))


@pytest.mark.parametrize(("url", "said"), [
    ("ftp://tsa.example/tsr", "must be an http:// or https:// URL"),
    ("https://user:secret@tsa.example/tsr", "must not hold a user name or password"),
])
def test_a_bad_tsa_url_is_refused_before_the_report_is_rendered(
        tmp_path: Path, url: str, said: str) -> None:
    """`casekit report --tsa` checks the address as run and import do, before any rendering
    (it used to render the whole report, then fail to reach an ftp:// authority)."""
    from click.testing import CliRunner

    from casekit.cli import cli

    run_dir = tmp_path / "no-such-run"
    run_dir.mkdir()
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--tsa", url])
    assert res.exit_code == 2 and f"error: --tsa: {said}" in res.output, res.output
    assert "secret" not in res.output
    assert list(run_dir.iterdir()) == []
