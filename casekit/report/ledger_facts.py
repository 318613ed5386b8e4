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

casekit verify takes the same facts from its analysis' pass instead of reading the ledger a
second time (:class:`FactsPass`: each analysis worker makes the :class:`AttemptFacts` of the
attempt records it checked; the parent tallies them in ledger order).

Effort and reliability need, per record, whether its attempt's analysis reaches the reporting
threshold and its refusal source: the caller adds them after the pass (:meth:`LedgerFacts.flag`:
record seq -> (reaches the threshold, refusal source), for the records where either is set).

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
from typing import NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError

from casekit.canonical import HASH_PREFIX
from casekit.errors import CasekitError
from casekit.ledger import iter_verified_lines, superseded_seqs
from casekit.records import (
    LEDGER_RECORD_SCHEMA,
    AttemptRecord,
    Checkpoint,
    LedgerRecord,
    Note,
    RunEnd,
    RunStart,
    is_imported,
)
from casekit.report.imported import ImportedFacts, ImportedSummary, ImportedTally, imported_facts
from casekit.report.tooluse import offers_tools, reports_tool_use

log = logging.getLogger(__name__)

#: Attempts that ended in an error listed per model (its first, in ledger order); the rest are
#: counted per model and are in the complete listing and the ledger.
RELIABILITY_ERRORS_PER_MODEL = 10

_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LEDGER_RECORD_SCHEMA)


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


class AttemptFacts(NamedTuple):
    """What the tallies read of one attempt record (:func:`attempt_facts`): small enough to be
    made in an analysis worker and sent to the parent (casekit verify's single pass)."""

    id: str
    seq: int
    model_id: str
    work_id: str
    intent: str
    strategy: str
    imported: bool
    """Captured outside casekit (casekit.records.is_imported)."""
    ordinal: int
    status: str
    retried: bool
    """``retry_of`` is set."""
    recorded_at: str
    started_at: str
    completed_at: str
    has_result: bool
    with_output: bool
    finish_reason: str | None
    server_date: bool
    offers_tools: bool
    reports_tool_use: bool
    returned_model: str | None
    system_fingerprint: str | None
    dropped: bool
    """Sent again without a parameter the model rejected."""
    tries: int
    failed_tries: tuple[tuple[str, str, bool], ...]
    """(kind, exception type, Retry-After honoured) of each failed try."""
    error: tuple[str, str, str] | None
    """The attempt's error as the reliability page lists it: kind, type, message (shortened)."""
    provenance: ImportedFacts | None
    """An imported attempt's provenance (casekit.report.imported)."""


def attempt_facts(rec: AttemptRecord) -> AttemptFacts:
    """The facts of one attempt record."""
    a, r, e = rec.attempt, rec.result, rec.error
    raw_request = r.raw_request if r is not None else None
    imported = is_imported(a.strategy, a.strategy_key)
    return AttemptFacts(
        id=a.id, seq=rec.seq, model_id=a.model_id, work_id=a.work_id, intent=a.intent,
        strategy=a.strategy, imported=imported,
        ordinal=a.ordinal, status=rec.status, retried=rec.retry_of is not None,
        recorded_at=rec.recorded_at, started_at=rec.started_at, completed_at=rec.completed_at,
        has_result=r is not None, with_output=r is not None and bool(r.text or r.token_scores),
        finish_reason=r.finish_reason if r is not None else None,
        server_date=r is not None and bool(r.server_date),
        # An imported record's request and response are casekit's reconstruction of the prompt
        # and the capture's provenance, not the service's: not read for tools (unknown there).
        offers_tools=r is not None and not imported and offers_tools(r.raw_request),
        reports_tool_use=r is not None and not imported and reports_tool_use(r.raw_response),
        returned_model=r.returned_model if r is not None else None,
        system_fingerprint=r.system_fingerprint if r is not None else None,
        dropped=isinstance(raw_request, dict) and bool(raw_request.get("dropped")),
        tries=len(rec.tries),
        failed_tries=tuple((t.error.kind, t.error.type, t.retry_after is not None)
                           for t in rec.tries if t.error is not None),
        error=(e.kind.replace("_", " "), e.type,
               e.message[:300] + ("…" if len(e.message) > 300 else "")) if e else None,
        provenance=imported_facts(rec))


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

    def add(self, f: AttemptFacts, types: dict[str, int], earlier_tries: int = 0) -> None:
        """A record that ends its attempt; ``earlier_tries``: the tries of the failed records
        of the same attempt it supersedes (``--retry-failed``). Its refusal source is counted
        after the pass (:meth:`LedgerFacts.flag`)."""
        self.add_tries(f, types)
        n = f.tries + earlier_tries
        self.attempts += 1
        self.most = max(self.most, n)
        self.retried += n > 1
        self.dropped += f.dropped
        self.filtered += f.finish_reason == "content_filter"
        if f.status == "error":
            self.failed += 1
            if len(self.errors) < RELIABILITY_ERRORS_PER_MODEL:
                kind, type_, message = f.error or ("unknown", "unknown", "")
                self.errors.append(ErrorFact(attempt_id=f.id, seq=f.seq, kind=kind, type=type_,
                                             message=message, tries=n))
        elif f.status == "ok":
            self.ok += 1
        self.imported = self.imported or f.imported

    def add_tries(self, f: AttemptFacts, types: dict[str, int]) -> None:
        """Every try of a record, whether or not it ends its attempt."""
        self.tries += f.tries
        for kind, type_, after in f.failed_tries:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            types[type_] = types.get(type_, 0) + 1
            self.after += after


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
    """Attempts the analysis found refused, by the provider or in the text (as the reliability
    page and the per-attempt listing count them; :meth:`LedgerFacts.flag`)."""
    errors: int = 0
    filtered: int = 0
    ordinals: array = field(default_factory=lambda: array("q"))
    seqs: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("q"))
    """started_at as :func:`_time_int` (while every record's is in that form)."""
    time_strs: list[str] | None = None
    """started_at as recorded, once a record's is not in the fixed form."""
    hits: list[int] = field(default_factory=list)
    """Indices of the records whose attempt reaches the threshold (:meth:`LedgerFacts.flag`),
    ascending."""

    def add(self, f: AttemptFacts) -> None:
        self.recorded += 1
        self.with_output += f.with_output
        self.errors += f.status == "error"
        self.filtered += f.finish_reason == "content_filter"
        self.ordinals.append(f.ordinal)
        self.seqs.append(f.seq)
        if self.time_strs is None:
            k = _time_int(f.started_at)
            if k is not None:
                self.times.append(k)
                return
            self.time_strs = [_time_str(x) for x in self.times]
            self.times = array("q")
        self.time_strs.append(f.started_at)

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
    checked_requests: int = 0
    """Records of requests casekit sent that hold a response: the requests and responses read
    for tools (casekit.report.tooluse; an imported record's are not the service's)."""
    unanswered_requests: int = 0
    """Records of attempts casekit sent that hold no response (failed ones, superseded or
    not): no output, nothing to read for tools."""
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
    """Imported attempt records, free-form or of the kind their importer stated
    (casekit.records.is_imported): not among the intents above, nor in the times below."""
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

    def add_attempt(self, f: AttemptFacts) -> None:
        """One attempt record, in ledger order."""
        self.attempts += 1
        if self.first_attempt is None:
            self.first_attempt = (f.recorded_at, f.seq)
        self.last_attempt = (f.recorded_at, f.seq)
        self.retried += f.retried
        if not f.has_result:
            self.unanswered_requests += not f.imported
        else:
            self.checked_requests += not f.imported
            self.server_dates += f.server_date
            self.tooled_requests += f.offers_tools
            self.tooled_responses += f.reports_tool_use
            self.filtered_or_refused += f.finish_reason in ("content_filter", "refusal")
            if f.returned_model:
                self.returned_models.setdefault(f.model_id, set()).add(f.returned_model)
            if f.system_fingerprint:
                self.fingerprints.setdefault(f.model_id, set()).add(f.system_fingerprint)
        if not f.imported:
            self.first_started = (min(self.first_started, f.started_at) if self.first_started
                                  else f.started_at)
            self.last_completed = max(self.last_completed, f.completed_at)
        tries = self.tries.get(f.model_id)
        if tries is None:
            tries = self.tries[f.model_id] = ModelTries()
        later = self.superseded.get(f.seq)
        if later is not None:
            # A failure sent again: its tries count, the attempt is counted by its last record.
            self.superseded_records += 1
            self._earlier_tries[later] = self._earlier_tries.pop(f.seq, 0) + f.tries
            tries.add_tries(f, self.error_types)
            return
        if f.imported:
            self.imported_records += 1
        else:
            self.intents[f.intent] = self.intents.get(f.intent, 0) + 1
        src = "imported" if f.imported else "casekit"
        group = self.effort.get((f.model_id, f.work_id, f.intent, src))
        if group is None:
            group = self.effort[(f.model_id, f.work_id, f.intent, src)] = EffortGroup()
        group.add(f)
        tries.add(f, self.error_types, self._earlier_tries.pop(f.seq, 0))
        if f.provenance is not None:
            self.imported.add(f.provenance)

    def flag(self, flags: dict[int, tuple[bool, str | None]]) -> None:
        """After the pass: the attempts whose analysis reaches the threshold, and their refusal
        sources. ``flags``: record seq -> (reaches the threshold, refusal source), for the
        records where either holds (the analysed ones: a superseded failure has no analysis).
        Applied in ledger order, as if each had been known when its record passed."""
        placed: list[tuple[int, EffortGroup, int, str]] = []
        for (model_id, _, _, _), group in self.effort.items():
            placed += [(seq, group, i, model_id) for i, seq in enumerate(group.seqs)
                       if seq in flags]
        placed.sort(key=lambda p: p[0])
        if len(placed) != len(flags):
            missing = min(set(flags) - {p[0] for p in placed})
            raise CasekitError(f"{self.file.path}: the attempt table names record seq "
                               f"{missing}, which is not an attempt of this ledger; run "
                               "`casekit analyze` again")
        for seq, group, i, model_id in placed:
            hit, refusal = flags[seq]
            if hit:
                group.hits.append(i)
            if refusal:
                group.refusals += 1
                refused = self.tries[model_id].refused
                refused[refusal] = refused.get(refusal, 0) + 1


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

    def _add(self, raw: bytes) -> None:
        """The next line (its kind follows when it verified: :meth:`_kind`)."""
        self._offsets.append(self._offsets[-1] + len(raw) + 1)
        self._crcs.append(zlib.crc32(raw))

    def _kind(self, is_attempt: bool) -> None:
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


class FactsPass:
    """The facts of a ledger, taken one line at a time in ledger order from a pass that verifies
    its chain: :func:`read_ledger_facts`'s own, or casekit verify's analysis (which reads the
    ledger once for both; :class:`casekit.analysis.parallel.LedgerObserver`). The facts stand
    only once the whole ledger verified (:meth:`finish`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lookup = AttemptLookup(path)
        self.tally = LedgerFacts(file=LedgerFile(path, 0, ""), superseded=superseded_seqs(path))
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._run_records: list[LedgerRecord] = []
        self._head: str | None = None

    # What an analysis worker computes of an attempt record (a picklable function).
    of_attempt = staticmethod(attempt_facts)

    def line(self, raw: bytes) -> None:
        """A line's bytes (without its newline), in ledger order, as they are read."""
        self._sha.update(raw)
        self._sha.update(b"\n")
        self._md5.update(raw)
        self._md5.update(b"\n")
        self.lookup._add(raw)

    def attempt(self, facts: AttemptFacts, record_hash: str | None) -> None:
        """The next line's record, an attempt, once it verified: its facts."""
        self._head = record_hash
        self.lookup._kind(True)
        self.tally.add_attempt(facts)

    def record(self, rec: LedgerRecord) -> None:
        """The next line's record, any other kind, once it verified."""
        self._head = rec.hash
        self.lookup._kind(False)
        self._run_records.append(rec)

    def finish(self) -> tuple[LedgerFacts, AttemptLookup]:
        """The facts and the lookup; raises CasekitError if the file changed since its lines
        were read."""
        size = self.lookup._offsets[-1]
        try:
            now = os.stat(self.path).st_size
        except OSError:
            now = -1
        if now != size or self._head is None and size:
            raise CasekitError(f"{self.path}: the ledger changed while it was read; wait for the "
                               "run to finish, then report")
        tally = self.tally
        tally.file = LedgerFile(self.path, size, HASH_PREFIX + self._sha.hexdigest(),
                                self._md5.hexdigest())
        tally.records = len(self.lookup._attempt)
        tally.head_hash = self._head
        tally.run_records = self._run_records
        return tally, self.lookup


def read_ledger_facts(path: Path) -> tuple[LedgerFacts, AttemptLookup]:
    """One verifying pass over the ledger at ``path``: its facts and the lookup of its attempt
    records (the analyses' flags are added after it: :meth:`LedgerFacts.flag`). Raises
    LedgerError where the chain breaks and CasekitError if the file changed while it was
    read."""
    facts = FactsPass(path)
    for _, raw, rec in iter_verified_lines(path):
        facts.line(raw)
        if isinstance(rec, AttemptRecord):
            facts.attempt(attempt_facts(rec), rec.hash)
        else:
            facts.record(rec)
    return facts.finish()
