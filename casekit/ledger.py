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

import asyncio
import fcntl
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
import rfc8785
from pydantic import TypeAdapter, ValidationError

from casekit.canonical import (
    Canonical,
    canonical_json,
    fast_canonical_with_member,
    sha256_bytes,
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

LEDGER_NAME = "ledger.jsonl"
_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LedgerRecord)


def record_hash(payload: dict[str, Any]) -> str:
    """Hash of a record's canonical JSON without its ``hash`` field."""
    body = {k: v for k, v in payload.items() if k != "hash"}
    return sha256_bytes(canonical_json(body))


def _canonical_with_hash(body: dict[str, Any]) -> tuple[str, bytes]:
    """(the record's hash: SHA-256 of its canonical JSON without ``hash``, the canonical JSON
    with it), walking and encoding the record once."""
    digest: list[str] = []

    def hash_of(plain: bytes) -> str:
        digest.append(sha256_bytes(plain))
        return digest[0]

    fast = fast_canonical_with_member(body, "hash", hash_of)
    if fast is not None:
        return digest[0], fast[1]
    digest.clear()

    _, line = Canonical(body).encode_with_member("hash", hash_of)
    return digest[0], line


# A line is checked for canonical form by re-encoding it. The reference encoder
# (casekit.canonical, RFC 8785) walks the record in Python; orjson with sorted keys writes the
# same bytes for the same value except where their number and key-order rules differ: integral
# floats ("1.0" for RFC 8785's "1"), exponents, integers beyond 2**53, and keys outside the
# Basic Multilingual Plane (RFC 8785 sorts by UTF-16 code units). A line equal to orjson's
# sorted encoding of its own parse that holds no number token of those forms and no character
# outside the BMP is therefore in canonical form, and its hash is that of orjson's encoding
# without the ``hash`` member. Any other line takes the reference path (tests/test_ledger.py
# checks both agree). Negative exponents are written alike by both; a positive one ("1e+16")
# only where they differ. The patterns also match text inside strings that merely looks like
# such a number: that only sends the line the reference way.
_INTEGRAL_FLOAT = re.compile(rb"\.0[,\]}]")
_ASTRAL_UTF8 = re.compile(rb"[\xf0-\xf4]")
#: Integers beyond 2**53 (which RFC 8785 refuses) make orjson raise under OPT_STRICT_INTEGER:
#: its limit is the reference's (+-(2**53 - 1)), at no cost, where three regex scans of the
#: line for 16-digit tokens took a quarter of the reading's time.
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _fast_hash(payload: dict[str, Any], raw: bytes) -> str | None:
    """The record's hash when ``raw`` is provably its canonical line by the cheap route above,
    else None (the caller then takes the reference path)."""
    try:
        if orjson.dumps(payload, option=_SORTED) != raw:
            return None
    except (orjson.JSONEncodeError, TypeError):
        return None
    # b"+" first: memchr finds a rare byte at once, where b"e+" stops at every "e".
    if ((not raw.isascii() and _ASTRAL_UTF8.search(raw))
            or (b"+" in raw and (b"e+" in raw or b"E+" in raw))
            or _INTEGRAL_FLOAT.search(raw)):
        return None
    body = orjson.dumps({k: v for k, v in payload.items() if k != "hash"}, option=_SORTED)
    return sha256_bytes(body)


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


_READ_CHUNK = 1 << 20


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, newline-terminated) for every line, read in 1 MiB
    chunks (memory is one chunk and the longest line, whatever the ledger's size)."""
    with open(path, "rb") as fh:
        n = 0
        rest = b""
        while chunk := fh.read(_READ_CHUNK):
            data = rest + chunk if rest else chunk
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                n += 1
                yield n, data[start:end], True
                start = end + 1
            rest = data[start:]
        if rest:
            yield n + 1, rest, False


class ChainBroken(LedgerError):
    """A ledger stops verifying at ``problem``: the records before it verified (``records`` of
    them, the last with hash ``head_hash``)."""

    def __init__(self, path: Path, problem: ChainProblem, records: int, head_hash: str | None,
                 torn_tail: bool = False) -> None:
        super().__init__(f"{path}: {problem}; the ledger does not verify, so nothing derived "
                         "from it can be trusted (restore it from a copy)")
        self.problem = problem
        self.records = records
        self.head_hash = head_hash
        self.torn_tail = torn_tail


def iter_records(path: Path) -> Iterator[LedgerRecord]:
    """Every record of a ledger, verified as it is read (see :func:`iter_verified_lines`)."""
    for _, _, record in iter_verified_lines(path):
        yield record


class CheckedLine(NamedTuple):
    """What checking one ledger line on its own found (:func:`check_line`): everything but
    the checks that need the lines before it (the ``prev_hash`` link and the sequence
    number), which :class:`ChainCursor` makes in ledger order. Small and picklable: analysis
    workers check the lines of their batches and send this back."""

    seq: int | None
    prev_hash: Any
    """The line's ``prev_hash`` member as recorded."""
    hash: str | None
    """The hash of the line's content (None when it could not be computed)."""
    first: str | None
    """A problem found before the link check (not JSON, not an object)."""
    torn: bool
    content: str | None
    """A problem found after the link check: hash mismatch, canonical form."""
    schema: str | None
    """The schema's complaint, if the record does not match it."""


def check_line(raw: bytes, terminated: bool, *, validate: bool = True,
               ) -> tuple[CheckedLine, LedgerRecord | None]:
    """One line checked on its own (parsed once by orjson, canonicalized once, validated once
    when ``validate``): the findings, and the record when it matched the schema."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not terminated:
            return CheckedLine(None, None, None, "torn last line (incomplete write); `casekit "
                               "run` moves it aside", True, None, None), None
        return CheckedLine(None, None, None, "not valid JSON", False, None, None), None
    if not isinstance(payload, dict):
        return CheckedLine(None, None, None, "not a JSON object", False, None, None), None
    seq = payload.get("seq") if isinstance(payload.get("seq"), int) else None
    prev_hash = payload.get("prev_hash")
    fast = _fast_hash(payload, raw)
    if fast is not None:
        expect, line = fast, raw
    else:
        try:
            expect, line = _canonical_with_hash({k: v for k, v in payload.items()
                                                 if k != "hash"})
        except (rfc8785.CanonicalizationError, rfc8785.IntegerDomainError) as exc:
            return CheckedLine(seq, prev_hash, None, None, False,
                               f"not canonicalizable JSON ({exc})", None), None
    if payload.get("hash") != expect:
        return CheckedLine(seq, prev_hash, expect, None, False,
                           f"hash mismatch: recorded {payload.get('hash')!r}, content hashes "
                           f"to {expect!r} (the record was edited)", None), None
    if line != raw:
        return CheckedLine(seq, prev_hash, expect, None, False, "line is not in canonical "
                           "JSON form (the file was re-serialized)", None), None
    record: LedgerRecord | None = None
    schema: str | None = None
    if validate:
        try:
            record = _ADAPTER.validate_python(payload)
        except ValidationError as exc:
            schema = exc.errors()[0]["msg"]
    return CheckedLine(seq, prev_hash, expect, None, False, None, schema), record


class ChainCursor:
    """The in-order half of the chain check: each line's ``prev_hash`` links to the previous
    line's hash and its sequence number counts the records; raises :class:`ChainBroken` at
    the first problem, in :func:`verify_chain`'s order (JSON object, ``prev_hash`` link,
    hash, canonical form, sequence number, schema)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.prev: str | None = None
        """The hash of the last record that verified (the chain's head so far)."""
        self.count = 0
        """Records that verified so far."""

    def advance(self, lineno: int, c: CheckedLine) -> None:
        """Take the next line's findings; raises ChainBroken if the line does not verify."""
        def broken(seq: int | None, reason: str, torn: bool = False) -> ChainBroken:
            return ChainBroken(self.path, ChainProblem(lineno, seq, reason), self.count,
                               self.prev, torn)

        if c.first is not None:
            raise broken(None, c.first, c.torn)
        if c.prev_hash != self.prev:
            raise broken(c.seq, f"prev_hash {c.prev_hash!r} does not match the previous "
                         f"record's hash {self.prev!r} (a record was removed, reordered or "
                         "inserted)")
        if c.content is not None:
            raise broken(c.seq, c.content)
        if c.seq != self.count:
            raise broken(c.seq, f"sequence number {c.seq} where {self.count} was expected")
        if c.schema is not None:
            raise broken(c.seq, f"record does not match the ledger schema: {c.schema}")
        self.prev = c.hash
        self.count += 1


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, newline-terminated) of every line of a ledger, not
    checked: for a reader that checks them with :func:`check_line` and :class:`ChainCursor`
    (the analysis, whose workers check the lines of their batches)."""
    if not path.exists():
        raise LedgerError(f"{path}: no ledger here; give the run folder that holds {LEDGER_NAME}")
    return _iter_lines(path)


def iter_verified_lines(path: Path) -> Iterator[tuple[int, bytes, LedgerRecord]]:
    """(line number, the line's bytes, the record) of every record of a ledger, verified as it
    is read, in one streaming pass: each line is
    parsed once (orjson), canonicalized once (its hash and its canonical form come out of one
    encoding) and validated once against the schema. Raises :class:`ChainBroken` at the first
    record that does not verify, after yielding the ones before it: a caller that must not act
    on a ledger that fails later either consumes it all first or can undo what it did.

    The checks and their order are :func:`verify_chain`'s: JSON object, ``prev_hash`` link,
    hash, canonical form, sequence number, schema (:func:`check_line`, then
    :class:`ChainCursor`)."""
    cursor = ChainCursor(path)
    for lineno, raw, terminated in iter_lines(path):
        checked, record = check_line(raw, terminated)
        cursor.advance(lineno, checked)
        assert record is not None  # advance raised otherwise
        yield lineno, raw, record


def verify_chain(path: Path) -> VerifyResult:
    """Re-derive the hash chain; name the first bad record."""
    count = 0
    head: str | None = None
    try:
        for rec in iter_records(path):
            count += 1
            head = rec.hash
    except ChainBroken as exc:
        return VerifyResult(False, exc.records, exc.head_hash, exc.problem, exc.torn_tail)
    return VerifyResult(True, count, head)


_RETRY_OF = b'"retry_of":'


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes contain ``needle`` (read in 1 MiB chunks, each searched after
    the last ``len(needle) - 1`` bytes read before it, so a needle across chunks is found)."""
    keep = len(needle) - 1
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(_READ_CHUNK):
            buf = tail + chunk
            if needle in buf:
                return True
            tail = buf[-keep:] if keep else b""
    return False


def superseded_seqs(path: Path) -> dict[int, int]:
    """Seq of each failed attempt record that a later ``--retry-failed`` record supersedes ->
    the seq of that later record (analysis uses the last try). One scan of the bytes: only
    lines holding the member name are parsed (inside a JSON string the quotes would be
    escaped, so an output cannot fake one; a nested key is not the record's own). Not
    verified: the caller reads the ledger through :func:`iter_verified_lines` too."""
    out: dict[int, int] = {}
    if not path.is_file() or not _holds(path, _RETRY_OF):
        return out  # most ledgers: no retry at all, found without splitting lines
    for _, raw, _ in _iter_lines(path):
        if _RETRY_OF not in raw:
            continue
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict) and payload.get("record_type") == "attempt" and \
                isinstance(payload.get("retry_of"), int) and isinstance(payload.get("seq"), int):
            out[payload["retry_of"]] = payload["seq"]
    return out


def read_records(path: Path) -> list[LedgerRecord]:
    """All records of a ledger whose chain verifies (raises LedgerError naming the bad record).
    Holds every record: prefer :func:`iter_records` where one pass is enough."""
    return list(iter_records(path))


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
