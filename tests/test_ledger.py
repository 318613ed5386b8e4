"""The ledger: canonical JSON, hash chain, fsync'd appends, verify names the first bad record."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_attempts_are_indexed_not_kept(tmp_path: Path) -> None:
    """A long run's responses do not accumulate in memory: the ledger keeps each attempt's id,
    strategy and status, and the run records (notes, run_start) whole, written or reopened."""
    led = fill(tmp_path, 3)
    led.append(AttemptRecord(**led.base_fields(), attempt=planned(3).model_copy(
        update={"strategy": "imported"}), status="refusal", result=ProviderResult(text="no"),
        started_at="2026-01-01T00:00:00.000000Z", completed_at="2026-01-01T00:00:01.000000Z"))
    for ledger in (led, Ledger(tmp_path)):
        if ledger is not led:
            led.close()
            ledger.open()
        assert [type(r) for r in ledger.run_records] == [Note]
        first = json.loads((tmp_path / LEDGER_NAME).read_bytes().splitlines()[0])
        assert ledger.run_records[0].hash == first["hash"]  # kept with its hash
        assert set(ledger.recorded_attempt_ids()) == {planned(i).id for i in range(4)}
        assert ledger.attempt_counts() == {"ok": 3, "refusal": 1}
        assert ledger.attempt_counts("imported") == {"refusal": 1}
        assert ledger.seq == 5
    ledger.close()


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


def _attempt_builder(i: int) -> Callable[[dict[str, Any]], AttemptRecord]:
    def build(base: dict[str, Any]) -> AttemptRecord:
        return AttemptRecord(**base, attempt=planned(i), status="ok",
                             result=ProviderResult(text=f"out {i}"),
                             started_at="2026-01-01T00:00:00.000000Z",
                             completed_at="2026-01-01T00:00:01.000000Z")
    return build


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def test_submitted_records_are_written_in_order_within_the_loop_iteration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit without waiting: 40 records submitted by concurrent tasks are in the file
    (flushed to the OS, which is what survives kill -9) as soon as their worker next yields,
    in submission order, while fsyncs run behind them: fewer than 40, and settle() returns
    only once a completed fsync covers every line."""
    import casekit.ledger as ledger_mod

    led = Ledger(tmp_path).open()
    path = tmp_path / LEDGER_NAME
    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        size = os.fstat(fd).st_size  # what this fsync is guaranteed to cover
        time.sleep(0.02)
        real_fsync(fd)
        synced_sizes.append(size)

    monkeypatch.setattr(ledger_mod.os, "fsync", slow_fsync)
    order: list[int] = []

    async def one(i: int) -> None:
        await asyncio.sleep(0.001 * (i % 5))
        before = _lines(path)
        order.append(i)
        led.submit(_attempt_builder(i))
        assert _lines(path) == before  # not written synchronously ...
        await asyncio.sleep(0)
        assert _lines(path) >= before + 1  # ... but by the next loop iteration

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(40)))
        assert len(synced_sizes) < 40  # the fsyncs ran behind, not one per record
        await led.settle()
        assert synced_sizes and max(synced_sizes) == path.stat().st_size

    asyncio.run(main())
    led.close()
    assert 1 <= len(synced_sizes) < 40
    res = verify_chain(path)
    assert res.ok and res.records == 40
    recs = read_records(path)
    assert [r.attempt.index for r in recs if isinstance(r, AttemptRecord)] == order
    assert [r.seq for r in recs] == list(range(40))


def test_a_deferred_record_waits_yet_stays_first(tmp_path: Path) -> None:
    """submit(defer=True) (a fresh run's run_start) schedules no write: the record is written
    by write_pending(), or ahead of the next record submitted, never after it."""
    path = tmp_path / LEDGER_NAME
    built: list[str] = []

    def note(base: dict[str, Any]) -> Note:
        built.append("note")
        return Note(**base, kind="start", message="deferred")

    async def main(by_write_pending: bool) -> None:
        led.submit(note, defer=True)
        await asyncio.sleep(0.01)
        assert not built and _lines(path) == 0  # nothing scheduled, nothing written
        if by_write_pending:
            asyncio.get_running_loop().call_soon(led.write_pending)
            await asyncio.sleep(0)
            assert built and _lines(path) == 1
        led.submit(_attempt_builder(0))
        await asyncio.sleep(0)
        await led.settle()

    for by_write_pending in (True, False):
        built.clear()
        if path.exists():
            path.unlink()
        led = Ledger(tmp_path).open()
        asyncio.run(main(by_write_pending))
        led.close()
        assert [type(r) for r in read_records(path)] == [Note, AttemptRecord]


def test_append_writes_pending_submissions_first_and_close_never_drops_them(
        tmp_path: Path) -> None:
    async def main(led: Ledger) -> None:
        led.submit(_attempt_builder(0))
        led.submit(_attempt_builder(1))
        led.append_note("test", "after two submissions")  # synchronous: writes them first
        led.submit(_attempt_builder(2))  # still pending when the loop ends

    led = Ledger(tmp_path).open()
    asyncio.run(main(led))
    led.close()  # writes the pending record, fsyncs
    recs = read_records(tmp_path / LEDGER_NAME)
    assert [type(r).__name__ for r in recs] == ["AttemptRecord", "AttemptRecord", "Note",
                                                "AttemptRecord"]
    assert [r.attempt.index for r in recs if isinstance(r, AttemptRecord)] == [0, 1, 2]
    assert verify_chain(tmp_path / LEDGER_NAME).ok


def test_a_failed_deferred_write_stops_the_run_and_keeps_the_chain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails in the deferred callback (disk full) is raised to the next caller,
    nothing is written after it, and what was written still verifies."""
    led = Ledger(tmp_path).open()
    real_write = led._write
    calls = {"n": 0}

    def write(record: AttemptRecord, flush: bool = True) -> AttemptRecord:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_write(record, flush)  # type: ignore[return-value]

    monkeypatch.setattr(led, "_write", write)

    async def main() -> None:
        for i in range(3):
            led.submit(_attempt_builder(i))
        await asyncio.sleep(0)
        with pytest.raises(LedgerError, match="No space left on device"):
            led.submit(_attempt_builder(3))
        with pytest.raises(LedgerError, match="run the same case again"):
            await led.settle()

    asyncio.run(main())
    with pytest.raises(LedgerError):
        led.append_note("test", "after the failure")
    led.close()
    res = verify_chain(tmp_path / LEDGER_NAME)
    assert res.ok and res.records == 2


# --- streaming: one pass, every line parsed once -----------------------------------------------


def test_lines_are_split_the_same_across_read_chunks(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.chain as ledger_mod  # the read side

    fill(tmp_path, 7).close()
    path = tmp_path / LEDGER_NAME
    with path.open("ab") as fh:
        fh.write(b'{"torn":')  # an unterminated last line
    whole = path.read_bytes()
    expect = [(i + 1, line, i + 1 < len(whole.split(b"\n")))
              for i, line in enumerate(whole.split(b"\n"))]
    for chunk in (1, 2, 7, 64, 1 << 20):  # lines split across chunks, and the normal size
        monkeypatch.setattr(ledger_mod, "_READ_CHUNK", chunk)
        assert list(ledger_mod._iter_lines(path)) == expect


def test_iter_records_yields_the_good_prefix_then_names_the_bad_line(tmp_path: Path) -> None:
    from casekit.ledger import ChainBroken, iter_records

    fill(tmp_path, 5).close()
    path = tmp_path / LEDGER_NAME
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"output 2", b"output X")  # edit the third attempt
    path.write_bytes(b"\n".join(lines))
    seen: list[int] = []
    with pytest.raises(ChainBroken) as info:
        for rec in iter_records(path):
            seen.append(rec.seq)
    assert seen == [0, 1, 2]
    assert info.value.problem.line == 4 and info.value.records == 3
    assert "hash mismatch" in str(info.value) and "line 4 (record seq 3)" in str(info.value)
    res = verify_chain(path)
    assert (res.ok, res.records, res.problem) == (False, 3, info.value.problem)
    assert res.head_hash == json.loads(lines[2])["hash"]


def test_iter_records_streams_with_the_records_of_read_records(tmp_path: Path) -> None:
    from casekit.ledger import iter_records

    fill(tmp_path, 4).close()
    path = tmp_path / LEDGER_NAME
    it = iter_records(path)
    first = next(it)  # a generator: nothing past the first line is read yet
    assert isinstance(first, Note)
    rest = list(it)
    assert [first, *rest] == read_records(path)
    assert all(r.hash == json.loads(line)["hash"]
               for r, line in zip([first, *rest], path.read_bytes().splitlines(), strict=True))


def test_open_parses_each_line_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson

    import casekit.chain as ledger_mod  # the read side

    fill(tmp_path, 6).close()
    calls = 0
    real = orjson.loads

    def counting(raw: bytes) -> Any:
        nonlocal calls
        calls += 1
        return real(raw)

    monkeypatch.setattr(ledger_mod.orjson, "loads", counting)
    led = Ledger(tmp_path).open()
    try:
        assert led.seq == 7 and len(led.recorded_attempt_ids()) == 6
    finally:
        led.close()
    assert calls == 7


def test_a_torn_tail_of_a_large_ledger_is_cut_at_the_last_newline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.ledger as ledger_mod

    monkeypatch.setattr(ledger_mod, "_READ_CHUNK", 5)  # the backwards search crosses chunks
    fill(tmp_path, 3).close()
    path = tmp_path / LEDGER_NAME
    good = path.read_bytes()
    path.write_bytes(good + b'{"seq": 4, "a very long torn line' + b"x" * 50)
    led = Ledger(tmp_path).open()
    led.close()
    assert path.read_bytes().startswith(good)
    aside = (tmp_path / "ledger.torn-1.bin").read_bytes()
    assert aside == b'{"seq": 4, "a very long torn line' + b"x" * 50
    assert verify_chain(path).ok and verify_chain(path).records == 5


# --- the cheap canonical-form check equals the reference one ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from casekit.chain import _canonical_with_hash, _fast_hash  # noqa: E402

_KEYS = st.text(alphabet=st.sampled_from("abhsz_\u00e9\uff21\U0001f600"), min_size=1, max_size=4)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e16, 1e21, 1e-7, 5e-324, 0.1, 2.5, 123456.75]),
    st.text(alphabet=st.sampled_from('ab"\\\x00\x1f\x7f\u2028:.0e1 \U0001f600'), max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5))
def test_property_cheap_canonical_check_agrees_with_the_reference(body: dict) -> None:
    import orjson
    import rfc8785

    body = {k: v for k, v in body.items() if k != "hash"}
    try:
        expect, line = _canonical_with_hash(body)
    except (rfc8785.CanonicalizationError, rfc8785.IntegerDomainError):
        return
    payload = orjson.loads(line)
    # The line casekit writes: the cheap route either declines or gives the same hash.
    got = _fast_hash(payload, line)
    assert got in (None, expect)
    # A line re-serialized another way (orjson's own number forms) is never taken as canonical.
    try:
        other = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return
    if other != line:
        assert _fast_hash(payload, other) is None


def test_cheap_check_takes_ordinary_records_and_declines_integral_floats() -> None:
    import orjson

    expect, line = _canonical_with_hash({"seq": 3, "text": "at 10:30.0 sha256:5e1f", "p": 0.25})
    assert _fast_hash(orjson.loads(line), line) == expect
    # Re-serialized lines in orjson's own forms where RFC 8785 writes otherwise: declined.
    for form in (b"1.0", b"-0.0", b"1e+16", b"12345678901234567"):
        forged = line.replace(b'"p":0.25', b'"p":' + form)
        assert _fast_hash(orjson.loads(forged), forged) is None, form
    # The integer domain's edge (orjson's OPT_STRICT_INTEGER against the reference): the
    # largest safe integer is taken with the reference's hash, the next one is declined.
    for value, taken in ((2**53 - 1, True), (-(2**53 - 1), True), (2**53, False),
                         (-(2**53), False)):
        body = {"seq": 3, "n": value}
        line = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        got = _fast_hash(orjson.loads(line), line)
        if taken:
            assert got == _canonical_with_hash(body)[0]
        else:
            assert got is None


def test_holds_finds_a_needle_across_chunk_boundaries(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # superseded_seqs skips a ledger without "retry_of" by one byte search in chunks: a member
    # name split across two chunks must still be found.
    from casekit import chain as ledger_mod

    monkeypatch.setattr(ledger_mod, "_READ_CHUNK", 8)
    path = tmp_path / "f"
    needle = b'"retry_of":'
    for at in range(0, 30):
        path.write_bytes(b"x" * at + needle + b"y" * 5)
        assert ledger_mod._holds(path, needle), at
    path.write_bytes(b"x" * 40 + needle[:-1] + b"y" * 5)
    assert not ledger_mod._holds(path, needle)


def _rehash(path: Path, line: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit one record and recompute the chain's hashes after it, so that only the schema
    can object."""
    records = [json.loads(raw) for raw in path.read_bytes().splitlines()]
    edit(records[line - 1])
    prev = None
    out = []
    for rec in records:
        rec["prev_hash"] = prev
        rec.pop("hash", None)
        rec["hash"] = prev = record_hash(rec)
        out.append(canonical_json(rec) + b"\n")
    path.write_bytes(b"".join(out))


def test_a_schema_mismatch_is_named_in_the_record_it_is_in(tmp_path: Path) -> None:
    # The complaint is the named kind's (an attempt's status), with where it is; it used to
    # be the first kind of record's ("Input should be 'run_start'"), whatever the record was.
    fill(tmp_path, 3).close()
    path = tmp_path / LEDGER_NAME
    _rehash(path, 3, lambda rec: rec.update(status="weird"))
    res = verify_chain(path)
    assert not res.ok and res.problem is not None and res.problem.line == 3
    assert "record does not match the ledger schema: status: Input should be 'ok'" \
        in res.problem.reason
    assert "run_start" not in res.problem.reason


@pytest.mark.parametrize("record_type", [None, "attempts"])
def test_a_record_must_name_its_kind(tmp_path: Path, record_type: str | None) -> None:
    # A line without record_type was taken for whichever kind its fields fitted (an attempt
    # here): a record casekit never writes, so it does not verify.
    fill(tmp_path, 3).close()
    path = tmp_path / LEDGER_NAME

    def edit(rec: dict[str, Any]) -> None:
        if record_type is None:
            del rec["record_type"]
        else:
            rec["record_type"] = record_type

    _rehash(path, 2, edit)
    res = verify_chain(path)
    assert not res.ok and res.problem is not None and res.problem.line == 2
    assert "record does not match the ledger schema" in res.problem.reason
    assert "record_type" in res.problem.reason


def test_cheap_hash_cuts_only_the_records_own_hash_member() -> None:
    # The hash is taken over the line with the record's own "hash" member cut out of the
    # bytes: first, last, only member, and a nested "hash" member (with another value, and
    # with the same value, which makes the cut ambiguous: then the body is encoded afresh).
    import orjson

    def line_of(body: dict) -> tuple[str, bytes]:
        return _canonical_with_hash(body)

    for body in ({"a": 1}, {"z": 1}, {"a": {"hash": "sha256:x"}, "z": [1, {"hash": 2}]}, {}):
        expect, line = line_of(body)
        assert _fast_hash(orjson.loads(line), line) == expect, body
    expect, line = line_of({"a": 1})
    value = orjson.loads(line)["hash"]
    body = {"a": {"hash": value}, "b": 2}
    expect, line = line_of(body)
    assert line.count(b'"hash":' + orjson.dumps(value)) == 1  # the body's own is not it
    forged_body = {"a": {"hash": "will be the record's"}, "b": 2}
    expect, line = line_of(forged_body)
    own = orjson.loads(line)["hash"]
    twice = line.replace(b'"will be the record\'s"', orjson.dumps(own))
    payload = orjson.loads(twice)
    # The record's content now holds its own hash: the content hashes otherwise, and the
    # cheap route says what the reference says of it.
    reference = _canonical_with_hash({k: v for k, v in payload.items() if k != "hash"})[0]
    assert _fast_hash(payload, twice) == reference != own
