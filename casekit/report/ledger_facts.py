"""What the report reads of the ledger, in one streaming pass (issue 14).

A 500,000-attempt ledger is some 2 GB; holding its records (or its bytes) made the report's
memory grow with the attempts. :func:`read_ledger_facts` reads the ledger once, verifying the
chain as it goes (:func:`casekit.ledger.iter_verified_lines`), and keeps only:

- the run records (run_start, notes, checkpoints, run_end): a few per thousand attempts;
- the counts and tallies the report's pages print about every attempt (effort, reliability,
  disclosures, limitations, custody, the bottom line), each summed as the record passes;
- an index from a record's sequence number to its place in the file (8 bytes and a CRC per
  record), so that the few attempts a page quotes (exhibits, the thumbnail) are read again,
  checked and parsed when asked for (:class:`AttemptLookup`);
- the ledger's path, size and SHA-256 (:class:`LedgerFile`): the report embeds the file by
  streaming it (casekit.report.embed), never from memory.

Effort and reliability need, per record, whether its attempt's analysis reaches the reporting
threshold and its refusal source: the caller passes them in (``flags``: attempt id -> (reaches
the threshold, refusal source), for the attempts where either is set).

Both count attempts, as the findings do: a failed record that ``casekit run --retry-failed``
sent again (superseded by a later record of the same attempt) is not an attempt of its own. Its
tries are counted with the attempt's (reliability), and the attempt is counted once, by its last
record (effort, reliability). The failure stays in the ledger and in the tries' counts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import zlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import TypeAdapter, ValidationError

from casekit.canonical import HASH_PREFIX
from casekit.errors import CasekitError
from casekit.ledger import iter_verified_lines, superseded_seqs
from casekit.records import (
    IMPORT_STRATEGY,
    AttemptRecord,
    Checkpoint,
    LedgerRecord,
    Note,
    RunEnd,
    RunStart,
    is_imported,
)
from casekit.report.imported import ImportedSummary, ImportedTally
from casekit.report.tooluse import offers_tools, reports_tool_use

log = logging.getLogger(__name__)

#: Attempts that ended in an error listed per model (its first, in ledger order); the rest are
#: counted per model and are in the complete listing and the ledger.
RELIABILITY_ERRORS_PER_MODEL = 10

_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LedgerRecord)


@dataclass(frozen=True)
class LedgerFile:
    """The ledger file as the report verified it: embedded by streaming its first ``size``
    bytes, which must still hash to ``sha256``."""

    path: Path
    size: int
    sha256: str
    """``sha256:<hex>`` (casekit.canonical.sha256_bytes' form)."""
    md5: str = ""
    """Hex MD5: the PDF's /CheckSum of an embedded file (ISO 32000-1 7.11.4)."""


# --------------------------------------------------------------------------- tallies


@dataclass
class ErrorFact:
    """An attempt that ended in an error (the reliability page lists each model's first)."""

    attempt_id: str
    seq: int
    kind: str
    type: str
    message: str
    tries: int


@dataclass
class ModelTries:
    """One model's tries, failures, refusals and filters, over every attempt record."""

    attempts: int = 0
    ok: int = 0
    failed: int = 0
    tries: int = 0
    retried: int = 0
    most: int = 0
    after: int = 0
    dropped: int = 0
    filtered: int = 0
    imported: bool = False
    kinds: dict[str, int] = field(default_factory=lambda: {
        "transient": 0, "rate_limit": 0, "no_retry": 0, "unknown": 0})
    refused: dict[str, int] = field(default_factory=dict)
    errors: list[ErrorFact] = field(default_factory=list)
    """The first RELIABILITY_ERRORS_PER_MODEL, in ledger (= sequence) order."""

    def add(self, rec: AttemptRecord, refusal_source: str | None, types: dict[str, int],
            earlier_tries: int = 0) -> None:
        """A record that ends its attempt; ``earlier_tries``: the tries of the failed records
        of the same attempt it supersedes (``--retry-failed``)."""
        self.add_tries(rec, types)
        n = len(rec.tries) + earlier_tries
        self.attempts += 1
        self.most = max(self.most, n)
        self.retried += n > 1
        raw = rec.result.raw_request if rec.result else None
        if isinstance(raw, dict) and raw.get("dropped"):
            self.dropped += 1
        if rec.result is not None and rec.result.finish_reason == "content_filter":
            self.filtered += 1
        if refusal_source:
            self.refused[refusal_source] = self.refused.get(refusal_source, 0) + 1
        if rec.status == "error":
            self.failed += 1
            if len(self.errors) < RELIABILITY_ERRORS_PER_MODEL:
                e = rec.error
                self.errors.append(ErrorFact(
                    attempt_id=rec.attempt.id, seq=rec.seq,
                    kind=e.kind.replace("_", " ") if e else "unknown",
                    type=e.type if e else "unknown",
                    message=(e.message[:300] + ("…" if len(e.message) > 300 else ""))
                    if e else "", tries=n))
        elif rec.status == "ok":
            self.ok += 1
        self.imported = self.imported or is_imported(rec.attempt.strategy,
                                                     rec.attempt.strategy_key)

    def add_tries(self, rec: AttemptRecord, types: dict[str, int]) -> None:
        """Every try of a record, whether or not it ends its attempt."""
        self.tries += len(rec.tries)
        for t in rec.tries:
            if t.error is not None:
                self.kinds[t.error.kind] = self.kinds.get(t.error.kind, 0) + 1
                types[t.error.type] = types.get(t.error.type, 0) + 1
                self.after += t.retry_after is not None


_FIXED_TIME = re.compile(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _time_int(s: str) -> int | None:
    """A ``20YY-MM-DDThh:mm:ss.ffffffZ`` time (casekit's iso_utc form) as an integer that sorts
    as the string does (its digits after the century), else None."""
    if len(s) != 27 or not _FIXED_TIME.fullmatch(s):
        return None
    return int(s[2:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19] + s[20:26])


def _time_str(k: int) -> str:
    d = f"{k:018d}"
    return f"20{d[0:2]}-{d[2:4]}-{d[4:6]}T{d[6:8]}:{d[8:10]}:{d[10:12]}.{d[12:18]}Z"


@dataclass
class EffortGroup:
    """The attempt records of one model x work x intent x source (casekit or imported): counts,
    and the keys that place the first attempt reaching the threshold in plan order and in time
    order (three integers per record, not the records)."""

    recorded: int = 0
    with_output: int = 0
    refusals: int = 0
    errors: int = 0
    filtered: int = 0
    ordinals: array = field(default_factory=lambda: array("q"))
    seqs: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("q"))
    """started_at as :func:`_time_int` (while every record's is in that form)."""
    time_strs: list[str] | None = None
    """started_at as recorded, once a record's is not in the fixed form."""
    hits: list[int] = field(default_factory=list)
    """Indices of the records whose attempt reaches the threshold."""

    def add(self, rec: AttemptRecord, hit: bool) -> None:
        self.recorded += 1
        r = rec.result
        self.with_output += r is not None and bool(r.text or r.token_scores)
        self.refusals += rec.status == "refusal"
        self.errors += rec.status == "error"
        self.filtered += r is not None and r.finish_reason == "content_filter"
        if hit:
            self.hits.append(len(self.seqs))
        self.ordinals.append(rec.attempt.ordinal)
        self.seqs.append(rec.seq)
        if self.time_strs is None:
            k = _time_int(rec.started_at)
            if k is not None:
                self.times.append(k)
                return
            self.time_strs = [_time_str(x) for x in self.times]
            self.times = array("q")
        self.time_strs.append(rec.started_at)

    def first_in_plan(self) -> int | None:
        """1-based position of the first record reaching the threshold, in plan order
        (ordinal, then sequence number); None when none does."""
        if not self.hits:
            return None
        o, s = self.ordinals, self.seqs
        m = min((o[i], s[i]) for i in self.hits)
        return 1 + sum(1 for i in range(len(s)) if (o[i], s[i]) < m)

    def first_in_time(self) -> int | None:
        """The same in the order the attempts started (started_at, then sequence number)."""
        if not self.hits:
            return None
        t: array | list[str] = self.time_strs if self.time_strs is not None else self.times
        s = self.seqs
        m = min((t[i], s[i]) for i in self.hits)
        return 1 + sum(1 for i in range(len(s)) if (t[i], s[i]) < m)


@dataclass
class LedgerFacts:
    """What the report's pages state about the ledger's records (see the module docstring)."""

    file: LedgerFile
    records: int = 0
    """Every record of the ledger."""
    head_hash: str | None = None
    """The hash of its last record."""
    run_records: list[LedgerRecord] = field(default_factory=list)
    """Every record but the attempts, in ledger order."""
    attempts: int = 0
    first_attempt: tuple[str, int] | None = None
    """(recorded_at, seq) of the first attempt record."""
    last_attempt: tuple[str, int] | None = None
    retried: int = 0
    """Records of attempts sent again after a failure (``retry_of`` set)."""
    server_dates: int = 0
    """Attempt records whose result carries the provider's Date header."""
    tooled_requests: int = 0
    tooled_responses: int = 0
    filtered_or_refused: int = 0
    """Results whose stop reason is ``content_filter`` or ``refusal``."""
    returned_models: dict[str, set[str]] = field(default_factory=dict)
    """Model id -> the model names its responses returned."""
    fingerprints: dict[str, set[str]] = field(default_factory=dict)
    """Model id -> the system fingerprints its responses returned."""
    intents: dict[str, int] = field(default_factory=lambda: {
        "benign": 0, "adversarial": 0, "reconstruction": 0})
    """Attempts by intent (imported ones apart; a superseded failure is not one)."""
    imported_records: int = 0
    first_started: str = ""
    last_completed: str = ""
    """The earliest started_at and latest completed_at of the attempts (imported ones apart)."""
    effort: dict[tuple[str, str, str, str], EffortGroup] = field(default_factory=dict)
    """(model, work, intent, "casekit"/"imported") -> its records' counts and keys."""
    tries: dict[str, ModelTries] = field(default_factory=dict)
    """Model id -> its tries, in the order the models first appear."""
    error_types: dict[str, int] = field(default_factory=dict)
    """Failed tries by exception type."""
    imported: ImportedTally = field(default_factory=ImportedTally)
    superseded: dict[int, int] = field(default_factory=dict)
    """Seq of each failed record a later ``--retry-failed`` record supersedes -> that record's
    seq (casekit.ledger.superseded_seqs)."""
    superseded_records: int = 0
    """Attempt records superseded so: in the ledger, not attempts of their own."""
    _earlier_tries: dict[int, int] = field(default_factory=dict)
    """Seq of a record that supersedes failed ones -> their tries."""

    def imported_summary(self) -> ImportedSummary:
        return self.imported.summary()

    @property
    def run_start(self) -> RunStart | None:
        return next((r for r in self.run_records if isinstance(r, RunStart)), None)

    @property
    def run_end(self) -> RunEnd | None:
        return next((r for r in reversed(self.run_records) if isinstance(r, RunEnd)), None)

    @property
    def notes(self) -> list[Note]:
        return [r for r in self.run_records if isinstance(r, Note)]

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [r for r in self.run_records if isinstance(r, Checkpoint)]

    def add_attempt(self, rec: AttemptRecord, hit: bool, refusal_source: str | None) -> None:
        a = rec.attempt
        r = rec.result
        self.attempts += 1
        if self.first_attempt is None:
            self.first_attempt = (rec.recorded_at, rec.seq)
        self.last_attempt = (rec.recorded_at, rec.seq)
        self.retried += rec.retry_of is not None
        if r is not None:
            self.server_dates += bool(r.server_date)
            self.tooled_requests += offers_tools(r.raw_request)
            self.tooled_responses += reports_tool_use(r.raw_response)
            self.filtered_or_refused += r.finish_reason in ("content_filter", "refusal")
            if r.returned_model:
                self.returned_models.setdefault(a.model_id, set()).add(r.returned_model)
            if r.system_fingerprint:
                self.fingerprints.setdefault(a.model_id, set()).add(r.system_fingerprint)
        if a.strategy != IMPORT_STRATEGY:
            self.first_started = (min(self.first_started, rec.started_at) if self.first_started
                                  else rec.started_at)
            self.last_completed = max(self.last_completed, rec.completed_at)
        tries = self.tries.get(a.model_id)
        if tries is None:
            tries = self.tries[a.model_id] = ModelTries()
        later = self.superseded.get(rec.seq)
        if later is not None:
            # A failure sent again: its tries count, the attempt is counted by its last record.
            self.superseded_records += 1
            self._earlier_tries[later] = self._earlier_tries.pop(rec.seq, 0) + len(rec.tries)
            tries.add_tries(rec, self.error_types)
            return
        if a.strategy == IMPORT_STRATEGY:
            self.imported_records += 1
        else:
            self.intents[a.intent] = self.intents.get(a.intent, 0) + 1
        src = "imported" if is_imported(a.strategy, a.strategy_key) else "casekit"
        group = self.effort.get((a.model_id, a.work_id, a.intent, src))
        if group is None:
            group = self.effort[(a.model_id, a.work_id, a.intent, src)] = EffortGroup()
        group.add(rec, hit)
        tries.add(rec, refusal_source, self.error_types, self._earlier_tries.pop(rec.seq, 0))
        self.imported.add(rec)


# --------------------------------------------------------------------------- lookup


class AttemptLookup:
    """Attempt records by sequence number, read from the ledger file when asked for (the few a
    report quotes), each checked against the line the verifying pass read (CRC-32) and kept in
    a small cache."""

    CACHE = 256

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets = array("q", [0])
        """Byte offset of each record's line (and of the end of the last)."""
        self._crcs = array("L")
        self._attempt = bytearray()
        """1 where the record is an attempt record."""
        self._cache: OrderedDict[int, AttemptRecord] = OrderedDict()

    def _add(self, raw: bytes, is_attempt: bool) -> None:
        self._offsets.append(self._offsets[-1] + len(raw) + 1)
        self._crcs.append(zlib.crc32(raw))
        self._attempt.append(is_attempt)

    def __len__(self) -> int:
        return sum(self._attempt)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and 0 <= seq < len(self._attempt) and bool(
            self._attempt[seq])

    def get(self, seq: int) -> AttemptRecord | None:
        """The attempt record with this sequence number, or None if there is none."""
        if seq not in self:
            return None
        hit = self._cache.get(seq)
        if hit is not None:
            self._cache.move_to_end(seq)
            return hit
        start, end = self._offsets[seq], self._offsets[seq + 1]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            line = fh.read(end - start)
        raw = line[:-1]
        if line[-1:] != b"\n" or zlib.crc32(raw) != self._crcs[seq]:
            raise CasekitError(f"{self.path}: record {seq} changed after the ledger was "
                               "verified; wait for the run to finish, then report")
        try:
            rec = _ADAPTER.validate_python(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError) as exc:  # the CRC matched: not reached
            raise CasekitError(f"{self.path}: record {seq} does not read again ({exc})") \
                from None
        assert isinstance(rec, AttemptRecord)
        self._cache[seq] = rec
        if len(self._cache) > self.CACHE:
            self._cache.popitem(last=False)
        return rec


# --------------------------------------------------------------------------- the pass


def read_ledger_facts(path: Path, flags: dict[str, tuple[bool, str | None]] | None = None,
                      ) -> tuple[LedgerFacts, AttemptLookup]:
    """One verifying pass over the ledger at ``path``: its facts and the lookup of its attempt
    records. ``flags``: attempt id -> (its analysis reaches the threshold, its refusal source),
    for the attempts where either holds. Raises LedgerError where the chain breaks and
    CasekitError if the file changed while it was read."""
    flags = flags or {}
    lookup = AttemptLookup(path)
    digest = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    run_records: list[LedgerRecord] = []
    tally = LedgerFacts(file=LedgerFile(path, 0, ""), superseded=superseded_seqs(path))
    head: str | None = None
    for _, raw, rec in iter_verified_lines(path):
        digest.update(raw)
        digest.update(b"\n")
        md5.update(raw)
        md5.update(b"\n")
        head = rec.hash
        is_attempt = isinstance(rec, AttemptRecord)
        lookup._add(raw, is_attempt)
        if isinstance(rec, AttemptRecord):
            hit, refusal = flags.get(rec.attempt.id, (False, None))
            tally.add_attempt(rec, hit, refusal)
        else:
            run_records.append(rec)
    size = lookup._offsets[-1]
    try:
        now = os.stat(path).st_size
    except OSError:
        now = -1
    if now != size or head is None and size:
        raise CasekitError(f"{path}: the ledger changed while it was read; wait for the run to "
                           "finish, then report")
    tally.file = LedgerFile(path, size, HASH_PREFIX + digest.hexdigest(), md5.hexdigest())
    tally.records = len(lookup._attempt)
    tally.head_hash = head
    tally.run_records = run_records
    return tally, lookup
