"""The append-only, hash-chained ledger of a run.

``runs/<run_id>/ledger.jsonl``: one RFC 8785 canonical JSON object per line. Each record carries
``prev_hash`` (the previous record's ``hash``) and ``hash`` = ``"sha256:" + SHA-256`` of the
canonical JSON of the record without its ``hash``. Records are written and flushed one by one, in
chain order. Records are never edited: recoveries and corrections are new records. A torn last
line (a crash during a write) is moved aside into ``ledger.torn-<n>.bin`` and noted in the chain,
never dropped silently.

Durability. Run records (``run_start``, notes, ``run_end``, batch submissions) are appended with
:meth:`Ledger.append`: written, flushed and fsynced before the caller goes on (a fresh run's
``run_start`` is the exception: it is handed over first, with ``submit(defer=True)``, and written
while the first requests are in flight, always before any attempt record). Attempt records
come from many concurrent workers and are handed over with :meth:`Ledger.submit`: the worker goes
on to its next request at once; the record is built, hashed and written, in submission order, by
a callback the event loop runs right after the worker's next await (the same loop iteration),
and fsynced in the background (records written while an fsync runs share the next one: group
commit). The run's end (``run_end``, an interruption note, closing) waits for a final fsync
covering every record. So the ledger on disk is always a prefix of the chain, and what a crash
can cost is bounded and harmless:

* ``kill -9``: what was written is in the OS and survives; attempts completed in the current
  loop iteration (handed over, not yet written) are not in the ledger and run again on resume.
* power failure: additionally the records written since the last completed fsync (one fsync
  interval, typically under a millisecond); they too are simply absent and run again.

Nothing that is in the ledger is ever lost or duplicated by either: an attempt is recorded
exactly once (resume skips what is recorded), and a cut-off last line is moved aside. Waiting
for an fsync per completed attempt before starting the next request would buy nothing more (the
records of the last fsync interval are exposed either way) and cost 10-20 % of wall time at high
concurrency (benchmarks/README.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from casekit.canonical import sha256_bytes
from casekit.chain import (  # noqa: F401 - the read side, re-exported for its callers
    _READ_CHUNK,
    LEDGER_NAME,
    ChainBroken,
    ChainCursor,
    ChainProblem,
    CheckedLine,
    VerifyResult,
    _canonical_with_hash,
    check_line,
    iter_lines,
    iter_records,
    iter_verified_lines,
    read_records,
    record_hash,
    superseded_seqs,
    verify_chain,
)
from casekit.errors import LedgerError
from casekit.provenance import iso_utc
from casekit.records import (
    OMIT_IF_NONE,
    AttemptRecord,
    Checkpoint,
    LedgerRecord,
    Note,
    RunEnd,
    RunStart,
    is_imported,
)

if TYPE_CHECKING:
    import asyncio


class CheckpointSigner(Protocol):
    """What the ledger needs of its anchor (casekit.anchor.Anchor)."""

    @property
    def every(self) -> int:
        """Records between checkpoints."""
        ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def key_path(self) -> Path: ...

    def key_note(self) -> dict[str, Any]:
        """The data of the note that names the key in a ledger whose run_start does not."""
        ...

    def checkpoint(self, base: dict[str, Any], final: bool) -> Checkpoint: ...

log = logging.getLogger(__name__)

class Ledger:
    """Appends records to a run's ledger, continuing an existing chain on resume."""

    def __init__(self, run_dir: Path, anchor: CheckpointSigner | None = None) -> None:
        self.run_dir = run_dir
        self.anchor = anchor
        """Signs a checkpoint every ``anchor.every`` records and on closing (casekit.anchor);
        None writes no checkpoints (tests of the chain alone)."""
        self._since_checkpoint = 0
        """Records after the last checkpoint (or since the start)."""
        self._checkpointing = False
        self._key_fingerprint: str | None = None
        """The examiner key the ledger names (run_start, or an examiner_key note)."""
        self.path = run_dir / LEDGER_NAME
        self._fh: Any = None
        self.seq = 0
        self.head: str | None = None
        self.run_records: list[LedgerRecord] = []
        """Every record but the attempts (run_start, notes, run_end): the few a run consults."""
        self._attempts: dict[str, tuple[str, str]] = {}
        """Attempt id -> (strategy, status) of every attempt record. Attempt records themselves
        are not kept: a long run's responses would otherwise all stay in memory."""
        self._failed: dict[str, tuple[int, str]] = {}
        """Attempt id -> (seq, error kind) of the attempts whose last record is a failure
        (``casekit run --retry-failed`` sends the transient ones again)."""
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._by_model: Counter[str] = Counter()
        self._imported = 0
        """Distinct imported attempts (`casekit import`): in the ledger, not in the plan."""
        """Recorded attempts per model id (a resume skips a model that is done without
        planning it)."""
        self._lock_fh: Any = None
        self._written = 0
        """Records written by this process (flushed to the OS)."""
        self._synced = 0
        """Records known to be on disk: an fsync that began after their write completed."""
        self._sync_task: asyncio.Future[None] | None = None
        self._pending: deque[Callable[[dict[str, Any]], LedgerRecord]] = deque()
        """Records handed over with :meth:`submit`, not yet written (builders, in order)."""
        self._drain_scheduled = False
        self._failure: BaseException | None = None
        """Why a deferred write or background fsync failed; raised to the next caller."""

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
            # One pass: every line parsed, verified and indexed once.
            started = last = time.monotonic()
            try:
                for rec in iter_records(self.path):
                    self._index(rec, str(rec.hash))
                    self.seq += 1
                    self.head = rec.hash
                    if not self.seq % 4096 and (now := time.monotonic()) - last >= 5.0:
                        last = now  # a long ledger (500,000 records: minutes) says where it is
                        log.info("reading the ledger: %d records verified (%.0f s)", self.seq,
                                 now - started)
            except ChainBroken as exc:
                if not exc.torn_tail:
                    raise LedgerError(
                        f"{self.path}: {exc.problem}; refusing to append to a ledger that does "
                        "not verify (restore it from a copy, or start a new run folder)"
                    ) from None
                # Every record before the torn last line verified and is indexed.
                torn = self._set_aside_tail(exc.problem.line)
        if self.anchor is not None and self._key_fingerprint not in (
                None, self.anchor.fingerprint):
            raise LedgerError(f"{self.path}: this run is signed by the examiner key "
                              f"{self._key_fingerprint}, and the key at {self.anchor.key_path} "
                              f"is {self.anchor.fingerprint}; give the key that started the "
                              "run with --examiner-key (or $CASEKIT_EXAMINER_KEY)")
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the run
        if torn is not None:
            self.append_note("torn_line", "a torn last line from an interrupted write was moved "
                             "aside", {"bytes": len(torn), "sha256": sha256_bytes(torn),
                                       "file": self._torn_name})
        return self

    def _set_aside_tail(self, line: int) -> bytes:
        """Move the unterminated last line (line number ``line``) aside, reading only the
        file's end."""
        size = self.path.stat().st_size
        cut = 0
        with open(self.path, "rb") as fh:
            pos = size
            while pos > 0:
                step = min(_READ_CHUNK, pos)
                pos -= step
                fh.seek(pos)
                nl = fh.read(step).rfind(b"\n")
                if nl >= 0:
                    cut = pos + nl + 1
                    break
            fh.seek(cut)
            tail = fh.read()
        log.debug("torn line %d starts at byte %d", line, cut)
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
        """Write what is still pending (completed attempts are never dropped), a closing
        checkpoint (with an anchor), fsync, close."""
        if self._fh is not None:
            if self._failure is None:
                try:
                    self.seal()
                    self.flush()
                except (OSError, LedgerError) as exc:  # closing must not hide the cause
                    log.error("could not write the last records of %s: %s", self.path, exc)
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

    def _index(self, record: LedgerRecord, digest: str) -> None:
        """Remember a record in the chain: an attempt's id, strategy and status; a run record
        whole, with its hash."""
        if isinstance(record, Checkpoint):
            self._since_checkpoint = 0
            return  # not kept: the runner never consults them
        self._since_checkpoint += 1
        if isinstance(record, RunStart) and record.examiner_key is not None:
            self._key_fingerprint = self._key_fingerprint or record.examiner_key.fingerprint
        elif isinstance(record, Note) and record.kind == "examiner_key":
            self._key_fingerprint = self._key_fingerprint or record.data.get("fingerprint")
        if isinstance(record, AttemptRecord):
            a = record.attempt
            if a.id not in self._attempts:
                if is_imported(a.strategy, a.strategy_key):
                    self._imported += 1  # not planned: never counts toward the plan
                else:
                    self._by_model[a.model_id] += 1
            # One tuple per (strategy, status), shared: a parsed record's strings are its own,
            # and 500,000 of them would take some 90 MB.
            pair = (a.strategy, record.status)
            self._attempts[a.id] = self._pairs.setdefault(pair, pair)
            if record.status == "error":
                self._failed[a.id] = (record.seq,
                                      record.error.kind if record.error else "unknown")
            else:
                self._failed.pop(a.id, None)
        else:
            self.run_records.append(record if record.hash == digest
                                    else record.model_copy(update={"hash": digest}))

    def _write(self, record: LedgerRecord, flush: bool = True) -> str:
        """Hash, write and (unless told not to) flush one record, not yet fsynced; advance
        the head. Returns the record's hash."""
        if self._fh is None:
            raise LedgerError("ledger is not open")
        if record.seq != self.seq or record.prev_hash != self.head:
            raise LedgerError("internal: record built against a stale ledger head")
        payload = record.model_dump(mode="json")
        payload.pop("hash", None)
        for k in OMIT_IF_NONE.intersection(payload):
            if payload[k] is None:
                del payload[k]
        digest, line = _canonical_with_hash(payload)
        self._fh.write(line + b"\n")
        if flush:
            self._fh.flush()
        self._index(record, digest)
        self.head = digest
        self.seq += 1
        self._written += 1
        if (self.anchor is not None and self._since_checkpoint >= self.anchor.every
                and not self._checkpointing):
            self._checkpoint(final=False, flush=flush)
        return digest

    def seal(self) -> None:
        """Write what is pending and, with an anchor, a closing checkpoint over it, unless
        this process wrote nothing (a refused resume leaves the ledger as it was) or the last
        record is a checkpoint already. Closing seals; call it earlier to know the final
        head."""
        self._raise_failure()
        self._drain_pending()
        if self.anchor is not None and self._written and self._since_checkpoint:
            self._checkpoint(final=True)

    def _checkpoint(self, final: bool, flush: bool = True) -> None:
        """Sign the chain head into a checkpoint record (casekit.anchor). A ledger that names
        no examiner key yet (one begun before anchoring) names it in a note first."""
        assert self.anchor is not None
        if self.seq == 0:
            return  # nothing to commit to
        self._checkpointing = True
        try:
            if self._key_fingerprint is None:
                self._write(Note(**self.base_fields(), kind="examiner_key",
                                 message="the examiner key that signs this ledger's checkpoints "
                                         "from here on", data=self.anchor.key_note()),
                            flush=flush)
            self._write(self.anchor.checkpoint(self.base_fields(), final), flush=flush)
        finally:
            self._checkpointing = False

    def append(self, record: LedgerRecord) -> LedgerRecord:
        """Write, flush and fsync one record, built from the current :meth:`base_fields`.
        Records still pending from :meth:`submit` are written first (and ``record`` re-based
        after them)."""
        self._raise_failure()
        if self._pending:
            # Built before the pending records were written: re-base it on the new head.
            self._drain_pending()
            record = record.model_copy(update=self.base_fields())
        digest = self._write(record)
        self._fsync_all()
        if isinstance(record, AttemptRecord | Checkpoint):
            return record.model_copy(update={"hash": digest})
        # The record as indexed, with its hash (a checkpoint's note may follow it).
        return next(r for r in reversed(self.run_records) if r.seq == record.seq)

    def append_batch(self, builds: Iterable[Callable[[dict[str, Any]], LedgerRecord]], *,
                     batch: int = 10_000) -> int:
        """Write many records (``casekit import``), fsyncing once per ``batch`` records and
        once at the end, not once per record. Each ``build`` gets the base fields at the moment
        of writing. A crash leaves a prefix of them in the chain (whole records: a torn last
        line is moved aside on the next open), so writing them again skips what is recorded.
        Returns how many were written."""
        self._raise_failure()
        self._drain_pending()
        assert self._fh is not None
        n = 0
        for build in builds:
            self._write(build(self.base_fields()), flush=False)
            n += 1
            if not n % batch:
                self._fh.flush()
                self._fsync_all()
        self._fh.flush()
        self._fsync_all()
        return n

    def submit(self, build: Callable[[dict[str, Any]], LedgerRecord], *,
               defer: bool = False) -> None:
        """Hand a record over for writing without waiting (attempt records of concurrent
        workers; see the module docstring on durability). ``build`` gets the base fields
        (``seq``, ``recorded_at``, ``prev_hash``) at the moment of writing and returns the
        record; records are written in the order submitted, by a callback that runs after the
        caller's next await. With ``defer``, no write is scheduled: the record waits for the
        next one submitted, :meth:`write_pending`, :meth:`append`, :meth:`settle` or
        :meth:`flush` (a fresh run's ``run_start``, built while its first requests are in
        flight), and may be submitted before the event loop runs. Otherwise it must be called on
        the running event loop. Raises LedgerError if an earlier deferred write or fsync
        failed."""
        self._raise_failure()
        if self._fh is None:
            raise LedgerError("ledger is not open")
        self._pending.append(build)
        if not defer and not self._drain_scheduled:
            self._drain_scheduled = True
            import asyncio  # the writer's only: not imported for reading (~15 ms)

            asyncio.get_running_loop().call_soon(self._drain_soon)

    def _drain_soon(self) -> None:
        self._drain_scheduled = False
        self.write_pending()

    def write_pending(self) -> None:
        """Write the pending records now and fsync them in the background (an event loop
        callback). A failure is kept and raised to the next caller."""
        if self._failure is not None or self._fh is None or not self._pending:
            return  # flush()/close() already took care of it, or the next caller will raise
        try:
            self._drain_pending()
        except BaseException as exc:  # noqa: BLE001 - kept and raised to the next caller
            log.error("writing the ledger failed: %s", exc)
            self._failure = exc
            return
        if self._synced < self._written:
            self._syncing()

    def _syncing(self) -> asyncio.Future[None]:
        """The background fsync (:meth:`_sync_behind`), started unless one is running."""
        if self._sync_task is None or self._sync_task.done():
            import asyncio

            self._sync_task = asyncio.ensure_future(self._sync_behind())
        return self._sync_task

    def _drain_pending(self) -> None:
        """Write the pending records, flushing them to the OS together."""
        if not self._pending:
            return
        assert self._fh is not None
        try:
            while self._pending:
                build = self._pending.popleft()
                self._write(build(self.base_fields()), flush=False)
        finally:
            self._fh.flush()

    async def _sync_behind(self) -> None:
        """fsync in a worker thread until every record written so far is covered; records
        written while one fsync runs share the next (group commit)."""
        import asyncio

        while self._synced < self._written and self._fh is not None and self._failure is None:
            target = self._written
            try:
                await asyncio.to_thread(os.fsync, self._fh.fileno())
            except OSError as exc:
                log.error("fsync of the ledger failed: %s", exc)
                self._failure = exc
                return
            self._synced = max(self._synced, target)

    async def settle(self) -> None:
        """Write every submitted record and wait until an fsync covers all of them."""
        import asyncio

        self._raise_failure()
        self._drain_pending()
        while self._synced < self._written:
            # shield: a cancelled caller (Ctrl-C) must not cancel the fsync itself.
            await asyncio.shield(self._syncing())
            self._raise_failure()

    def flush(self) -> None:
        """Synchronously write every submitted record and fsync (the run's end, also when the
        event loop is gone)."""
        self._raise_failure()
        self._drain_pending()
        self._fsync_all()

    def _fsync_all(self) -> None:
        assert self._fh is not None
        if self._synced < self._written:
            os.fsync(self._fh.fileno())
            self._synced = self._written

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise LedgerError(f"{self.path}: writing a record failed ({self._failure}); "
                              "nothing after it was recorded. Fix the cause (disk full? "
                              "permissions?) and run the same case again to resume")

    def append_note(self, kind: str, message: str, data: dict[str, Any] | None = None) -> Note:
        rec = Note(**self.base_fields(), kind=kind, message=message, data=data or {})
        out = self.append(rec)
        assert isinstance(out, Note)
        return out

    # -- queries -----------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return self.seq == 0

    def run_start(self) -> RunStart | None:
        for r in self.run_records:
            if isinstance(r, RunStart):
                return r
        return None

    def recorded_attempt_ids(self) -> AbstractSet[str]:
        """The ids of the attempts recorded so far (a live view: copy it to keep it)."""
        return self._attempts.keys()

    def recorded_by_model(self) -> Counter[str]:
        """How many distinct planned attempts of each model are recorded (a copy; imported
        outputs are not among them)."""
        return Counter(self._by_model)

    def recorded_planned(self) -> int:
        """How many distinct planned attempts are recorded (imported outputs excluded)."""
        return len(self._attempts) - self._imported

    def imported_count(self) -> int:
        """How many distinct imported attempts are recorded."""
        return self._imported

    def attempt_counts(self, strategy: str | None = None) -> Counter[str]:
        """Recorded attempts by status (``ok``, ``refusal``, ``error``), of one strategy if
        given."""
        return Counter(status for strat, status in self._attempts.values()
                       if strategy is None or strat == strategy)

    def failed_attempts(self, kinds: AbstractSet[str]) -> dict[int, str]:
        """Seq -> attempt id of the attempts whose last record failed with an error of one of
        ``kinds`` (``transient``, ``rate_limit``, ...)."""
        return {seq: aid for aid, (seq, kind) in self._failed.items() if kind in kinds}

    def is_complete(self) -> bool:
        return any(isinstance(r, RunEnd) and r.complete for r in self.run_records)
