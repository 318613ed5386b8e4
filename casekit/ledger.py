"""The append-only, hash-chained ledger of a run.

``runs/<run_id>/ledger.jsonl``: one RFC 8785 canonical JSON object per line. Each record carries
``prev_hash`` (the previous record's ``hash``) and ``hash`` = ``"sha256:" + SHA-256`` of the
canonical JSON of the record without its ``hash``. Records are written and flushed one by one, in
chain order, and nobody goes on past a record before an fsync covering it has completed (records
completed concurrently share one fsync: group commit). Records are never edited: recoveries and
corrections are new records. A torn last line (a crash during a
write) is moved aside into ``ledger.torn-<n>.bin`` and noted in the chain, never dropped silently.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from casekit.canonical import Canonical, canonical_json, sha256_bytes
from casekit.errors import LedgerError
from casekit.provenance import iso_utc
from casekit.records import AttemptRecord, LedgerRecord, Note, RunEnd, RunStart

log = logging.getLogger(__name__)

LEDGER_NAME = "ledger.jsonl"
_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LedgerRecord)


def record_hash(payload: dict[str, Any]) -> str:
    """Hash of a record's canonical JSON without its ``hash`` field."""
    body = {k: v for k, v in payload.items() if k != "hash"}
    return sha256_bytes(canonical_json(body))


def _canonical_with_hash(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """(canonical JSON of the record without its hash, canonical JSON of the record with it),
    walking the record once (the hash is a string member added to the same members)."""
    canon = Canonical(body)
    plain = canon.encode()
    return plain, canon.encode({"hash": sha256_bytes(plain)})


@dataclass(frozen=True)
class ChainProblem:
    line: int
    """1-based line number in the ledger file."""
    seq: int | None
    reason: str

    def __str__(self) -> str:
        seq = f" (record seq {self.seq})" if self.seq is not None else ""
        return f"line {self.line}{seq}: {self.reason}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    head_hash: str | None
    problem: ChainProblem | None = None
    torn_tail: bool = False


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, newline-terminated) for every line."""
    data = path.read_bytes()
    start = 0
    n = 0
    while start < len(data):
        n += 1
        end = data.find(b"\n", start)
        if end < 0:
            yield n, data[start:], False
            return
        yield n, data[start:end], True
        start = end + 1


def verify_chain(path: Path) -> VerifyResult:
    """Re-derive the hash chain; name the first bad record."""
    if not path.exists():
        raise LedgerError(f"{path}: no ledger here; give the run folder that holds {LEDGER_NAME}")
    prev: str | None = None
    count = 0
    for lineno, raw, terminated in _iter_lines(path):
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not terminated:
                return VerifyResult(False, count, prev, ChainProblem(
                    lineno, None, "torn last line (incomplete write); `casekit run` moves it aside"
                ), torn_tail=True)
            return VerifyResult(False, count, prev, ChainProblem(lineno, None, "not valid JSON"))
        if not isinstance(payload, dict):
            return VerifyResult(False, count, prev, ChainProblem(lineno, None, "not a JSON object"))
        seq = payload.get("seq") if isinstance(payload.get("seq"), int) else None
        if payload.get("prev_hash") != prev:
            return VerifyResult(False, count, prev, ChainProblem(
                lineno, seq, f"prev_hash {payload.get('prev_hash')!r} does not match the previous "
                f"record's hash {prev!r} (a record was removed, reordered or inserted)"))
        expect = record_hash(payload)
        if payload.get("hash") != expect:
            return VerifyResult(False, count, prev, ChainProblem(
                lineno, seq, f"hash mismatch: recorded {payload.get('hash')!r}, content hashes to "
                f"{expect!r} (the record was edited)"))
        if canonical_json(payload) != raw:
            return VerifyResult(False, count, prev, ChainProblem(
                lineno, seq, "line is not in canonical JSON form (the file was re-serialized)"))
        if seq != count:
            return VerifyResult(False, count, prev, ChainProblem(
                lineno, seq, f"sequence number {seq} where {count} was expected"))
        try:
            _ADAPTER.validate_python(payload)
        except ValidationError as exc:
            return VerifyResult(False, count, prev, ChainProblem(
                lineno, seq, f"record does not match the ledger schema: {exc.errors()[0]['msg']}"))
        prev = payload["hash"]
        count += 1
    return VerifyResult(True, count, prev)


def read_records(path: Path) -> list[LedgerRecord]:
    """All records of a ledger whose chain verifies (raises LedgerError naming the bad record)."""
    res = verify_chain(path)
    if not res.ok:
        raise LedgerError(f"{path}: {res.problem}; the ledger does not verify, so nothing derived "
                          "from it can be trusted (restore it from a copy)")
    return [_ADAPTER.validate_json(raw) for _, raw, _ in _iter_lines(path)]


class Ledger:
    """Appends records to a run's ledger, continuing an existing chain on resume."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LEDGER_NAME
        self._fh: Any = None
        self.seq = 0
        self.head: str | None = None
        self.records: list[LedgerRecord] = []
        self._lock_fh: Any = None
        self._written = 0
        """Records written by this process (flushed to the OS)."""
        self._synced = 0
        """Records known to be on disk: an fsync that began after their write completed."""
        self._sync_task: asyncio.Future[None] | None = None

    def _lock(self) -> None:
        """One writer per run folder: a second `casekit run` on it fails instead of forking the
        chain."""
        self._lock_fh = open(self.run_dir / "ledger.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise LedgerError(f"{self.run_dir}: another casekit process is writing this run; "
                              "wait for it to finish (or stop it) and run again") from None

    # -- opening -----------------------------------------------------------------------------
    def open(self) -> Ledger:
        """Open for appending. Verifies what is there; moves a torn tail aside and notes it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            return self._open_locked()
        except BaseException:
            self.close()
            raise

    def _open_locked(self) -> Ledger:
        torn: bytes | None = None
        if self.path.exists() and self.path.stat().st_size:
            res = verify_chain(self.path)
            if not res.ok and res.torn_tail and res.problem is not None:
                torn = self._set_aside_tail(res.problem.line)
                res = verify_chain(self.path)
            if not res.ok:
                raise LedgerError(
                    f"{self.path}: {res.problem}; refusing to append to a ledger that does not "
                    "verify (restore it from a copy, or start a new run folder)")
            self.records = [_ADAPTER.validate_json(raw) for _, raw, _ in _iter_lines(self.path)]
            self.seq = res.records
            self.head = res.head_hash
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the run
        if torn is not None:
            self.append_note("torn_line", "a torn last line from an interrupted write was moved "
                             "aside", {"bytes": len(torn), "sha256": sha256_bytes(torn),
                                       "file": self._torn_name})
        return self

    def _set_aside_tail(self, line: int) -> bytes:
        data = self.path.read_bytes()
        cut = 0
        for _ in range(line - 1):
            cut = data.index(b"\n", cut) + 1
        tail = data[cut:]
        n = 1
        while (self.run_dir / f"ledger.torn-{n}.bin").exists():
            n += 1
        self._torn_name = f"ledger.torn-{n}.bin"
        aside = self.run_dir / self._torn_name
        with open(aside, "wb") as fh:
            fh.write(tail)
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("moved a torn ledger tail (%d bytes) aside to %s", len(tail), aside)
        return tail

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> Ledger:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending ---------------------------------------------------------------------------
    def base_fields(self) -> dict[str, Any]:
        return {"seq": self.seq, "recorded_at": iso_utc(), "prev_hash": self.head}

    def _write(self, record: LedgerRecord) -> LedgerRecord:
        """Hash, write and flush one record (not yet fsynced); advance the head."""
        if self._fh is None:
            raise LedgerError("ledger is not open")
        if record.seq != self.seq or record.prev_hash != self.head:
            raise LedgerError("internal: record built against a stale ledger head")
        payload = record.model_dump(mode="json")
        payload.pop("hash", None)
        body, line = _canonical_with_hash(payload)
        self._fh.write(line + b"\n")
        self._fh.flush()
        stored = record.model_copy(update={"hash": sha256_bytes(body)})
        self.records.append(stored)
        self.head = stored.hash
        self.seq += 1
        self._written += 1
        return stored

    def append(self, record: LedgerRecord) -> LedgerRecord:
        """Hash, write, flush and fsync one record. ``seq``/``prev_hash`` must be current."""
        stored = self._write(record)
        os.fsync(self._fh.fileno())
        self._synced = self._written
        return stored

    async def append_async(self, record: LedgerRecord) -> LedgerRecord:
        """As ``append``, with the fsync off the event loop, shared by the records written
        while it runs (group commit): the record is written, in order, before the first await,
        and the caller goes on only once an fsync that began after its write has completed.
        With 64 attempts in flight that is one fsync per batch of completions instead of one
        per record; what is acknowledged is on disk either way."""
        stored = self._write(record)
        target = self._written
        while self._synced < target:
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.ensure_future(self._sync_upto(self._written))
            # shield: one caller's cancellation (Ctrl-C) must not cancel the others' fsync.
            await asyncio.shield(self._sync_task)
        return stored

    async def _sync_upto(self, written: int) -> None:
        assert self._fh is not None
        await asyncio.to_thread(os.fsync, self._fh.fileno())
        self._synced = max(self._synced, written)

    def append_note(self, kind: str, message: str, data: dict[str, Any] | None = None) -> Note:
        rec = Note(**self.base_fields(), kind=kind, message=message, data=data or {})
        out = self.append(rec)
        assert isinstance(out, Note)
        return out

    # -- queries -----------------------------------------------------------------------------
    def run_start(self) -> RunStart | None:
        for r in self.records:
            if isinstance(r, RunStart):
                return r
        return None

    def recorded_attempt_ids(self) -> set[str]:
        return {r.attempt.id for r in self.records if isinstance(r, AttemptRecord)}

    def is_complete(self) -> bool:
        return any(isinstance(r, RunEnd) and r.complete for r in self.records)
