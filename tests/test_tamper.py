"""Tampered ledgers and reports (issue 15, item 7): every way of rewriting the evidence that
recomputes the hash chain fails `casekit verify` with a one-line reason, because the chain is
anchored to the examiner's signing key (casekit.anchor).

Each attack is made as a forger would: with casekit's own hashing, recomputing every hash and
link after the change. Before anchoring, `casekit verify` said "ok" to all of them."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from casekit.anchor import SigningKey, load_or_create_key, statement
from casekit.canonical import canonical_json
from casekit.case import load_case
from casekit.cli import cli
from casekit.ledger import LEDGER_NAME, record_hash, verify_chain
from casekit.run.runner import Runner


def _verify(*args: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(cli, ["verify", *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    # Log lines (stderr, mixed in by the runner) are not verify's answer.
    return res.exit_code, [ln for ln in res.output.splitlines()
                           if not re.match(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ", ln)]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def rechain(records: list[dict[str, Any]], path: Path, *,
            sign_with: SigningKey | None = None) -> None:
    """Write ``records`` as a ledger whose chain verifies: seq, prev_hash and hash recomputed,
    every checkpoint pointed at the record before it (its signature kept, or made again with
    ``sign_with``: a forger's own key)."""
    out = []
    prev = None
    for i, rec in enumerate(records):
        rec = {k: v for k, v in rec.items() if k != "hash"}
        rec["seq"], rec["prev_hash"] = i, prev
        if rec.get("record_type") == "checkpoint":
            rec["covers_seq"], rec["head_hash"] = i - 1, prev
            if sign_with is not None:
                rec["key_fingerprint"] = sign_with.fingerprint
                rec["signature"] = sign_with.sign(statement(i - 1, str(prev), rec["final"]))
        if rec.get("record_type") == "run_start" and sign_with is not None:
            rec["examiner_key"] = sign_with.identity().model_dump()
        rec["hash"] = prev = record_hash(rec)
        out.append(canonical_json(rec))
    path.write_bytes(b"".join(line + b"\n" for line in out))
    assert verify_chain(path).ok, "the forgery's chain verifies"


@pytest.fixture
def run(case_dir: Path, tmp_path: Path) -> Path:
    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=5,
                 examiner_key=tmp_path / "keys" / "examiner.pem").run()
    assert out.complete
    return out.ledger_path


def _change_an_output(records: list[dict[str, Any]]) -> None:
    rec = next(r for r in records if r.get("record_type") == "attempt"
               and (r.get("result") or {}).get("text"))
    rec["result"]["text"] = "The model said nothing of the kind."


def _one_line_failure(code: int, lines: list[str], *phrases: str) -> str:
    assert code == 1, lines
    first = lines[0]
    assert first.startswith("NOT verified: "), lines
    for p in phrases:
        assert p in first, (p, first)
    return first


def test_the_genuine_run_verifies_and_names_its_key(run: Path, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "examiner.pem")
    code, lines = _verify(str(run.parent), "--expect-key", key.fingerprint)
    assert code == 0, lines
    assert lines[0].startswith("ok: anchored: records 0-") and key.fingerprint in lines[0]
    assert any(line.startswith("examiner key fingerprint: " + key.fingerprint)
               for line in lines)


def test_full_rewrite_with_recomputed_chain_fails(run: Path) -> None:
    recs = _records(run)
    _change_an_output(recs)
    rechain(recs, run)
    code, lines = _verify(str(run.parent))
    _one_line_failure(code, lines, "signature of the checkpoint", "does not verify")


def test_full_rewrite_without_the_anchor_fails(run: Path) -> None:
    """The forger drops the checkpoints and the key: the ledger is no longer anchored."""
    recs = [r for r in _records(run) if r.get("record_type") != "checkpoint"]
    recs[0].pop("examiner_key")
    _change_an_output(recs)
    rechain(recs, run)
    code, lines = _verify(str(run.parent))
    _one_line_failure(code, lines, "no examiner key")


@pytest.mark.parametrize("keep", [-1, -3, 7])
def test_truncation_at_a_line_boundary_fails(run: Path, keep: int) -> None:
    lines_ = run.read_bytes().splitlines(keepends=True)
    run.write_bytes(b"".join(lines_[:keep]))
    assert verify_chain(run).ok  # the chain alone cannot tell
    code, lines = _verify(str(run))
    _one_line_failure(code, lines, "without a closing checkpoint")


def test_deleted_run_end_fails(run: Path) -> None:
    recs = _records(run)
    assert recs[-2]["record_type"] == "run_end"
    del recs[-2]  # rechained: the closing checkpoint now names another head
    rechain(recs, run)
    code, lines = _verify(str(run))
    _one_line_failure(code, lines, "does not verify")
    # Removing the closing checkpoint with it: the ledger ends unanchored, and incomplete.
    del recs[-1]
    rechain(recs, run)
    code, lines = _verify(str(run))
    _one_line_failure(code, lines, "without a closing checkpoint")
    assert any("incomplete run" in line for line in lines)


def test_empty_ledger_is_not_verified(tmp_path: Path) -> None:
    (tmp_path / LEDGER_NAME).write_bytes(b"")
    code, lines = _verify(str(tmp_path))
    _one_line_failure(code, lines, "empty")


def test_a_forger_signing_with_his_own_key_is_caught_by_the_fingerprint(
        run: Path, tmp_path: Path) -> None:
    examiner = load_or_create_key(tmp_path / "keys" / "examiner.pem")
    forger = load_or_create_key(tmp_path / "forger" / "key.pem")
    recs = _records(run)
    _change_an_output(recs)
    rechain(recs, run, sign_with=forger)
    code, lines = _verify(str(run))
    assert code == 0 and forger.fingerprint in lines[0]  # valid, but under another name
    assert examiner.fingerprint not in "\n".join(lines)
    code, lines = _verify(str(run), "--expect-key", examiner.fingerprint)
    _one_line_failure(code, lines, forger.fingerprint, "not by the examiner key")


def test_a_malformed_expected_key_is_exit_2(run: Path) -> None:
    code, lines = _verify(str(run), "--expect-key", "abc")
    assert code == 2 and "64 hex" in lines[-1]


def test_signature_bytes_are_checked_not_just_present(run: Path) -> None:
    recs = _records(run)
    cp = next(r for r in recs if r.get("record_type") == "checkpoint")
    sig = bytearray(base64.b64decode(cp["signature"]))
    sig[0] ^= 1
    cp["signature"] = base64.b64encode(bytes(sig)).decode()
    rechain(recs, run)
    code, lines = _verify(str(run))
    _one_line_failure(code, lines, f"checkpoint at record {cp['seq']}")


# --------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.test_report import build_fixture

    return build_fixture(tmp_path_factory.mktemp("tamper"))


def _forge_report(fx: Any, root: Path, recs: list[dict[str, Any]],
                  sign_with: SigningKey | None = None) -> Path:
    """The forger's report: the rewritten ledger, rechained, analyzed and rendered again."""
    import shutil

    from casekit.analysis.analyze import analyze_run
    from casekit.report import build_report

    run_dir = root / "run"
    shutil.copytree(fx.run_dir, run_dir)
    rechain(recs, run_dir / LEDGER_NAME, sign_with=sign_with)
    findings = analyze_run(run_dir, fx.case_path)
    return build_report(run_dir, findings, case_path=fx.case_path, out_dir=root / "out").pdf


def test_a_forged_and_rechained_ledger_with_a_rerendered_report_fails(
        report: Any, tmp_path: Path) -> None:
    recs = _records(report.run_dir / LEDGER_NAME)
    _change_an_output(recs)
    pdf = _forge_report(report, tmp_path, recs)
    code, lines = _verify(str(pdf), "--works", str(report.case_path.parent))
    assert code == 1, lines
    # The anchor is the first line, and the one check that fails: the rest was recomputed.
    assert lines[0].startswith("FAILED anchor: the signature of the checkpoint"), lines
    assert sum(1 for line in lines if line.startswith("FAILED")) == 1


def test_a_report_signed_by_another_key_fails_with_the_disclosed_fingerprint(
        report: Any, tmp_path: Path) -> None:
    from casekit.report.verify import verify_report

    examiner = load_or_create_key()
    forger = load_or_create_key(tmp_path / "forger.pem")
    recs = _records(report.run_dir / LEDGER_NAME)
    _change_an_output(recs)
    pdf = _forge_report(report, tmp_path, recs, sign_with=forger)
    res = verify_report(pdf, report.case_path.parent, compare_pages=False,
                        expect_key=examiner.fingerprint)
    assert not res.ok and res.checks[0].name == "anchor" and not res.checks[0].ok
    assert "not by the examiner key" in res.checks[0].detail
    assert [c.name for c in res.checks if not c.ok] == ["anchor"]


# --------------------------------------------------------------------------- imported records


def _import(run: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    from tests.test_import import ROWS, write_csv

    src = write_csv(tmp_path / "captured.csv", [*ROWS[1:]] * 3 + [
        {**ROWS[1], "output": f"another answer {i}"} for i in range(4)])
    res = CliRunner().invoke(cli, ["import", str(run.parent), str(src), *extra])
    return res.exit_code, res.output


def test_imported_records_are_anchored_by_the_examiner_key(run: Path, tmp_path: Path) -> None:
    """`casekit import --examiner-key` signs the imported records' checkpoints with the key that
    signed the run (every --checkpoint-every records and a closing one), as `casekit run` does;
    the anchor then reaches the imported records (issue 15 item 1, for imports)."""
    key = load_or_create_key(tmp_path / "keys" / "examiner.pem")
    before = len(_records(run))
    code, out = _import(run, tmp_path, "--examiner-key", str(key.path),
                        "--checkpoint-every", "3")
    assert code == 0, out
    recs = _records(run)
    added = recs[before:]
    assert sum(r["record_type"] == "attempt" for r in added) >= 6
    cps = [r for r in added if r["record_type"] == "checkpoint"]
    assert len(cps) >= 3 and cps[-1] is added[-1] and cps[-1]["final"]
    assert {c["key_fingerprint"] for c in cps} == {key.fingerprint}
    code, lines = _verify(str(run), "--expect-key", key.fingerprint)
    assert code == 0, lines
    assert lines[0].startswith(f"ok: anchored: records 0-{len(recs) - 2} of {len(recs)}")


def test_a_forged_and_rechained_import_fails_verify(run: Path, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "examiner.pem")
    code, out = _import(run, tmp_path, "--examiner-key", str(key.path))
    assert code == 0, out
    recs = _records(run)
    imported = next(r for r in recs if r.get("record_type") == "attempt"
                    and "imported" in (r["result"].get("raw_response") or {}))
    imported["result"]["text"] = "A forged capture."
    rechain(recs, run)
    code, lines = _verify(str(run))
    _one_line_failure(code, lines, "signature of the checkpoint", "does not verify")


def test_import_with_another_key_than_the_runs_is_refused(run: Path, tmp_path: Path) -> None:
    code, out = _import(run, tmp_path, "--examiner-key", str(tmp_path / "other.pem"))
    assert code == 2 and "signed by the examiner key" in out and "--examiner-key" in out, out


def test_an_evidence_only_import_is_anchored_from_its_start(tmp_path: Path) -> None:
    """An evidence-only case's run is begun by `casekit import --examiner-key`: its run_start
    names that key, every record is covered, and a rechained forgery fails."""
    from tests.conftest import CONTROL, SUBJECT
    from tests.test_import import ROWS, write_csv
    from tests.test_import_kinds import EVIDENCE_CASE

    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "control.txt").write_text(CONTROL)
    (tmp_path / "case.yaml").write_text(EVIDENCE_CASE)
    key = load_or_create_key(tmp_path / "keys" / "examiner.pem")
    src = write_csv(tmp_path / "captured.csv", ROWS[1:])
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "case.yaml"), str(src),
                                   "--examiner-key", str(key.path)])
    assert res.exit_code == 0, res.output
    (ledger,) = tmp_path.rglob(LEDGER_NAME)
    recs = _records(ledger)
    assert recs[0]["examiner_key"]["fingerprint"] == key.fingerprint
    code, lines = _verify(str(ledger), "--expect-key", key.fingerprint)
    assert code == 0, lines
    _change_an_output(recs)
    rechain(recs, ledger)
    code, lines = _verify(str(ledger))
    _one_line_failure(code, lines, "does not verify")
