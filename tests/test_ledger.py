"""The ledger: canonical JSON, hash chain, fsync'd appends, verify names the first bad record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from casekit.canonical import canonical_json
from casekit.errors import LedgerError
from casekit.ledger import LEDGER_NAME, Ledger, read_records, record_hash, verify_chain
from casekit.records import AttemptRecord, Note, PlannedAttempt, ProviderResult


def planned(i: int) -> PlannedAttempt:
    return PlannedAttempt(id=f"a-{i:020d}", ordinal=i, model_id="m", strategy="s",
                          strategy_key="s#0", work_id="w", intent="adversarial", index=i,
                          mode="completion", prompt=f"prompt {i} «ü»")


def fill(run_dir: Path, n: int) -> Ledger:
    led = Ledger(run_dir).open()
    led.append_note("test", "first")
    for i in range(n):
        led.append(AttemptRecord(**led.base_fields(), attempt=planned(i), status="ok",
                                 result=ProviderResult(text=f"output {i} \u202e bidi"),
                                 started_at="2026-01-01T00:00:00.000000Z",
                                 completed_at="2026-01-01T00:00:01.000000Z"))
    return led


def test_chain_verifies_and_lines_are_canonical(tmp_path: Path) -> None:
    led = fill(tmp_path, 5)
    led.close()
    res = verify_chain(tmp_path / LEDGER_NAME)
    assert res.ok and res.records == 6
    lines = (tmp_path / LEDGER_NAME).read_bytes().splitlines()
    prev = None
    for raw in lines:
        obj = json.loads(raw)
        assert canonical_json(obj) == raw
        assert obj["prev_hash"] == prev
        assert obj["hash"] == record_hash(obj)
        assert obj["hash"].startswith("sha256:")
        assert obj["recorded_at"].endswith("Z")
        prev = obj["hash"]
    assert res.head_hash == prev


@pytest.mark.parametrize("target_line", [1, 3, 6])
def test_one_byte_edit_caught_at_the_right_record(tmp_path: Path, target_line: int) -> None:
    fill(tmp_path, 5).close()
    path = tmp_path / LEDGER_NAME
    data = bytearray(path.read_bytes())
    lines = data.split(b"\n")
    offset = sum(len(x) + 1 for x in lines[: target_line - 1])
    line = lines[target_line - 1]
    pos = offset + line.index(b'"recorded_at":"') + len(b'"recorded_at":"') + 3
    data[pos] = ord("9") if data[pos] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    res = verify_chain(path)
    assert not res.ok
    assert res.problem is not None and res.problem.line == target_line
    assert "hash mismatch" in res.problem.reason
    with pytest.raises(LedgerError):
        read_records(path)


def test_removed_record_is_caught(tmp_path: Path) -> None:
    fill(tmp_path, 4).close()
    path = tmp_path / LEDGER_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    res = verify_chain(path)
    assert not res.ok and res.problem is not None and res.problem.line == 3
    assert "prev_hash" in res.problem.reason


def test_resume_continues_the_chain(tmp_path: Path) -> None:
    fill(tmp_path, 2).close()
    led = Ledger(tmp_path).open()
    assert led.seq == 3
    assert led.recorded_attempt_ids() == {planned(0).id, planned(1).id}
    led.append_note("resume", "again")
    led.close()
    res = verify_chain(tmp_path / LEDGER_NAME)
    assert res.ok and res.records == 4


def test_torn_tail_is_set_aside_and_noted(tmp_path: Path) -> None:
    fill(tmp_path, 2).close()
    path = tmp_path / LEDGER_NAME
    torn = b'{"record_type":"attempt","seq":3,"half a rec'
    with open(path, "ab") as fh:
        fh.write(torn)
    assert verify_chain(path).torn_tail
    led = Ledger(tmp_path).open()
    led.close()
    records = read_records(path)
    note = records[-1]
    assert isinstance(note, Note) and note.kind == "torn_line"
    aside = tmp_path / note.data["file"]
    assert aside.read_bytes() == torn, "the torn bytes are kept, never dropped"


def test_refuses_to_append_to_a_broken_ledger(tmp_path: Path) -> None:
    fill(tmp_path, 2).close()
    path = tmp_path / LEDGER_NAME
    path.write_bytes(path.read_bytes().replace(b"output 1", b"output 7"))
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="refusing to append"):
        Ledger(tmp_path).open()
    assert path.read_bytes() == before, "nothing recorded is rewritten"


def test_nonfinite_floats_are_canonicalized() -> None:
    assert canonical_json({"x": float("-inf"), "y": [1.5]}) == b'{"x":null,"y":[1.5]}'


def test_second_writer_is_refused(tmp_path: Path) -> None:
    first = fill(tmp_path, 1)
    with pytest.raises(LedgerError, match="another casekit process"):
        Ledger(tmp_path).open()
    first.close()
    Ledger(tmp_path).open().close()  # the lock is released on close
