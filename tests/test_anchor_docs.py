# ruff: noqa: F811 - pytest fixtures imported from tests.test_report_sign are parameters
"""docs/anchoring.md's promises, checked: the standalone script (cryptography + stdlib) verifies
a casekit ledger's anchor and rejects forgeries; checkpoints are timestamped during the run by a
TSA, and `openssl ts` accepts those tokens; casekit verify reports the TSA."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from casekit.anchor import load_or_create_key, verify_anchoring
from casekit.case import load_case
from casekit.ledger import read_records
from casekit.records import Checkpoint
from casekit.run.runner import Runner
from tests.test_tamper import _change_an_output, _records, rechain

pytest.importorskip("rfc3161_client")
pytest.importorskip("pyhanko")

from tests.test_report_sign import Pki, pki, tsa  # noqa: E402, F401 - the local TSA fixtures

DOC = Path(__file__).resolve().parents[1] / "docs" / "anchoring.md"


def _script(tmp_path: Path) -> Path:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Checking without casekit"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    path = tmp_path / "check_anchor.py"
    path.write_text(code.group(1), encoding="utf-8")
    return path


def _check(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated, so nothing of casekit is importable from the working directory.
    return subprocess.run([sys.executable, "-I", str(script), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def stamped_run(case_dir: Path, tmp_path: Path, tsa: str) -> Path:
    from casekit.cli import _timestamper

    out = Runner(load_case(case_dir / "case.yaml"), checkpoint_every=5,
                 examiner_key=tmp_path / "keys" / "k.pem", tsa_url=tsa,
                 timestamper=_timestamper(tsa)).run()
    assert out.complete
    return out.ledger_path


def test_checkpoints_are_timestamped_during_the_run(stamped_run: Path, pki: Pki) -> None:
    from casekit.report.verify import anchor_check

    cps = [r for r in read_records(stamped_run) if isinstance(r, Checkpoint)]
    assert len(cps) >= 3 and all(c.timestamp and c.tsa for c in cps)
    rep = anchor_check(stamped_run, None, [pki.root_pem])
    assert rep.ok, rep.problems
    assert rep.timestamped == len(cps) and rep.tsa_trusted
    assert "timestamped by http://127.0.0.1" in rep.summary() and "TSA trusted" in rep.summary()
    other = anchor_check(stamped_run, None, [pki.other_root_pem])
    assert not other.ok and "timestamp of the checkpoint" in other.reason


def test_a_failing_tsa_does_not_stop_the_run(case_dir: Path, tmp_path: Path, tsa: str) -> None:
    from casekit.cli import _timestamper

    url = tsa + "/broken"
    out = Runner(load_case(case_dir / "case.yaml"), examiner_key=tmp_path / "k.pem",
                 tsa_url=url, timestamper=_timestamper(url)).run()
    assert out.complete
    cp = [r for r in read_records(out.ledger_path) if isinstance(r, Checkpoint)][-1]
    assert cp.timestamp is None and cp.timestamp_error and "HTTP 500" in cp.timestamp_error
    assert verify_anchoring(out.ledger_path).ok  # still signed


def test_the_documented_script_checks_a_ledger_without_casekit(
        stamped_run: Path, tmp_path: Path, pki: Pki) -> None:
    script = _script(tmp_path)
    key = load_or_create_key(tmp_path / "keys" / "k.pem")
    ok = _check(script, str(stamped_run), key.fingerprint, "--export", str(tmp_path / "ts"))
    assert ok.returncode == 0 and ok.stdout.startswith("OK: records 0-"), ok.stderr
    n = len(stamped_run.read_bytes().splitlines())
    assert ok.stdout.strip().endswith(f"of {n} signed by {key.fingerprint}")
    # openssl ts accepts every exported token over its statement, against the TSA's root.
    tokens = sorted((tmp_path / "ts").glob("checkpoint-*.tsr"))
    assert tokens
    if shutil.which("openssl"):
        for tsr in tokens:
            res = subprocess.run(["openssl", "ts", "-verify", "-data",
                                  str(tsr.with_suffix(".bin")), "-in", str(tsr), "-CAfile",
                                  str(pki.root_pem)], capture_output=True, text=True,
                                 timeout=60)
            assert "Verification: OK" in res.stdout, res.stdout + res.stderr

    # Another fingerprint, a rewrite, a truncation: each fails.
    bad = _check(script, str(stamped_run), "sha256:" + "0" * 64)
    assert bad.returncode == 1 and "not by sha256:000" in bad.stderr
    recs = _records(stamped_run)
    _change_an_output(recs)
    forged = tmp_path / "forged.jsonl"
    rechain(recs, forged)
    res = _check(script, str(forged), key.fingerprint)
    assert res.returncode == 1 and "signature does not verify" in res.stderr
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(stamped_run.read_bytes().splitlines(keepends=True)[:-1]))
    res = _check(script, str(cut), key.fingerprint)
    assert res.returncode == 1 and "after the last checkpoint" in res.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert _check(script, str(empty), key.fingerprint).returncode == 1


def test_the_statement_the_script_rebuilds_is_the_one_casekit_signs() -> None:
    from casekit.anchor import statement

    mine = json.dumps({"casekit": "casekit-checkpoint/1", "seq": 7, "head_hash": "sha256:ab",
                       "final": False}, sort_keys=True, separators=(",", ":")).encode()
    assert statement(7, "sha256:ab", False) == mine


def test_a_tsa_in_the_case_timestamps_checkpoints_during_the_run(
        case_dir: Path, tmp_path: Path, tsa: str, pki: Pki) -> None:
    """``anchoring: {tsa: URL}`` in the case does what ``--tsa`` does: every checkpoint carries
    a token obtained during the run (issue 15 item 1: "--tsa or in the case"); the command line
    runs it, no timestamper given."""
    from click.testing import CliRunner

    from casekit.cli import cli
    from casekit.report.verify import anchor_check

    case = case_dir / "case.yaml"
    case.write_text(case.read_text() + f"anchoring:\n  tsa: {tsa}\n")
    res = CliRunner().invoke(cli, ["run", str(case), "--examiner-key",
                                   str(tmp_path / "keys" / "k.pem"), "--checkpoint-every", "5",
                                   "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    ledger = tmp_path / "run" / "ledger.jsonl"
    cps = [r for r in read_records(ledger) if isinstance(r, Checkpoint)]
    assert len(cps) >= 3 and all(c.timestamp and c.tsa == tsa for c in cps)
    rep = anchor_check(ledger, None, [pki.root_pem])
    assert rep.ok and rep.timestamped == len(cps) and rep.tsa_trusted, rep.problems


def test_a_failing_tsa_in_the_case_is_recorded_and_the_run_goes_on(
        case_dir: Path, tmp_path: Path, tsa: str) -> None:
    case = case_dir / "case.yaml"
    case.write_text(case.read_text() + f"anchoring: {{tsa: '{tsa}/broken'}}\n")
    out = Runner(load_case(case), examiner_key=tmp_path / "k.pem").run()
    assert out.complete
    cp = [r for r in read_records(out.ledger_path) if isinstance(r, Checkpoint)][-1]
    assert cp.timestamp is None and cp.timestamp_error and "HTTP 500" in cp.timestamp_error
    assert verify_anchoring(out.ledger_path).ok


def test_a_case_without_anchoring_keeps_its_hash(case_dir: Path) -> None:
    from casekit.case import case_hash_form

    case = load_case(case_dir / "case.yaml")
    assert "anchoring" not in case_hash_form(case.spec)
