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


def test_concurrent_appends_share_fsyncs_and_wait_for_theirs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: 40 records completed concurrently need fewer than 40 fsyncs, and no
    append_async returns before an fsync that covered its line (the file size at the start of
    some completed fsync reaches the end of the record's line)."""
    import asyncio
    import os
    import time

    import casekit.ledger as ledger_mod

    led = Ledger(tmp_path).open()
    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        size = os.fstat(fd).st_size  # what this fsync is guaranteed to cover
        time.sleep(0.02)
        real_fsync(fd)
        synced_sizes.append(size)

    monkeypatch.setattr(ledger_mod.os, "fsync", slow_fsync)

    async def one(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 5))
        led_rec = AttemptRecord(**led.base_fields(), attempt=planned(i), status="ok",
                                result=ProviderResult(text=f"out {i}"),
                                started_at="2026-01-01T00:00:00.000000Z",
                                completed_at="2026-01-01T00:00:01.000000Z")
        stored = await led.append_async(led_rec)
        data = (tmp_path / LEDGER_NAME).read_bytes()
        line_end = 0
        for _ in range(stored.seq + 1):
            line_end = data.index(b"\n", line_end) + 1
        # Some fsync that completed before this append returned began with the file already
        # holding this record's whole line.
        assert synced_sizes and max(synced_sizes) >= line_end, (stored.seq, synced_sizes)
        return line_end

    async def main() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(40)))

    asyncio.run(main())
    led.close()
    assert 1 <= len(synced_sizes) < 40
    res = verify_chain(tmp_path / LEDGER_NAME)
    assert res.ok and res.records == 40
    # every line is covered by a completed fsync
    assert max(synced_sizes) == (tmp_path / LEDGER_NAME).stat().st_size
